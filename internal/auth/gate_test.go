package auth

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// adminTry logs in as the admin with pass from ip on the control plane.
func adminTry(s *Service, ip, pass string) error {
	r := request("GET", "/v1/registries")
	r.RemoteAddr = ip + ":1234"
	r.SetBasicAuth(AdminUsername, pass)
	_, err := s.Authenticate(r, "")
	return err
}

// waitQueued waits until n logins are inside the hash gate (hashing or
// queued).
func waitQueued(t *testing.T, s *Service, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.gate.room) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d logins in the hash gate, want %d", len(s.gate.room), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// The lockout is checked before any hash: a locked-out client costs no
// argon2id hash, and concurrent attempts of one client that queued for the
// hash gate before it was locked out are refused when their turn comes
// instead of hashing.
func TestLockoutBeforeHash(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithLoginLimits(2, time.Minute, time.Hour), WithPasswordHashLimit(1, 20, 10*time.Second))
	s := e.s
	if _, err := s.EnsureAdmin(context.Background(), "right-password", e.dir); err != nil {
		t.Fatal(err)
	}

	// Sequential: 2 free failures and the one that starts the lockout hash;
	// nothing after them does, wrong or right password.
	h0 := s.hashes.Load()
	for i := range 3 {
		if err := adminTry(s, "10.0.0.1", "wrong-"+strconv.Itoa(i)); !errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrTooManyAttempts) {
			t.Fatalf("failure %d: %v, want invalid credentials", i+1, err)
		}
	}
	if n := s.hashes.Load() - h0; n != 3 {
		t.Fatalf("3 failures computed %d hashes", n)
	}
	for _, pass := range []string{"wrong", "right-password"} {
		var te *ThrottledError
		if err := adminTry(s, "10.0.0.1", pass); !errors.As(err, &te) || !errors.Is(err, ErrTooManyAttempts) || te.RetryAfter <= 0 {
			t.Fatalf("locked out, %s: %v, want ErrTooManyAttempts", pass, err)
		}
	}
	if n := s.hashes.Load() - h0; n != 3 {
		t.Fatalf("refusals during the lockout computed %d hashes", n-3)
	}

	// Concurrent: 10 attempts from another address queue behind a held
	// slot; when it frees, they hash one at a time and the lockout started
	// by the third failure refuses the other 7 unhashed.
	release, err := s.gate.enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h0 = s.hashes.Load()
	errs := make([]error, 10)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = adminTry(s, "10.0.0.2", "wrong-"+strconv.Itoa(i)) })
	}
	waitQueued(t, s, 11)
	release()
	wg.Wait()
	failed, throttled := 0, 0
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrTooManyAttempts):
			throttled++
		case errors.Is(err, ErrUnauthenticated):
			failed++
		default:
			t.Errorf("concurrent attempt: %v", err)
		}
	}
	if n := s.hashes.Load() - h0; n != 3 || failed != 3 || throttled != 7 {
		t.Fatalf("10 concurrent attempts: %d hashes, %d failed, %d throttled; want 3, 3, 7", n, failed, throttled)
	}
}

// The hash gate: with its slots taken, logins wait in a bounded queue for at
// most the wait; beyond the queue they are refused at once, with a
// ThrottledError matching ErrLoginBusy (429 with Retry-After at the token
// endpoint), and compute no hash. Cached verifications and token logins do
// not pass through it.
func TestHashGate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithLoginLimits(1000, time.Second, time.Minute), WithPasswordHashLimit(1, 2, 300*time.Millisecond))
	s := e.s
	ctx := context.Background()
	if _, err := s.EnsureAdmin(ctx, "right-password", e.dir); err != nil {
		t.Fatal(err)
	}
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "ci-token", ScopeMap: ScopeMapPull})
	adminLogin(t, s, "right-password") // cached from now on (after the last change)

	release, err := s.gate.enter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h0 := s.hashes.Load()
	queued := make([]error, 2)
	var wg sync.WaitGroup
	for i := range queued {
		wg.Go(func() { queued[i] = adminTry(s, "10.0.1."+strconv.Itoa(i), "wrong-"+strconv.Itoa(i)) })
	}
	waitQueued(t, s, 3)

	// The queue is full: refused at once.
	t0 := time.Now()
	err = adminTry(s, "10.0.2.1", "right-password-not-cached")
	var te *ThrottledError
	if !errors.As(err, &te) || !errors.Is(err, ErrLoginBusy) || !errors.Is(err, ErrUnauthenticated) ||
		!errors.Is(err, errdefs.ErrTooManyRequests) || errors.Is(err, ErrTooManyAttempts) || te.RetryAfter < time.Second {
		t.Fatalf("login beyond the queue: %v, want a ThrottledError matching ErrLoginBusy", err)
	}
	if d := time.Since(t0); d > 200*time.Millisecond {
		t.Errorf("login beyond the queue refused after %s, want at once", d)
	}
	if !strings.Contains(err.Error(), "too many logins in progress") {
		t.Errorf("message %q does not say why", err)
	}
	w := tokenGet(s, "reg1", basic(AdminUsername, "another-password"), nil, "repository:app:pull")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("token endpoint beyond the queue: %d (Retry-After %q) %s, want 429 with Retry-After", w.Code, w.Header().Get("Retry-After"), w.Body)
	}

	// What needs no hash still works: the cached admin, a token.
	adminLogin(t, s, "right-password")
	r := request("GET", "/v2/")
	r.SetBasicAuth("ci-token", tok.Passwords[0].Value)
	if _, err := s.Authorize(r, "reg1", pull("app")); err != nil {
		t.Fatalf("token login while the gate is full: %v", err)
	}

	// The queued logins give up after the wait.
	wg.Wait()
	for i, err := range queued {
		if !errors.Is(err, ErrLoginBusy) {
			t.Errorf("queued login %d: %v, want ErrLoginBusy after the wait", i, err)
		}
	}
	if n := s.hashes.Load() - h0; n != 0 {
		t.Fatalf("refused logins computed %d hashes", n)
	}

	// A queued login whose request ends gives up its place.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := s.gate.enter(cctx)
		done <- err
	}()
	waitQueued(t, s, 2)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}

	// Once the slot is free the queue drains and logins hash again.
	release()
	if len(s.gate.room) != 0 || len(s.gate.slots) != 0 {
		t.Fatalf("gate not empty: %d in, %d slots taken", len(s.gate.room), len(s.gate.slots))
	}
	if err := adminTry(s, "10.0.3.1", "wrong"); !errors.Is(err, ErrUnauthenticated) || errors.Is(err, errdefs.ErrTooManyRequests) {
		t.Fatalf("login after the flood: %v, want invalid credentials", err)
	}
	if n := s.hashes.Load() - h0; n != 1 {
		t.Fatalf("login after the flood computed %d hashes, want 1", n)
	}
}

