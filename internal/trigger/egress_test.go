package trigger

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/store"
)

// TestPollsObeyEgress: base-image polls never reach the control API, a
// link-local address or a denied host, and a poll's credentials do not
// follow a redirect to another port of the same host.
func TestPollsObeyEgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	control := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("the control API was polled")
	}))
	t.Cleanup(control.Close)
	controlHost := strings.TrimPrefix(control.URL, "http://")
	anon := startUpstream(t, true)
	d := push(t, anon.store, "hub", "library/node", store.Actor{}, "1")
	p, err := egress.New(egress.WithControlAddr(controlHost), egress.WithDeny("denied.example"))
	if err != nil {
		t.Fatal(err)
	}
	s := New(nil, nil, nil, nil, WithEgress(p))

	for host, reason := range map[string]string{
		controlHost: egress.ReasonControlAPI,
		"localhost:" + control.URL[strings.LastIndex(control.URL, ":")+1:]: egress.ReasonControlAPI,
		"169.254.169.254": egress.ReasonMetadata,
		"denied.example":  egress.ReasonDenied,
	} {
		_, err := s.headDigest(ctx, host, "library/node", "1")
		var re *egress.RefusedError
		if !errors.As(err, &re) || re.Reason != reason || !strings.Contains(err.Error(), reason+" (refused)") {
			t.Errorf("poll of %s: %v, want refused: %s", host, err, reason)
		}
	}
	// Loopback registries other than the control API are polled.
	if got, err := s.headDigest(ctx, anon.host, "library/node", "1"); err != nil || got != d.String() {
		t.Fatalf("poll of a loopback registry: %s, %v", got, err)
	}

	// A registry that asks for Basic credentials and redirects the
	// manifest to another port of the same host: the login goes to the
	// registry only.
	var mu sync.Mutex
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaked = append(leaked, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Docker-Content-Digest", d.String())
	}))
	t.Cleanup(other.Close)
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="reg"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(reg.Close)
	s = New(nil, nil, nil, nil, WithEgress(p), WithCredentials(func(context.Context, string) (string, string, error) {
		return "poller", "poll-s3cret", nil
	}))
	if got, err := s.headDigest(ctx, strings.TrimPrefix(reg.URL, "http://"), "library/node", "1"); err != nil || got != d.String() {
		t.Fatalf("poll through a redirect: %s, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) == 0 {
		t.Fatal("the redirect target was not asked")
	}
	for _, a := range leaked {
		if a != "" {
			t.Errorf("the redirect target got Authorization %q", a)
		}
	}
}
