package remote

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Thu, 01 Jan 2026 00:00:10 GMT": 10 * time.Second,
		"Wed, 31 Dec 2025 23:00:00 GMT": 0,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

// TestRateState reads Docker Hub's and GitHub's rate-limit headers and
// holds requests back while the quota is spent.
func TestRateState(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newRateState()
	if rem, _, low := s.note(http.Header{"Ratelimit-Limit": {"100;w=21600"}, "Ratelimit-Remaining": {"76;w=21600"}}, now); rem != 76 || low {
		t.Fatalf("docker hub headers: %d %v", rem, low)
	}
	if rem, _, low := s.note(http.Header{"Ratelimit-Remaining": {"5;w=21600"}}, now); rem != 5 || !low {
		t.Fatalf("low quota not flagged once: %d %v", rem, low)
	}
	if _, _, low := s.note(http.Header{"Ratelimit-Remaining": {"4"}}, now); low {
		t.Fatal("low quota flagged twice")
	}
	if w := s.wait(now); w != 0 {
		t.Fatalf("wait with quota left: %s", w)
	}
	s.note(http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"30"}}, now)
	if w := s.wait(now); w != 30*time.Second {
		t.Fatalf("wait until reset (delta): %s", w)
	}
	s.note(http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"1767225660"}}, now) // Unix time, now+60s
	if w := s.wait(now); w != 60*time.Second {
		t.Fatalf("wait until reset (epoch): %s", w)
	}
	if w := s.wait(now.Add(time.Hour)); w != 0 {
		t.Fatalf("wait after the reset: %s", w)
	}
}

// TestBackoff: full jitter within the exponential ceiling, and sleep
// honours the context.
func TestBackoff(t *testing.T) {
	t.Parallel()
	p := Policy{Attempts: 5, Base: 100 * time.Millisecond, Max: time.Second}
	for n := range 10 {
		ceiling := min(p.Base<<n, p.Max)
		for range 50 {
			if d := p.backoff(n); d < 0 || d > ceiling {
				t.Fatalf("backoff(%d) = %s, ceiling %s", n, d, ceiling)
			}
		}
	}
}
