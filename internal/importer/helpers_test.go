package importer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/testenv/stack"
	"github.com/gantryhq/gantry/internal/vault"
)

// clock is a real clock that tests can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// env is a gantry server's parts in-process: database, store, auth, vault
// and the importer, started.
type env struct {
	sk    *stack.Stack
	dir   string
	db    *db.DB
	st    *store.Store
	au    *auth.Service
	vlt   *vault.Service
	im    *Service
	admin auth.Identity
	logs  *testenv.Buffer
	clock *clock
	// opts are the importer's options, stop ends its context and waits for
	// it (restart).
	opts []Option
	stop func()
}

func newEnv(t testing.TB, opts ...Option) *env {
	t.Helper()
	sk := stack.New(t, "")
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	admin := sk.Admin(t, "admin-password")
	c := &clock{}
	opts = append([]Option{WithLogger(log), WithClock(c.now), WithSpoolDir(sk.Dir)}, opts...)
	e := &env{sk: sk, dir: sk.Dir, db: sk.DB, st: sk.Store, au: sk.Auth, vlt: sk.Vault, logs: logs, clock: c, admin: admin, opts: opts}
	t.Cleanup(func() { // after the importer stops (cleanups run last first)
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	e.start(t)
	return e
}

// start creates and starts the importer over the env's database and store.
func (e *env) start(t testing.TB) {
	t.Helper()
	im := New(e.sk.DB, e.sk.Store, e.sk.Vault, e.sk.Auth, e.opts...)
	sctx, cancel := context.WithCancel(context.Background())
	if err := im.Start(sctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	e.im = im
	e.stop = func() {
		once.Do(func() {
			cancel()
			im.Wait()
		})
	}
	t.Cleanup(e.stop)
}

// restart stops the importer as a server shutdown does (its context ends,
// background work stops) and starts a new one over the same database and
// store. Registries served before keep the old importer as their fallback.
func (e *env) restart(t testing.TB) {
	t.Helper()
	e.stop()
	e.start(t)
}

// registry creates a registry served on 127.0.0.1 (with the importer's
// hooks) and returns its login server. With authorizer nil every request
// is allowed.
func (e *env) registry(t testing.TB, name string, authorizer auth.Authorizer) string {
	t.Helper()
	if authorizer == nil {
		authorizer = auth.AllowAll{}
	}
	return e.sk.ServeRegistry(t, store.Registry{Name: name}, registry.WithAuthorizer(authorizer), registry.WithFallback(e.im),
		registry.WithPushGuard(e.im), registry.WithLogger(slog.New(slog.NewTextHandler(e.logs, nil))))
}

// secret stores a value in a vault (created if needed) and returns its URI.
func (e *env) secret(t testing.TB, vaultName, name, value string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := e.vlt.GetVault(ctx, e.admin, vaultName); err != nil {
		if _, err := e.vlt.CreateVault(ctx, e.admin, vaultName); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.vlt.SetSecret(ctx, e.admin, vaultName, name, value); err != nil {
		t.Fatal(err)
	}
	return "vault://" + vaultName + "/secrets/" + name
}

// content is an image, index or artifact built for tests: its blobs and
// manifests, children before parents.
type content struct {
	blobs     map[digest.Digest][]byte
	manifests []mf
}

type mf struct {
	d    digest.Digest
	mt   string
	body []byte
}

func (c *content) root() mf { return c.manifests[len(c.manifests)-1] }

func (c *content) addBlob(b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	if c.blobs == nil {
		c.blobs = map[digest.Digest][]byte{}
	}
	c.blobs[d] = b
	return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
}

func (c *content) addManifest(mt string, v any) mf {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	m := mf{d: digest.FromBytes(body), mt: mt, body: body}
	c.manifests = append(c.manifests, m)
	return m
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// layer returns a gzipped tar holding one file, and the tar's digest
// (the diff ID).
func layer(name string, data []byte) ([]byte, digest.Digest) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg})
	_, _ = tw.Write(data)
	_ = tw.Close()
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	_, _ = zw.Write(raw.Bytes())
	_ = zw.Close()
	return gz.Bytes(), digest.FromBytes(raw.Bytes())
}

// image adds a platform image with one layer of layerSize random bytes
// (plus a small marker file naming seed) and returns its manifest.
func (c *content) image(seed, arch string, layerSize int) mf {
	data := append([]byte(seed+" "+arch+"\n"), randomBytes(layerSize)...)
	lb, diffID := layer("hello-"+arch+".txt", data)
	ld := c.addBlob(lb)
	ld.MediaType = ocispec.MediaTypeImageLayerGzip
	cfg, _ := json.Marshal(map[string]any{"architecture": arch, "os": "linux",
		"config": map[string]any{"Cmd": []string{"/hello"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []digest.Digest{diffID}}})
	cd := c.addBlob(cfg)
	cd.MediaType = ocispec.MediaTypeImageConfig
	return c.addManifest(ocispec.MediaTypeImageManifest, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
		"config": cd, "layers": []ocispec.Descriptor{ld}})
}

// index builds a two-platform index (linux/amd64, linux/arm64).
func index(seed string, layerSize int) *content {
	c := &content{}
	var children []ocispec.Descriptor
	for _, arch := range []string{"amd64", "arm64"} {
		m := c.image(seed, arch, layerSize)
		children = append(children, ocispec.Descriptor{MediaType: m.mt, Digest: m.d, Size: int64(len(m.body)),
			Platform: &ocispec.Platform{OS: "linux", Architecture: arch}})
	}
	c.addManifest(ocispec.MediaTypeImageIndex, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": children})
	return c
}

// artifact builds an OCI artifact (a Helm-chart-like manifest with a
// config media type of its own), optionally referring to subject.
func artifact(artifactType string, payload []byte, subject *mf) *content {
	c := &content{}
	var cfg ocispec.Descriptor
	if artifactType == "application/vnd.cncf.helm.config.v1+json" {
		cfg = c.addBlob([]byte(`{"name":"chart","version":"1.0.0"}`))
		cfg.MediaType = artifactType
	} else {
		cfg = c.addBlob([]byte("{}"))
		cfg.MediaType = "application/vnd.oci.empty.v1+json"
	}
	l := c.addBlob(payload)
	l.MediaType = "application/octet-stream"
	m := map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "config": cfg, "layers": []ocispec.Descriptor{l}}
	if cfg.MediaType != artifactType {
		m["artifactType"] = artifactType
	}
	if subject != nil {
		m["subject"] = ocispec.Descriptor{MediaType: subject.mt, Digest: subject.d, Size: int64(len(subject.body))}
	}
	c.addManifest(ocispec.MediaTypeImageManifest, m)
	return c
}

// pushHTTP pushes content to a registry over the Distribution API with
// Basic credentials (user "" for none), tagging the root with tag.
func pushHTTP(t testing.TB, base, user, pass, repo string, c *content, tag string) {
	t.Helper()
	do := func(method, u string, body []byte, ct string) *http.Response {
		req, err := http.NewRequest(method, u, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for d, b := range c.blobs {
		resp := do(http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil, "")
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("starting upload: %s", resp.Status)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(base)
		loc = u.ResolveReference(loc)
		q := loc.Query()
		q.Set("digest", d.String())
		loc.RawQuery = q.Encode()
		resp = do(http.MethodPut, loc.String(), b, "application/octet-stream")
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("uploading blob %s: %s %s", d, resp.Status, msg)
		}
	}
	for i, m := range c.manifests {
		ref := m.d.String()
		if i == len(c.manifests)-1 && tag != "" {
			ref = tag
		}
		resp := do(http.MethodPut, base+"/v2/"+repo+"/manifests/"+ref, m.body, m.mt)
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("pushing manifest %s: %s %s", m.d, resp.Status, msg)
		}
	}
}

// pushUp pushes content to the upstream registry up with its
// credentials, tagging the root with tag.
func pushUp(t testing.TB, up *testenv.Distribution, repo string, c *content, tag string) {
	t.Helper()
	pushHTTP(t, up.URL(), up.Username, up.Password, repo, c, tag)
}

// proxiedUpstream starts an upstream registry (docker-registry with
// authentication) holding c as each of repos:tag, and a proxy in front of
// it.
func proxiedUpstream(t testing.TB, c *content, tag string, repos ...string) (*testenv.Distribution, *proxy) {
	t.Helper()
	up := testenv.StartDistribution(t, true)
	px := newProxy(t, up.Host)
	for _, repo := range repos {
		pushUp(t, up, repo, c, tag)
	}
	return up, px
}

// pushStore puts content straight into the store.
func pushStore(t testing.TB, st *store.Store, reg, repo string, c *content, tag string) {
	t.Helper()
	ctx := context.Background()
	for d, b := range c.blobs {
		if _, err := st.PutBlob(ctx, reg, repo, d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range c.manifests {
		ref := m.d.String()
		if i == len(c.manifests)-1 && tag != "" {
			ref = tag
		}
		if _, err := st.PutManifest(ctx, reg, repo, store.PutManifestRequest{Reference: ref, MediaType: m.mt, Body: m.body}); err != nil {
			t.Fatal(err)
		}
	}
}

// checkStored verifies that every manifest and blob of c is readable in
// reg/repo.
func checkStored(t testing.TB, st *store.Store, reg, repo string, c *content) {
	t.Helper()
	ctx := context.Background()
	for _, m := range c.manifests {
		got, err := st.GetManifest(ctx, reg, repo, m.d.String())
		if err != nil {
			t.Fatalf("manifest %s in %s/%s: %v", m.d, reg, repo, err)
		}
		if !bytes.Equal(got.Body, m.body) {
			t.Fatalf("manifest %s differs", m.d)
		}
	}
	for d := range c.blobs {
		if _, err := st.StatBlob(ctx, reg, repo, d); err != nil {
			t.Fatalf("blob %s in %s/%s: %v", d, reg, repo, err)
		}
	}
}

// proxy is a reverse proxy in front of an upstream registry that counts
// requests and can inject failures.
type proxy struct {
	Host   string
	mu     sync.Mutex
	counts map[string]int // "METHOD path"
	// fault, if set, may answer a request itself (returning true).
	fault atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
	srv   *httptest.Server
}

func newProxy(t testing.TB, upstream string) *proxy {
	t.Helper()
	u, _ := url.Parse("http://" + upstream)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p := &proxy{counts: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[r.Method+" "+r.URL.Path]++
		p.mu.Unlock()
		if f := p.fault.Load(); f != nil && (*f)(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	p.Host = strings.TrimPrefix(p.srv.URL, "http://")
	return p
}

func (p *proxy) setFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	if f == nil {
		p.fault.Store(nil)
		return
	}
	p.fault.Store(&f)
}

// throttle returns a fault that answers every request 429 with
// Retry-After: retryAfter.
func throttle(retryAfter string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Retry-After", retryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	}
}

func (p *proxy) count(method, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[method+" "+path]
}

// total counts requests whose "METHOD path" contains s.
func (p *proxy) total(s string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, v := range p.counts {
		if strings.Contains(k, s) {
			n += v
		}
	}
	return n
}

func (p *proxy) reset() {
	p.mu.Lock()
	p.counts = map[string]int{}
	p.mu.Unlock()
}

// parse parses a manifest body (for tests that need its references).
func parse(t testing.TB, m mf) *manifest.Manifest {
	t.Helper()
	p, err := manifest.Parse(m.mt, m.body)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
