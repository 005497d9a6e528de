package remote

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Policy bounds how a request to a registry is retried after a 429, a 5xx
// or a network error.
type Policy struct {
	// Attempts is the total number of tries (1 or less: no retry).
	Attempts int
	// Base and Max bound the jittered exponential backoff: attempt n waits
	// a random duration in [0, min(Max, Base*2^n)] ("full jitter").
	Base, Max time.Duration
	// MaxRetryAfter is the longest Retry-After (or rate-limit reset) the
	// policy waits for; a registry asking for longer fails the request at
	// once with ErrRateLimited.
	MaxRetryAfter time.Duration
}

// Policies: imports are batch work and wait; a cache fill has a client
// waiting; a revalidation has a cached copy to fall back on and never
// waits; a base-image poll comes back on its own schedule.
var (
	ImportPolicy     = Policy{Attempts: 6, Base: 250 * time.Millisecond, Max: 10 * time.Second, MaxRetryAfter: 2 * time.Minute}
	FillPolicy       = Policy{Attempts: 3, Base: 200 * time.Millisecond, Max: 2 * time.Second, MaxRetryAfter: 10 * time.Second}
	RevalidatePolicy = Policy{Attempts: 1}
	PollPolicy       = Policy{Attempts: 3, Base: 500 * time.Millisecond, Max: 5 * time.Second, MaxRetryAfter: 30 * time.Second}
)

// backoff returns the jittered delay before retry n (0-based).
func (p Policy) backoff(n int) time.Duration {
	ceiling := p.Base << min(n, 20)
	if ceiling > p.Max || ceiling <= 0 {
		ceiling = p.Max
	}
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling + 1)
}

// retryable reports whether a status is worth another try.
func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// rateState tracks the rate-limit headers a source registry sends:
// RateLimit-Remaining / RateLimit-Reset (Docker Hub: "76;w=21600") and
// X-RateLimit-Remaining / X-RateLimit-Reset (delta seconds or a Unix time).
type rateState struct {
	mu        sync.Mutex
	remaining int // -1: unknown
	limit     int // -1: unknown
	reset     time.Time
	warned    bool
}

func newRateState() *rateState { return &rateState{remaining: -1, limit: -1} }

// firstNumber parses the leading integer of a header value such as "76;w=21600".
func firstNumber(v string) (int64, bool) {
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, ";, "); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// note records the headers of a response; it reports true the first time
// the remaining quota drops to lowWater or below (to log it once).
func (s *rateState) note(h http.Header, now time.Time) (remaining, limit int, low bool) {
	rem, okRem := firstNumber(firstHeader(h, "RateLimit-Remaining", "X-RateLimit-Remaining"))
	lim, okLim := firstNumber(firstHeader(h, "RateLimit-Limit", "X-RateLimit-Limit"))
	reset, okReset := firstNumber(firstHeader(h, "RateLimit-Reset", "X-RateLimit-Reset"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if okRem {
		s.remaining = int(rem)
		if okLim {
			s.limit = int(lim)
		}
		switch {
		case okReset && reset > 1e9:
			s.reset = time.Unix(reset, 0)
		case okReset:
			s.reset = now.Add(time.Duration(reset) * time.Second)
		default:
			s.reset = time.Time{}
		}
		const lowWater = 10
		if s.remaining <= lowWater && !s.warned {
			s.warned, low = true, true
		} else if s.remaining > lowWater {
			s.warned = false
		}
	}
	return s.remaining, s.limit, low
}

// wait returns how long to hold back before the next request: until the
// reset when the quota is exhausted, else 0.
func (s *rateState) wait(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.remaining != 0 || s.reset.IsZero() || !s.reset.After(now) {
		return 0
	}
	return s.reset.Sub(now)
}

// snapshot returns the last remaining quota seen (-1 if none).
func (s *rateState) snapshot() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remaining
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}
