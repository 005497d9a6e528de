package auth

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// limits configures the brute-force limiter.
type limits struct {
	free   int           // failures allowed before lockouts start
	first  time.Duration // first lockout
	max    time.Duration // longest lockout
	forget time.Duration // a client's failures are forgotten after this quiet time
}

// limiter slows down and then refuses clients that keep failing to log in.
// A client is a remote IP plus a username, so one attacker cannot lock the
// admin out for everyone and a shared NAT does not lock out other users.
type limiter struct {
	limits
	now func() time.Time
	obs LoginObserver

	mu sync.Mutex
	m  map[string]*attempts
}

type attempts struct {
	failures int
	last     time.Time
	until    time.Time
}

const limiterMaxClients = 100_000

func newLimiter(l limits, now func() time.Time, obs LoginObserver) *limiter {
	if obs == nil {
		obs = noObserver{}
	}
	return &limiter{limits: l, now: now, obs: obs, m: make(map[string]*attempts)}
}

// LoginObserver is told about the failed logins the brute-force limiter
// counts (the server's metrics). Its methods must be cheap and must not
// block: they run on the request's goroutine.
type LoginObserver interface {
	// LoginFailed reports a refused login: FailureInvalidCredentials (a
	// wrong secret or an unknown user), FailureLockedOut (refused during
	// a lockout, whatever the secret) or FailureBusy (refused unchecked
	// because too many password hashes were being computed).
	LoginFailed(reason string)
	// LockedOut reports that a client's failures started a lockout.
	LockedOut()
}

// Reasons of LoginObserver.LoginFailed.
const (
	FailureInvalidCredentials = "invalid_credentials"
	FailureLockedOut          = "locked_out"
	FailureBusy               = "busy"
)

type noObserver struct{}

func (noObserver) LoginFailed(string) {}
func (noObserver) LockedOut()         {}

func limiterKey(remote, username string) string { return remote + "\x00" + username }

// check reports whether the client may try to log in now, and if not, how
// long it must wait. A locked-out client is refused even with the right
// password, so the lockout is no oracle.
func (l *limiter) check(key string) (time.Duration, bool) {
	wait, ok := l.lockedOut(key)
	if !ok {
		l.obs.LoginFailed(FailureLockedOut)
	}
	return wait, ok
}

func (l *limiter) lockedOut(key string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.m[key]
	if !ok {
		return 0, true
	}
	now := l.now()
	if now.Before(a.until) {
		return a.until.Sub(now), false
	}
	return 0, true
}

// fail records a failed login and returns the lockout it starts (0 if none).
func (l *limiter) fail(key string) time.Duration {
	d := l.record(key)
	l.obs.LoginFailed(FailureInvalidCredentials)
	if d > 0 {
		l.obs.LockedOut()
	}
	return d
}

func (l *limiter) record(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	a, ok := l.m[key]
	if !ok {
		if len(l.m) >= limiterMaxClients {
			l.prune(now)
		}
		a = &attempts{}
		l.m[key] = a
	} else if now.Sub(a.last) > l.forget {
		*a = attempts{}
	}
	a.failures++
	a.last = now
	over := a.failures - l.free
	if over <= 0 {
		return 0
	}
	d := l.first
	for i := 1; i < over && d < l.max; i++ {
		d *= 2
	}
	d = min(d, l.max)
	a.until = now.Add(d)
	return d
}

// succeed forgets the client's failures.
func (l *limiter) succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}

// prune drops clients whose failures are forgotten, then arbitrary clients
// that are not locked out if the map is still full.
func (l *limiter) prune(now time.Time) {
	for k, a := range l.m {
		if now.Sub(a.last) > l.forget {
			delete(l.m, k)
		}
	}
	for k, a := range l.m {
		if len(l.m) < limiterMaxClients {
			return
		}
		if !now.Before(a.until) {
			delete(l.m, k)
		}
	}
}

// remoteIP returns the IP of the client of r. Forwarding headers are not
// trusted.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
