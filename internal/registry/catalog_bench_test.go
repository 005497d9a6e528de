package registry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// BenchmarkCatalogContention measures manifest GET latency with and
// without a catalog load: a registry of 2,000 repositories, each with one
// tagged manifest; each iteration times 100 manifest GETs (by tag, across
// the repositories, one at a time) unloaded, then 100 while 8 clients walk
// the whole catalog over and over (following Link headers), and reports the
// median of each and their ratio. The manifest cache is off, so every GET
// reads the database, as after a restart or with more manifests than the
// cache holds. Run it with
//
//	go test -run '^$' -bench CatalogContention -benchtime 5x ./internal/registry/
//
// The target (issue 15, D3): loaded p50 within 2x of unloaded.
func BenchmarkCatalogContention(b *testing.B) {
	const (
		repos   = 2000
		loaders = 8
		samples = 100
	)
	dir := b.TempDir()
	st, err := store.Open(context.Background(), testenv.DB(b, dir), filepath.Join(dir, "data"), store.WithManifestCache(0))
	if err != nil {
		b.Fatal(err)
	}
	testenv.CreateRegistries(b, st, "test")
	mux := http.NewServeMux()
	mux.Handle("/v2/", registry.New("test", st, registry.WithAuthorizer(auth.AllowAll{})))
	e := &env{st: st, srv: newServer(b, mux), name: "test"}
	for i := range repos {
		repo := fmt.Sprintf("org-%d/app", i)
		e.expect(b, e.do(b, "PUT", "/v2/"+repo+"/manifests/latest", e.image(b, repo, mtManifest, repo), "Content-Type", mtManifest), http.StatusCreated, "")
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: loaders + 1}}
	get := func(target string) (http.Header, error) {
		req, err := http.NewRequest("GET", e.srv.URL+target, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", mtManifest)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", target, resp.Status)
		}
		return resp.Header, nil
	}
	n := 0
	measure := func(into *[]time.Duration) {
		for range samples {
			n++
			start := time.Now()
			if _, err := get(fmt.Sprintf("/v2/org-%d/app/manifests/latest", (n*7919)%repos)); err != nil {
				b.Fatal(err)
			}
			*into = append(*into, time.Since(start))
		}
	}
	link := regexp.MustCompile(`^<([^>]*)>`)
	var unloaded, loaded []time.Duration
	var walks int
	b.ResetTimer()
	for range b.N {
		measure(&unloaded)

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range loaders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					for target := "/v2/_catalog"; target != "" && ctx.Err() == nil; {
						h, err := get(target)
						if err != nil {
							b.Error(err)
							return
						}
						target = ""
						if m := link.FindStringSubmatch(h.Get("Link")); m != nil {
							target = m[1]
						}
					}
					mu.Lock()
					walks++
					mu.Unlock()
				}
			}()
		}
		time.Sleep(200 * time.Millisecond) // let the load build up
		measure(&loaded)
		cancel()
		wg.Wait()
	}
	b.StopTimer()
	u, l := testenv.Median(unloaded), testenv.Median(loaded)
	b.ReportMetric(float64(u.Microseconds())/1000, "unloaded-p50-ms")
	b.ReportMetric(float64(l.Microseconds())/1000, "loaded-p50-ms")
	b.ReportMetric(float64(l)/float64(u), "loaded/unloaded")
	b.Logf("manifest GET p50: unloaded %v, under %d catalog walkers %v (%.1fx), p99 %v / %v; %d catalog walks of %d repositories",
		u, loaders, l, float64(l)/float64(u), p99(unloaded), p99(loaded), walks, repos)
}

// p99 is the 99th percentile of ds.
func p99(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*99/100]
}
