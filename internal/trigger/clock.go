package trigger

import (
	"math/rand/v2"
	"time"
)

// Clock is the triggers' time source: polls, debounce windows and timers
// wait on its timers, so tests drive time by hand.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer made by a Clock.
type Timer interface {
	// C delivers the time once the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (SystemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }

var _ Clock = SystemClock{}

// alarm is a loop's one pending wake-up on a Clock: each turn sets it anew.
type alarm struct {
	clock Clock
	t     Timer
}

// at replaces the pending wake-up with one at next (by the clock's time
// now) and returns the channel it fires on; a zero next sets none and
// returns nil, a channel that never fires.
func (a *alarm) at(next time.Time) <-chan time.Time {
	a.stop()
	if next.IsZero() {
		return nil
	}
	a.t = a.clock.NewTimer(next.Sub(a.clock.Now()))
	return a.t.C()
}

// stop cancels the pending wake-up, if any.
func (a *alarm) stop() {
	if a.t != nil {
		a.t.Stop()
		a.t = nil
	}
}

// jitter spreads d by ±frac at random, so that many pollers started
// together do not stay in lock-step.
func jitter(d time.Duration, frac float64) time.Duration {
	if frac <= 0 || d <= 0 {
		return d
	}
	f := 1 + frac*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
