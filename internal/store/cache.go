package store

import (
	"sync"

	"github.com/opencontainers/go-digest"
)

// cache keeps the read hot path (manifest GET by tag or digest) off the
// database: repository ids, tag targets and manifests, bounded in bytes.
//
// Consistency: every writer notes gen before its transaction and, after the
// commit, stores its value only if gen has not moved meanwhile (otherwise it
// just drops the entry), then bumps gen; deletions drop entries and bump
// gen. A reader notes gen before its database read and fills the cache only
// if gen has not moved. So concurrent writers whose cache updates run in a
// different order than their commits leave no entry rather than a stale one,
// and a fill never resurrects a value a writer replaced.
type cache struct {
	mu        sync.RWMutex
	gen       uint64
	repoGen   uint64 // moves only when repositories go away
	maxBytes  int64
	bytes     int64
	repos     map[repoKey]int64
	tags      map[tagKey]digest.Digest
	manifests map[manifestKey]*Manifest
}

type repoKey struct{ registry, repo string }
type tagKey struct {
	repo int64
	tag  string
}
type manifestKey struct {
	repo   int64
	digest digest.Digest
}

// maxCachedKeys bounds the repository and tag maps; they are cleared when
// they grow past it (entries are tiny and refill on demand).
const maxCachedKeys = 1 << 17

func newCache(maxBytes int64) *cache {
	c := &cache{maxBytes: maxBytes}
	c.reset()
	return c
}

func (c *cache) reset() {
	c.repos = map[repoKey]int64{}
	c.tags = map[tagKey]digest.Digest{}
	c.manifests = map[manifestKey]*Manifest{}
	c.bytes = 0
}

func (c *cache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

func (c *cache) repoGeneration() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.repoGen
}

func (c *cache) repo(registry, repo string) (int64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	id, ok := c.repos[repoKey{registry, repo}]
	return id, ok
}

func (c *cache) putRepo(registry, repo string, id int64, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.repoGen {
		return
	}
	if len(c.repos) >= maxCachedKeys {
		c.repos = map[repoKey]int64{}
	}
	c.repos[repoKey{registry, repo}] = id
}

func (c *cache) tag(repo int64, tag string) (digest.Digest, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	d, ok := c.tags[tagKey{repo, tag}]
	return d, ok
}

// fillTag records a tag read from the database.
func (c *cache) fillTag(repo int64, tag string, d digest.Digest, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.tags) >= maxCachedKeys {
		c.tags = map[tagKey]digest.Digest{}
	}
	c.tags[tagKey{repo, tag}] = d
}

// dropTags forgets tags removed by a committed transaction.
func (c *cache) dropTags(repo int64, tags []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range tags {
		delete(c.tags, tagKey{repo, t})
	}
	c.gen++
}

func (c *cache) manifest(repo int64, d digest.Digest) (*Manifest, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.manifests[manifestKey{repo, d}]
	return m, ok
}

// fillManifest caches m, read from the database by a reader that noted
// generation gen before its read: unless a writer moved the generation
// since, m is current.
func (c *cache) fillManifest(repo int64, m *Manifest, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.storeManifest(repo, m)
	}
}

// storeManifest caches m, evicting arbitrary entries (map order is random)
// until it fits. c.mu is held.
func (c *cache) storeManifest(repo int64, m *Manifest) {
	size := int64(len(m.Body))
	k := manifestKey{repo, m.Digest}
	c.deleteManifest(k)
	if c.maxBytes <= 0 || size > c.maxBytes/8 {
		return
	}
	for k2 := range c.manifests {
		if c.bytes+size <= c.maxBytes {
			break
		}
		c.deleteManifest(k2)
	}
	c.manifests[k] = m
	c.bytes += size
}

// apply records the cache writes of a committed batch whose transaction
// read generation gen under the write lock, and moves the generation (so
// that no reader fills a value it read before the commit). If another
// writer moved the generation since gen, its changes and the batch's may
// be in either order here, so the batch's entries are dropped instead:
// never a stale entry, at worst a miss. Within the batch, later writes of
// a key win, as in the database.
func (c *cache) apply(gen uint64, eff *effects) {
	if len(eff.manifests) == 0 && len(eff.tags) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	current := gen == c.gen
	c.gen++
	for _, w := range eff.manifests {
		if current {
			c.storeManifest(w.repo, w.m)
		} else {
			c.deleteManifest(manifestKey{w.repo, w.m.Digest})
		}
	}
	if current && len(c.tags) >= maxCachedKeys {
		c.tags = map[tagKey]digest.Digest{}
	}
	for _, w := range eff.tags {
		for _, t := range w.tags {
			if current {
				c.tags[tagKey{w.repo, t}] = w.d
			} else {
				delete(c.tags, tagKey{w.repo, t})
			}
		}
	}
}

func (c *cache) deleteManifest(k manifestKey) {
	if old, ok := c.manifests[k]; ok {
		c.bytes -= int64(len(old.Body))
		delete(c.manifests, k)
	}
}

func (c *cache) dropManifest(repo int64, d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.deleteManifest(manifestKey{repo, d})
	for tk, td := range c.tags {
		if tk.repo == repo && td == d {
			delete(c.tags, tk)
		}
	}
}

// clear drops everything; used when repositories or registries go away,
// because their ids may be reused.
func (c *cache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.repoGen++
	c.reset()
}
