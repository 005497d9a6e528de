package auth

import (
	"context"
	"runtime"
	"time"
)

// hashGate bounds the slow password hashes (argon2id, 19 MiB each by
// default) computed at once, so that a flood of logins cannot exhaust the
// server's memory: a login takes one of the slots, or waits for one in a
// short queue for at most wait; beyond the queue, or after the wait, it is
// refused at once (ErrLoginBusy, 429 with Retry-After), costing no hash.
type hashGate struct {
	slots chan struct{} // one per hash being computed
	room  chan struct{} // one per login hashing or queued
	wait  time.Duration
}

// Defaults of the hash gate: about one hash per core, but no more than
// hashMemoryBudget of hash memory at once, a queue twice that, and a wait
// short enough for a client to get its answer quickly. Memory, not CPU, is
// what a flood exhausts: the garbage collector lets the heap grow to about
// twice what is live, so the hashes in flight cost twice their memory in
// RSS. 32 MiB is 1 hash of the default cost (19 MiB): with 2 at once, a
// server flooded with wrong passwords peaked at 150-190 MB (the target is
// under 200 MB), with 1 at about 130 MB, and a flood from many addresses
// keeps only one core busy hashing whatever the machine. Cheaper hashes
// (tests, WithPasswordHashCost) get one slot per core.
const (
	hashMemoryBudget = 32 << 20
	hashQueueFactor  = 2
	hashWait         = time.Second
)

// defaultHashSlots returns how many hashes of memoryKiB to compute at once.
func defaultHashSlots(memoryKiB uint32) int {
	return max(1, min(runtime.GOMAXPROCS(0), hashMemoryBudget/(int(memoryKiB)<<10)))
}

func newHashGate(slots, queued int, wait time.Duration) *hashGate {
	return &hashGate{slots: make(chan struct{}, slots), room: make(chan struct{}, slots+queued), wait: wait}
}

// enter takes a slot and returns the function that gives it back. It fails
// with a *ThrottledError matching ErrLoginBusy when the queue is full or
// no slot frees up within the wait, and with ctx's error when ctx ends.
func (g *hashGate) enter(ctx context.Context) (release func(), err error) {
	select {
	case g.room <- struct{}{}:
	default:
		return nil, g.busy()
	}
	release = func() {
		<-g.slots
		<-g.room
	}
	select {
	case g.slots <- struct{}{}:
		return release, nil
	default:
	}
	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	select {
	case g.slots <- struct{}{}:
		return release, nil
	case <-timer.C:
		<-g.room
		return nil, g.busy()
	case <-ctx.Done():
		<-g.room
		return nil, ctx.Err()
	}
}

// busy is the refusal of a login the gate has no room for. A second is
// about what a slot's hashes take to drain.
func (g *hashGate) busy() error {
	return &ThrottledError{RetryAfter: max(time.Second, g.wait), Err: ErrLoginBusy}
}
