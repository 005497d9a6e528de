package engine

import (
	"fmt"
	"sync"
)

// leases tracks which live runs rely on which image tags. Two runs on one
// engine share its tags: a gate run that builds FROM a base image another
// run pulled must still find that tag when it later tags or runs it. A run
// that ends does not remove a tag it created while another run relies on
// it; it hands the tag over, and the last run to rely on it removes it.
type leases struct {
	mu      sync.Mutex
	users   map[string]map[*run]struct{} // qualified tag -> runs relying on it
	locks   map[string]*tagLock          // qualified tag -> its lock, while held or awaited
	authors map[string]*run              // Docker Hub tag -> the live run that built or tagged it
}

type tagLock struct {
	mu      sync.Mutex
	waiters int
}

func newLeases() *leases {
	return &leases{users: map[string]map[*run]struct{}{}, locks: map[string]*tagLock{}, authors: map[string]*run{}}
}

// lock serialises the decisions about one tag: a run checking for it and
// pulling it, and a run ending that removes it. It returns the unlock.
func (l *leases) lock(tag string) func() {
	k := qualified(tag)
	l.mu.Lock()
	tl := l.locks[k]
	if tl == nil {
		tl = &tagLock{}
		l.locks[k] = tl
	}
	tl.waiters++
	l.mu.Unlock()
	tl.mu.Lock()
	return func() {
		tl.mu.Unlock()
		l.mu.Lock()
		if tl.waiters--; tl.waiters == 0 {
			delete(l.locks, k)
		}
		l.mu.Unlock()
	}
}

// use records that r relies on tag.
func (l *leases) use(r *run, tags ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range tags {
		k := qualified(t)
		u := l.users[k]
		if u == nil {
			u = map[*run]struct{}{}
			l.users[k] = u
		}
		u[r] = struct{}{}
	}
}

// handOver drops r's reliance on tag and, when another live run still
// relies on it, gives that run the tag (pointing at image id) to remove at
// its end, and reports true.
func (l *leases) handOver(r *run, tag, id string) (*run, bool) {
	k := qualified(tag)
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.users[k]
	delete(u, r)
	for heir := range u {
		heir.scope.add(id, tag)
		return heir, true
	}
	delete(l.users, k)
	return nil, false
}

// author records that r built or tagged the Docker Hub tags: content of
// its own under names other runs would take for Docker Hub's. (A tag of
// another registry is always pulled again with the run's own login before
// use, so it needs no such record.)
func (l *leases) author(r *run, tags ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range tags {
		if imageOf(t).Registry == dockerHub {
			l.authors[qualified(t)] = r
		}
	}
}

// checkAuthor refuses a Docker Hub tag that another live run built or
// tagged: r must not take it for Docker Hub's image.
func (l *leases) checkAuthor(r *run, tag string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.authors[qualified(tag)]; ok && a != r {
		return fmt.Errorf("image %s: the engine's copy was built or tagged by another run, not pulled from Docker Hub; it is not used for this one", tag)
	}
	return nil
}

// end drops every reliance of r, whose teardown starts, and returns the
// tags it created by then: a tag handed over later goes to another run.
func (l *leases) end(r *run) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, a := range l.authors {
		if a == r {
			delete(l.authors, k)
		}
	}
	for k, u := range l.users {
		delete(u, r)
		if len(u) == 0 {
			delete(l.users, k)
		}
	}
	return r.scope.createdTags()
}
