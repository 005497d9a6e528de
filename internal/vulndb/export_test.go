package vulndb

import "context"

// LoadMatcher loads a snapshot, bypassing the cache.
func LoadMatcher(ctx context.Context, v *DB) (*Matcher, error) { return v.loadMatcher(ctx) }
