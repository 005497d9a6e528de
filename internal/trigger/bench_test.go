package trigger

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
)

// benchRegistry serves publicregistry's Distribution API on loopback.
func benchRegistry(b *testing.B, e *env) *httptest.Server {
	b.Helper()
	mux := http.NewServeMux()
	mux.Handle("/v2/", registry.New("publicregistry", e.Store, registry.WithAuthorizer(auth.AllowAll{})))
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	return srv
}

// preparePut uploads a fresh config blob and returns the manifest PUT of
// node:15-alpine that references it.
func preparePut(b *testing.B, e *env, srv *httptest.Server, n int) *http.Request {
	b.Helper()
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{"Labels":{"n":"%d-%d"}}}`, n, time.Now().UnixNano()))
	cd := digest.FromBytes(config)
	if _, err := e.Store.PutBlob(context.Background(), "publicregistry", "node", cd, int64(len(config)), bytes.NewReader(config)); err != nil {
		b.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, srv.URL+"/v2/node/manifests/15-alpine", bytes.NewReader(manifestBody(cd, len(config))))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	return req
}

func doPut(b *testing.B, srv *httptest.Server, req *http.Request) {
	resp, err := srv.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("manifest PUT: %s", resp.Status)
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// BenchmarkPushToQueued measures the latency from a manifest PUT of a
// tracked tag (HTTP, loopback) to the dependent task's run being Queued.
// Run with -benchtime=200x; it reports p50 and p99 in milliseconds.
func BenchmarkPushToQueued(b *testing.B) {
	for _, window := range []time.Duration{15 * time.Millisecond, 0} {
		b.Run(fmt.Sprintf("debounce=%s", window), func(b *testing.B) {
			e := baseEnv(b)
			srv := benchRegistry(b, e)
			push(b, e.Store, "publicregistry", "node", store.Actor{Principal: "admin"}, "15-alpine")
			e.createTask(b, "contoso", "hello-world", nil)
			e.exec.set("hello-world", e.builds(publicHost+"/node:15-alpine", nil, nil))
			e.startTasks(b)
			e.runNow(b, "contoso", "hello-world")
			queued := make(chan time.Time, 16)
			e.tasks.SubscribeRuns(func(r task.Run) {
				if r.Status == task.RunQueued && r.Trigger == task.TriggerImageUpdate {
					queued <- time.Now()
				}
			})
			e.startTrigger(b, WithDebounce(window))

			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				req := preparePut(b, e, srv, i)
				b.StartTimer()
				start := time.Now()
				doPut(b, srv, req)
				at := recv(b, queued, "the dependent run")
				lat = append(lat, at.Sub(start))
				b.StopTimer()
				e.waitFinished(b, "contoso", "hello-world")
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(percentile(lat, 1).Microseconds())/1000, "max-ms")
		})
	}
}

// BenchmarkFanOut1000 measures how long 1,000 tasks depending on one base
// take to be all Queued after a manifest PUT of the base (reported as
// fanout-ms).
func BenchmarkFanOut1000(b *testing.B) {
	const n = 1000
	e := baseEnv(b)
	ctx := context.Background()
	srv := benchRegistry(b, e)
	d0 := push(b, e.Store, "publicregistry", "node", store.Actor{Principal: "admin"}, "15-alpine")
	// 1,000 tasks that have each built once FROM node:15-alpine: the rows a
	// successful run records, written directly to keep the setup short.
	for i := 0; i < n; i++ {
		tk := e.createTask(b, "contoso", fmt.Sprintf("app-%04d", i), nil)
		if _, err := e.DB.W.ExecContext(ctx, `INSERT INTO task_base_images(task_id, image, registry, repository, tag, digest, runtime, run_id, updated_at)
			VALUES (?, ?, ?, 'node', '15-alpine', ?, 1, 'setup', '2025-01-01T00:00:00Z')`,
			tk.ID, publicHost+"/node:15-alpine", publicHost, d0.String()); err != nil {
			b.Fatal(err)
		}
	}
	queued := make(chan struct{}, n)
	e.tasks.SubscribeRuns(func(r task.Run) {
		if r.Status == task.RunQueued && r.Trigger == task.TriggerImageUpdate {
			queued <- struct{}{}
		}
	})
	e.startTrigger(b)

	var total, worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// The previous round's runs never started: cancel them so that this
		// round is not coalesced into them.
		if _, err := e.DB.W.ExecContext(ctx, `UPDATE runs SET status = 'Canceled' WHERE status = 'Queued'`); err != nil {
			b.Fatal(err)
		}
		req := preparePut(b, e, srv, i)
		b.StartTimer()
		start := time.Now()
		doPut(b, srv, req)
		for j := 0; j < n; j++ {
			recv(b, queued, "the dependent runs")
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "fanout-ms")
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
