// Package wait pauses a goroutine for a while unless its context ends
// first: the one context-aware sleep of retry loops, schedulers and
// pollers.
package wait

import (
	"context"
	"time"
)

// For waits d, or until ctx ends, and returns ctx's error in that case
// (also when d is not positive and ctx has already ended).
func For(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
