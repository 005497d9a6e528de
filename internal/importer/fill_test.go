package importer

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// fillRows counts the persisted cache fills.
func (e *env) fillRows(t testing.TB) int {
	t.Helper()
	var n int
	if err := e.db.R.QueryRowContext(context.Background(), `SELECT count(*) FROM cache_fills`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// pullTag reads a tag through the cache like a client and checks that the
// index is served.
func pullTag(t testing.TB, host, repo, tag string, img *content) {
	t.Helper()
	st, body, _ := get(t, "GET", "http://"+host+"/v2/"+repo+"/manifests/"+tag, map[string]string{"Accept": acceptAll})
	if st != http.StatusOK || !bytes.Equal(body, img.root().body) {
		t.Fatalf("pull of %s:%s: %d %s", repo, tag, st, body)
	}
}

// waitFills waits for the importer's fills, for at most a minute.
func (e *env) waitFills(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.im.WaitFills(ctx); err != nil {
		t.Fatalf("waiting for cache fills: %v", err)
	}
}

// checkFilled verifies that the whole index is stored in reg/repo, tag
// points at it, and no fill is left in the database.
func (e *env) checkFilled(t testing.TB, reg, repo, tag string, img *content) {
	t.Helper()
	checkStored(t, e.st, reg, repo, img)
	if d, err := e.st.ResolveTag(context.Background(), reg, repo, tag); err != nil || d != img.root().d {
		t.Fatalf("tag %s: %s %v, want %s", tag, d, err, img.root().d)
	}
	if n := e.fillRows(t); n != 0 {
		t.Fatalf("%d cache fills left in the database", n)
	}
}

// pullThroughCache starts an env whose registry contoso caches px's
// library/app as app, retrying failed fills after retry, and pulls app:v1
// (img) through it, which starts a fill.
func pullThroughCache(t testing.TB, img *content, up *testenv.Distribution, px *proxy, retry time.Duration) *env {
	t.Helper()
	e := newEnv(t, WithFillRetry(retry))
	host := e.registry(t, "contoso", nil)
	e.cacheSetup(t, "contoso", up, px.Host, "app-rule", px.Host+"/library/app", "app")
	pullTag(t, host, "app", "v1", img)
	return e
}

// TestCacheFillRetriesAfterOutage: the upstream answers 503 to every blob
// request; the fill of a pulled index fails (twice), is retried with
// backoff, and once the upstream is back completes without any further
// client pull: every platform manifest and blob stored, the tag moved.
func TestCacheFillRetriesAfterOutage(t *testing.T) {
	t.Parallel()
	img := index("outage", 64<<10)
	up, px := proxiedUpstream(t, img, "v1", "library/app")
	var outage atomic.Bool
	outage.Store(true)
	px.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if outage.Load() && strings.Contains(r.URL.Path, "/blobs/") {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	e := pullThroughCache(t, img, up, px, 50*time.Millisecond)
	testenv.WaitFor(t, 30*time.Second, "two failed fill attempts", func() bool {
		return strings.Count(e.logs.String(), "cache fill failed") >= 2
	})
	if !strings.Contains(e.logs.String(), "retrying") {
		t.Fatal("no log line about the retry")
	}
	outage.Store(false)
	e.waitFills(t)
	e.checkFilled(t, "contoso", "app", "v1", img)
}

// TestCacheFillResumesAfterRestart: the server stops while a fill waits for
// the upstream's blobs; a new server on the same data resumes it at start
// and completes it without any client pull.
func TestCacheFillResumesAfterRestart(t *testing.T) {
	t.Parallel()
	img := index("restart", 64<<10)
	up, px := proxiedUpstream(t, img, "v1", "library/app")
	gate := make(chan struct{})
	px.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/blobs/") {
			select {
			case <-gate:
			case <-r.Context().Done():
				return true
			}
		}
		return false
	})
	e := pullThroughCache(t, img, up, px, 50*time.Millisecond)
	testenv.WaitFor(t, 30*time.Second, "blob requests upstream", func() bool { return px.total("/blobs/") > 0 })
	e.restart(t)
	close(gate)
	e.waitFills(t)
	e.checkFilled(t, "contoso", "app", "v1", img)
	if !strings.Contains(e.logs.String(), "resuming cache fill") {
		t.Fatal("no log line about resuming the fill")
	}
}

