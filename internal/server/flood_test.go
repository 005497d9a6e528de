package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
)

// TestPasswordFlood is the regression test of issue 15 D1: 200 concurrent
// clients sending a wrong admin password, from a few source addresses, to
// the registry's token endpoint, the control API and the registry's OCI API
// with Basic auth, over and over while a
// legitimate token logs in 20 times from another address. The server runs
// in this process, so its memory is the test binary's:
//
//   - the peak RSS (sampled every 10 ms) grows by less than 150 MB over the
//     baseline (the target is under 200 MB in all; each argon2id
//     hash takes 19 MiB, so unbounded hashing grows by gigabytes);
//   - every flood request is answered 401 or 429 (with Retry-After), never
//     5xx, and each of the three endpoints (token endpoint, control API,
//     registry /v2/ with Basic) answers 429;
//   - the legitimate logins all succeed, with p99 under 500 ms as the issue
//     asks (asserted with a 2 s ceiling, so a loaded CI machine does not
//     fail it; the measured p99 is logged).
//
// It does not run in parallel: parallel tests would add their memory to the
// measurement.
func TestPasswordFlood(t *testing.T) {
	srv := startServer(t, serverOptions{})
	reg := srv.createRegistry("flood", false)
	tok, err := srv.admin().CreateToken(context.Background(), "flood", api.CreateTokenRequest{Name: "ci-flood", ScopeMap: "_repositories_pull"})
	if err != nil {
		t.Fatal(err)
	}
	tokenPass := tok.Credentials.Passwords[0].Value

	tokenURL := "http://" + reg + "/oauth2/token?service=" + reg + "&scope=repository:app:pull"
	send := func(c *http.Client, url, user, pass string) (int, http.Header, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return 0, nil, err
		}
		req.SetBasicAuth(user, pass)
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header, err
	}

	runtime.GC()
	debug.FreeOSMemory()
	base, err := rss()
	if err != nil {
		t.Skipf("cannot measure RSS: %v", err)
	}

	var peak atomic.Int64
	peak.Store(base)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := rss(); err == nil && v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	// The flood: 200 workers, each with one request in flight at a time,
	// from 4 source addresses, until the legitimate logins are done.
	const workers = 200
	var sources []*http.Client
	for range 4 {
		sources = append(sources, httpFrom(freshSource()))
	}
	// The token endpoint, the control API and the OCI API.
	urls := []string{tokenURL, srv.url("/v1/whoami"), "http://" + reg + "/v2/"}
	ctx, stopFlood := context.WithTimeout(context.Background(), 60*time.Second)
	defer stopFlood()
	var (
		mu        sync.Mutex
		statuses  = map[int]int{}
		throttled = map[string]int{} // URL -> 429 answers
		problems  []string
		sent      atomic.Int64
		wg        sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for n := 0; ctx.Err() == nil; n++ {
				url := urls[(i+n)%len(urls)]
				status, h, err := send(sources[i%len(sources)], url, "admin", "wrong-"+strconv.Itoa(i)+"-"+strconv.Itoa(n))
				sent.Add(1)
				mu.Lock()
				switch {
				case err != nil:
					problems = append(problems, err.Error())
				case status == http.StatusTooManyRequests && h.Get("Retry-After") == "":
					problems = append(problems, "429 without Retry-After")
				case status != http.StatusUnauthorized && status != http.StatusTooManyRequests:
					problems = append(problems, fmt.Sprintf("status %d", status))
				}
				statuses[status]++
				if status == http.StatusTooManyRequests {
					throttled[url]++
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	// Let the flood build up before the legitimate logins.
	time.Sleep(100 * time.Millisecond)

	legit := httpFrom(freshSource())
	var took []time.Duration
	for i := range 20 {
		t0 := time.Now()
		status, _, err := send(legit, tokenURL, "ci-flood", tokenPass)
		took = append(took, time.Since(t0))
		if err != nil || status != http.StatusOK {
			t.Errorf("legitimate login %d during the flood: status %d, %v", i+1, status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopFlood()
	wg.Wait()
	close(stopSampling)
	<-sampled

	slices.Sort(took)
	p99 := took[(len(took)*99+99)/100-1]
	growth := peak.Load() - base
	t.Logf("flood: %d requests by %d workers, statuses %v; RSS baseline %d MB, peak %d MB (growth %d MB); legitimate login p50 %s, p99 %s",
		sent.Load(), workers, statuses, base>>20, peak.Load()>>20, growth>>20, took[len(took)/2], p99)
	if len(problems) > 0 {
		t.Errorf("%d flood requests answered badly, e.g. %s", len(problems), problems[0])
	}
	for _, url := range urls {
		if throttled[url] == 0 {
			t.Errorf("%s never answered 429 during the flood", url)
		}
	}
	if growth >= 150<<20 {
		t.Errorf("RSS grew by %d MB under the flood, want < 150 MB", growth>>20)
	}
	if p99 > 2*time.Second {
		t.Errorf("legitimate login p99 %s under the flood, want < 500 ms (asserted: < 2 s)", p99)
	}
}

// rss returns the resident set size of this process (VmRSS), in bytes.
func rss() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", strings.TrimSpace(v), err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}
