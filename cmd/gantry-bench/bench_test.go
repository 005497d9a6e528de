package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/testenv"
)

func TestBlobSet(t *testing.T) {
	t.Parallel()
	b, err := newBlobSet(64*10 + suffixLen)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		full := append(append([]byte{}, b.body...), b.suffix(i)...)
		if got, want := b.digest(i), digest.FromBytes(full); got != want {
			t.Fatalf("blob %d: digest %s, want %s", i, got, want)
		}
	}
	if b.digest(0) == b.digest(1) {
		t.Fatal("blobs are not distinct")
	}
	if _, err := newBlobSet(100); err == nil {
		t.Fatal("unaligned size accepted")
	}
}

func TestRepositoryOfPath(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/v2/a/b/blobs/uploads/": "a/b", "/v2/app/manifests/v1": "app", "/v2/x/tags/list": "x", "/v2/": "", "/v2/_catalog": "",
	} {
		if got := repository(path); got != want {
			t.Errorf("repository(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestTokenFlow checks that the client answers a Bearer challenge with a
// token fetched from the realm using Basic credentials, and replays bodies.
func TestTokenFlow(t *testing.T) {
	t.Parallel()
	var tokenRequests int
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "admin" || p != "secret" || !strings.HasPrefix(r.URL.Query().Get("scope"), "repository:app:") ||
			!strings.Contains(r.URL.Query().Get("scope"), "push") {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		tokenRequests++
		io.WriteString(w, `{"token":"tok"}`)
	})
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token",service="test",scope="repository:app:push"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if string(b) != "payload" {
			http.Error(w, "body lost", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	c := newClient(config{concurrency: 1}, "admin", "secret")
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v2/app/manifests/v1", bytes.NewReader([]byte("payload")))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	if tokenRequests != 1 {
		t.Fatalf("%d token requests, want 1 (cached)", tokenRequests)
	}
}

// TestRunInProcess runs every phase, scaled down, against the in-process
// registry.
func TestRunInProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, err := serveInProcess(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	cfg := config{blobSize: 64*1024 + suffixLen, blobCount: 8, pullRounds: 2, concurrency: 4, duration: 200 * time.Millisecond, manifestMax: 100}
	tg := &target{name: "gantry", base: p.url, client: newClient(cfg, "", "")}
	res, err := run(ctx, tg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobPush <= 0 || res.BlobPull <= 0 || res.ManifestPut <= 0 || res.ManifestGet <= 0 {
		t.Fatalf("results: %+v", res)
	}
	var out strings.Builder
	report(&out, cfg, []*target{tg, {name: "peer"}}, []results{res, res})
	if !strings.Contains(out.String(), "1.00x") {
		t.Fatalf("report:\n%s", out.String())
	}
}

// TestDistributionPeer starts Debian's docker-registry as the benchmark does
// and runs the scaled-down workload against it.
func TestDistributionPeer(t *testing.T) {
	t.Parallel()
	bin := testenv.Tool(t, "docker-registry")
	ctx := context.Background()
	p, err := startDistribution(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.stop()
		if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
			t.Errorf("peer directory left behind: %v", err)
		}
	}()
	cfg := config{blobSize: 64*1024 + suffixLen, blobCount: 4, pullRounds: 1, concurrency: 2, duration: 200 * time.Millisecond, manifestMax: 50}
	res, err := run(ctx, &target{name: "distribution", base: p.URL(), client: newClient(cfg, "", "")}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.ManifestGet <= 0 {
		t.Fatalf("results: %+v", res)
	}
}