// TestCacheFillDroppedWhenUpstreamForgets: the fill's first attempt fails
// on the platform manifests (503); then the upstream no longer has them
// (404): the fill is dropped with a warning, its row deleted, and the
// upstream is not asked again.
func TestCacheFillDroppedWhenUpstreamForgets(t *testing.T) {
	t.Parallel()
	img := index("gone", 16<<10)
	up, px := proxiedUpstream(t, img, "v1", "library/app")
	children := map[string]bool{}
	for _, m := range img.manifests[:2] {
		children["/v2/library/app/manifests/"+m.d.String()] = true
	}
	var gone atomic.Bool
	var notFound atomic.Int64
	px.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !children[r.URL.Path] {
			return false
		}
		if !gone.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		notFound.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
		return true
	})
	const retry = 20 * time.Millisecond
	e := pullThroughCache(t, img, up, px, retry)
	testenv.WaitFor(t, 30*time.Second, "a failed fill attempt", func() bool { return strings.Contains(e.logs.String(), "cache fill failed") })
	gone.Store(true)
	testenv.WaitFor(t, 30*time.Second, "the fill dropped", func() bool { return strings.Contains(e.logs.String(), "dropping it") })
	e.waitFills(t)
	if n := e.fillRows(t); n != 0 {
		t.Fatalf("%d cache fills left in the database", n)
	}
	asked := notFound.Load()
	if asked == 0 {
		t.Fatal("the upstream was never asked again after the 503")
	}
	time.Sleep(30 * retry)
	if n := notFound.Load(); n != asked {
		t.Fatalf("the upstream was asked %d more times after the fill was dropped", n-asked)
	}
	if _, err := e.st.ResolveTag(context.Background(), "contoso", "app", "v1"); err == nil {
		t.Fatal("the tag of a dropped fill exists")
	}
}

// TestCacheFillDroppedWithItsRule: a fill waiting for a retry is dropped
// when its cache rule is deleted (the row goes with the rule), and the
// upstream is not asked for it again.
func TestCacheFillDroppedWithItsRule(t *testing.T) {
	t.Parallel()
	img := index("norule", 16<<10)
	up, px := proxiedUpstream(t, img, "v1", "library/app")
	var blobs atomic.Int64
	px.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/blobs/") {
			blobs.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	const retry = 200 * time.Millisecond
	e := pullThroughCache(t, img, up, px, retry)
	testenv.WaitFor(t, 30*time.Second, "a failed fill attempt", func() bool { return strings.Contains(e.logs.String(), "retrying") })
	if err := e.im.DeleteCacheRule(context.Background(), "contoso", "app-rule"); err != nil {
		t.Fatal(err)
	}
	if n := e.fillRows(t); n != 0 {
		t.Fatalf("%d cache fills left after the rule was deleted", n)
	}
	e.waitFills(t)
	asked := blobs.Load()
	time.Sleep(5 * retry)
	if n := blobs.Load(); n != asked {
		t.Fatalf("%d more blob requests after the rule was deleted", n-asked)
	}
	if !strings.Contains(e.logs.String(), "dropping it") {
		t.Fatal("no log line about dropping the fill")
	}
	if _, err := e.st.ResolveTag(context.Background(), "contoso", "app", "v1"); err == nil {
		t.Fatal("the tag of a dropped fill exists")
	}
}

// TestFillBackoff: the wait doubles from the base up to 120 times it, and
// a longer Retry-After is honoured up to that bound.
func TestFillBackoff(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, nil, nil)
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
		16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	for i, w := range want {
		if got := s.fillBackoff(i+1, nil); got != w {
			t.Errorf("after attempt %d: %s, want %s", i+1, got, w)
		}
	}
	throttled := &UpstreamError{Status: http.StatusTooManyRequests, RetryAfter: 10 * time.Minute}
	if got := s.fillBackoff(1, throttled); got != 10*time.Minute {
		t.Errorf("Retry-After 10m: %s", got)
	}
	throttled.RetryAfter = 3 * time.Hour
	if got := s.fillBackoff(1, throttled); got != time.Hour {
		t.Errorf("Retry-After 3h: %s", got)
	}
}

// TestFillPermanent: the classification of failed fill attempts.
func TestFillPermanent(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&UpstreamError{Status: http.StatusNotFound}, true},
		{&UpstreamError{Status: http.StatusServiceUnavailable}, false},
		{&UpstreamError{Status: http.StatusTooManyRequests}, false},
		{&UpstreamError{Status: http.StatusUnauthorized}, false},
		{context.DeadlineExceeded, false},
		{context.Canceled, false},
		{ErrUnavailable, false},
		{errRuleGone, true},
		{store.ErrRegistryUnknown, true},
		{ErrTooLarge, true},
		{store.ErrManifestTooLarge, true},
		{store.ErrDigestInvalid, false},
		{ErrRefused, true},
		{remote.ErrUntrusted, false},
	} {
		if got := permanentFill(c.err); got != c.want {
			t.Errorf("permanentFill(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
