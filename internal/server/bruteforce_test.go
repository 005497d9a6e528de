package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
)

// TestBruteForceOverHTTP checks the login limiter through the real
// listeners with the server's default limits (5 free failures per client
// address and user name, then lockouts of 1s doubling up to 15m):
//
//   - failed logins from one client are answered 401 until the free ones are
//     used up, then refused with 429 and Retry-After, on the control API, on
//     the registry (Basic) and at the token endpoint alike, since they share
//     the limiter;
//   - during a lockout the right password is refused exactly like a wrong
//     one (the lockout is no oracle), and accepted again once it expires;
//   - further failures lock the client out for longer;
//   - another client address is not locked out (one attacker cannot lock the
//     admin out for everyone), and neither is another user name.
func TestBruteForceOverHTTP(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	reg := srv.createRegistry("guarded", false)
	tok, err := srv.admin().CreateToken(context.Background(), "guarded", api.CreateTokenRequest{Name: "ci-token", ScopeMap: "_repositories_pull"})
	if err != nil {
		t.Fatal(err)
	}
	tokenPass := tok.Credentials.Passwords[0].Value

	attacker := freshSource()
	from := httpFrom(attacker)
	control := func(c *http.Client, user, pass string) response {
		req := newRequest(t, "GET", srv.url("/v1/whoami"), nil)
		req.SetBasicAuth(user, pass)
		return do(t, c, req)
	}
	registry := func(c *http.Client, user, pass string) response {
		req := newRequest(t, "GET", "http://"+reg+"/v2/", nil)
		req.SetBasicAuth(user, pass)
		return do(t, c, req)
	}
	tokenEndpoint := func(c *http.Client, user, pass string) response {
		req := newRequest(t, "GET", "http://"+reg+"/oauth2/token?service="+reg+"&scope=repository:app:pull", nil)
		req.SetBasicAuth(user, pass)
		return do(t, c, req)
	}
	wantThrottled := func(what string, r response, maxWait int) {
		t.Helper()
		if r.status != http.StatusTooManyRequests {
			t.Fatalf("%s: %s, want 429", what, r)
		}
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > maxWait {
			t.Errorf("%s: Retry-After %q, want 1..%d seconds", what, r.header.Get("Retry-After"), maxWait)
		}
		if strings.Contains(string(r.body), srv.adminPassword) || strings.Contains(string(r.body), tokenPass) {
			t.Errorf("%s: the answer echoes a password: %s", what, r)
		}
	}

	// Five free failures, on the three endpoints in turn.
	for i, send := range []func(*http.Client, string, string) response{control, registry, tokenEndpoint, control, registry} {
		if r := send(from, "admin", "wrong-"+strconv.Itoa(i)); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %s, want 401", i+1, r)
		}
	}
	// The sixth failure is still answered 401 and starts a 1s lockout.
	if r := control(from, "admin", "wrong-6"); r.status != http.StatusUnauthorized {
		t.Fatalf("failure 6: %s, want 401", r)
	}
	lockedAt := time.Now()
	// Locked out: wrong and right passwords alike, on every endpoint.
	wantThrottled("control API, wrong password", control(from, "admin", "wrong-7"), 1)
	wantThrottled("control API, right password", control(from, "admin", srv.adminPassword), 1)
	r := registry(from, "admin", srv.adminPassword)
	wantThrottled("registry, right password", r, 1)
	if !strings.Contains(string(r.body), "TOOMANYREQUESTS") {
		t.Errorf("registry refusal without an OCI error body: %s", r)
	}
	wantThrottled("token endpoint, right password", tokenEndpoint(from, "admin", srv.adminPassword), 2)
	var body api.ErrorBody
	if r := control(from, "admin", srv.adminPassword); json.Unmarshal(r.body, &body) != nil || body.Error == nil || body.Error.Code != api.CodeTooManyRequests {
		t.Errorf("control API refusal: %s, want a TOO_MANY_REQUESTS error body", r)
	}
	// Others are not locked out: the admin from another address, another
	// user from the attacker's address.
	if r := control(httpFrom(freshSource()), "admin", srv.adminPassword); r.status != http.StatusOK {
		t.Fatalf("admin from another address during the lockout: %s", r)
	}
	if r := registry(from, "ci-token", tokenPass); r.status != http.StatusOK {
		t.Fatalf("another user from the attacker's address: %s", r)
	}
	// Refusals during the lockout did not extend it; after it the next
	// failure locks out for 2s.
	time.Sleep(time.Until(lockedAt.Add(1100 * time.Millisecond)))
	if r := control(from, "admin", "wrong-8"); r.status != http.StatusUnauthorized {
		t.Fatalf("failure after the first lockout: %s, want 401", r)
	}
	lockedAt = time.Now()
	wantThrottled("second lockout, right password", control(from, "admin", srv.adminPassword), 2)
	time.Sleep(time.Until(lockedAt.Add(1100 * time.Millisecond)))
	wantThrottled("second lockout after 1s, right password", registry(from, "admin", srv.adminPassword), 1)
	time.Sleep(time.Until(lockedAt.Add(2100 * time.Millisecond)))
	// Expired: the right password works and resets the count.
	if r := control(from, "admin", srv.adminPassword); r.status != http.StatusOK {
		t.Fatalf("right password after the lockout: %s", r)
	}
	for i := range 5 {
		if r := registry(from, "admin", "wrong-again-"+strconv.Itoa(i)); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d after a success: %s, want 401 (the count was reset)", i+1, r)
		}
	}

	// Tokens are protected the same way, per token name.
	tokClient := httpFrom(freshSource())
	for i := range 6 {
		if r := registry(tokClient, "ci-token", "wrong-"+strconv.Itoa(i)); r.status != http.StatusUnauthorized {
			t.Fatalf("token failure %d: %s, want 401", i+1, r)
		}
	}
	wantThrottled("token, right password", registry(tokClient, "ci-token", tokenPass), 1)
	wantThrottled("token on the control API, right password", control(tokClient, "guarded/ci-token", tokenPass), 1)

	// The admin's usual client (127.0.0.1) never saw a failure.
	if _, err := srv.admin().Whoami(context.Background()); err != nil {
		t.Fatalf("the admin's usual client: %v", err)
	}
	if log := srv.log.String(); !strings.Contains(log, "login refused: too many failures") {
		t.Errorf("the server log does not record the lockout")
	}
}
