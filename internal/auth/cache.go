package auth

import (
	"sync"
	"time"
)

// cache is a small map of values loaded from the database. An entry is
// valid while the Service's generation is the one read before the entry was
// loaded and the entry is younger than the cache TTL; every write of the
// Service bumps the generation, so a change applies on the next request.
type cache[K comparable, V any] struct {
	mu  sync.RWMutex
	max int
	m   map[K]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v   V
	gen uint64
	at  time.Time
}

func newCache[K comparable, V any](max int) *cache[K, V] {
	return &cache[K, V]{max: max, m: make(map[K]cacheEntry[V])}
}

func (c *cache[K, V]) get(k K, gen uint64, now time.Time, ttl time.Duration) (V, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || e.gen != gen || now.Sub(e.at) > ttl || now.Before(e.at) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put stores v, loaded at generation gen (read before the load).
func (c *cache[K, V]) put(k K, v V, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// Drop stale entries first, then arbitrary ones (map order is random).
		for key, e := range c.m {
			if e.gen != gen {
				delete(c.m, key)
			}
		}
		for key := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = cacheEntry[V]{v: v, gen: gen, at: now}
}