// A successful admin verification is remembered for a while under a keyed
// hash of the password and the stored hash (never the password itself); a
// changed password, through the Service or behind its back, never matches
// it.
func TestAdminVerificationCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.s
	ctx := context.Background()
	if _, err := s.EnsureAdmin(ctx, "password-one", e.dir); err != nil {
		t.Fatal(err)
	}
	hashes := func(f func()) int64 {
		t.Helper()
		h0 := s.hashes.Load()
		f()
		return s.hashes.Load() - h0
	}
	if n := hashes(func() { adminLogin(t, s, "password-one") }); n != 1 {
		t.Fatalf("first login: %d hashes, want 1", n)
	}
	// Hits: no hash, for as long as the entry lives (2 minutes).
	if n := hashes(func() {
		for range 50 {
			adminLogin(t, s, "password-one")
		}
		e.clock.Advance(adminVerifiedTTL - time.Second)
		adminLogin(t, s, "password-one")
	}); n != 0 {
		t.Fatalf("cached logins: %d hashes, want 0", n)
	}
	for k := range s.adminOK.m {
		if strings.Contains(k, "password-one") {
			t.Fatal("the verification cache holds the password")
		}
	}
	// A wrong password is never cached.
	if n := hashes(func() {
		for range 2 {
			if err := adminTry(s, "10.0.0.9", "password-two"); !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("wrong password: %v", err)
			}
		}
	}); n != 2 {
		t.Fatalf("2 wrong passwords: %d hashes, want 2", n)
	}
	// Expired: hashed again.
	e.clock.Advance(2 * time.Second)
	if n := hashes(func() { adminLogin(t, s, "password-one") }); n != 1 {
		t.Fatalf("login after the entry expired: %d hashes, want 1", n)
	}

	// The password changes: the old one is refused (hashed, not taken from
	// the cache), the new one works.
	if _, err := s.EnsureAdmin(ctx, "password-two", e.dir); err != nil {
		t.Fatal(err)
	}
	if n := hashes(func() {
		if err := adminTry(s, "10.0.0.10", "password-one"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("old password after the change: %v, want refused", err)
		}
	}); n != 1 {
		t.Fatalf("old password after the change: %d hashes, want 1", n)
	}
	adminLogin(t, s, "password-two")

	// Changes to other credentials keep the entry.
	mustToken(t, s, TokenSpec{Registry: "reg1", Name: "new-token", ScopeMap: ScopeMapPull})
	if n := hashes(func() { adminLogin(t, s, "password-two") }); n != 0 {
		t.Fatalf("cached login after a token was created: %d hashes, want 0", n)
	}
	// The password replaced behind the Service's back: after Invalidate the
	// cached verification no longer applies.
	if _, err := e.db.W.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE name = ?`, s.hashPassword("password-three"), AdminUsername); err != nil {
		t.Fatal(err)
	}
	s.Invalidate()
	if err := adminTry(s, "10.0.0.11", "password-two"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("replaced password after Invalidate: %v, want refused", err)
	}
	adminLogin(t, s, "password-three")
}

// Concurrent logins with the same right password wait for the first one's
// verification: one hash, no room taken in the hash gate, all succeed.
func TestAdminVerificationCoalesced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithPasswordHashLimit(1, 1, 10*time.Second))
	s := e.s
	if _, err := s.EnsureAdmin(context.Background(), "right-password", e.dir); err != nil {
		t.Fatal(err)
	}
	release, err := s.gate.enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h0 := s.hashes.Load()
	errs := make([]error, 10)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = adminTry(s, "10.0.4."+strconv.Itoa(i), "right-password") })
	}
	waitQueued(t, s, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.verifyingMu.Lock()
		n := len(s.verifying)
		s.verifyingMu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others reach the wait
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("login %d: %v", i, err)
		}
	}
	if n := s.hashes.Load() - h0; n != 1 {
		t.Fatalf("10 concurrent logins computed %d hashes, want 1", n)
	}
}

func TestPasswordHashLimitOption(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		slots, queued int
		wait          time.Duration
	}{{0, 1, time.Second}, {1, -1, time.Second}, {1, 1, -time.Second}} {
		if err := WithPasswordHashLimit(c.slots, c.queued, c.wait)(&options{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("WithPasswordHashLimit(%d, %d, %s): %v, want ErrInvalid", c.slots, c.queued, c.wait, err)
		}
	}
	if n := defaultHashSlots(defaultArgon.memory); n < 1 || n*int(defaultArgon.memory)<<10 > hashMemoryBudget {
		t.Errorf("default slots %d: want 1 or more, within the memory budget", n)
	}
}
