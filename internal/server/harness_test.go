package server_test

// The harness of the server-level tests: a real gantry server (server.Run)
// on 127.0.0.1 with a fresh data directory and a captured log, HTTP clients
// that can present any loopback source address, a fingerprint of everything
// the server persists (to prove that a denied request wrote nothing), and
// small OCI helpers.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/config"
	_ "github.com/gantryhq/gantry/internal/db" // registers the sqlite driver
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/testenv"
)

// serverOptions configure startServer.
type serverOptions struct {
	// engine is the DOCKER_HOST-style address of a container engine ("" for
	// none: runs fail at once and container routes are not served).
	engine string
	// adminPassword defaults to a random one.
	adminPassword string
	// gantryBinary is the static gantry binary of the CLI and az images
	// ("" : steps that run them fail).
	gantryBinary string
	// security is the server's security section (context roots,
	// privileged registries, upstream lists).
	security config.Security
	// network is the server's network section (TLS, domain).
	network config.Network
	// storage, if set, edits the storage section (scheduled GC is off
	// otherwise).
	storage func(*config.Storage)
}

// testServer is a running gantry server.
type testServer struct {
	t             testing.TB
	cfg           config.Config
	adminPassword string
	gantryBinary  string
	// log is the server log at debug level, across restarts.
	log *testenv.Buffer
	// stdout is what the server prints for the operator.
	stdout *testenv.Buffer

	addr   string // control API host:port
	cancel context.CancelFunc
	done   chan error
}

// startServer starts a server on a fresh data directory and stops it when
// the test ends.
func startServer(t testing.TB, o serverOptions) *testServer {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Engine.Host = o.engine
	if cfg.Engine.Host == "" {
		// No engine: an address where none answers (not the system's
		// default socket, which may have one).
		cfg.Engine.Host = "unix://" + filepath.Join(t.TempDir(), "no-engine.sock")
	}
	cfg.Storage.GCInterval = 0
	cfg.Triggers.CommitPollInterval = 200 * time.Millisecond
	cfg.Security = o.security
	cfg.Network = o.network
	if cfg.Network.BodyTimeout == 0 {
		cfg.Network.BodyTimeout = config.Default().Network.BodyTimeout
	}
	if o.storage != nil {
		o.storage(&cfg.Storage)
	}
	s := &testServer{t: t, cfg: cfg, adminPassword: o.adminPassword, gantryBinary: o.gantryBinary, log: &testenv.Buffer{}, stdout: &testenv.Buffer{}}
	if s.adminPassword == "" {
		s.adminPassword = "admin-" + testenv.RandomHex(12)
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// startEngineServer starts a server (as startServer) on the engine of
// DOCKER_HOST and returns it with the engine's busybox image.
func startEngineServer(t *testing.T, o serverOptions) (*testServer, string) {
	t.Helper()
	dc := dockertest.Engine(t)
	base := dockertest.BusyboxImage(t, dc, "")
	o.engine = os.Getenv("DOCKER_HOST")
	return startServer(t, o), base
}

func (s *testServer) start() {
	s.t.Helper()
	if s.done != nil {
		s.t.Fatal("server already running")
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(s.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() {
		done <- server.Run(ctx, s.cfg, server.Options{
			AdminPassword: s.adminPassword,
			GantryBinary:  s.gantryBinary,
			Logger:        logger,
			Stdout:        s.stdout,
			Ready:         func(addr string) { ready <- addr },
		})
	}()
	select {
	case s.addr = <-ready:
	case err := <-done:
		cancel()
		s.t.Fatalf("server did not start: %v\nlog:\n%s", err, s.log)
	case <-time.After(30 * time.Second):
		cancel()
		s.t.Fatalf("server did not start in 30s\nlog:\n%s", s.log)
	}
	s.cancel, s.done = cancel, done
}

// stop stops the server and waits for it (idempotent).
func (s *testServer) stop() {
	if s.done == nil {
		return
	}
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("server.Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		s.t.Errorf("server did not stop in 60s")
	}
	s.done = nil
}

// restart stops the server and starts it again on the same data directory.
func (s *testServer) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// url returns the control API URL of path.
func (s *testServer) url(path string) string { return "http://" + s.addr + path }

// client returns an API client with the given options (no credentials by
// default).
func (s *testServer) client(opts ...client.Option) *client.Client {
	s.t.Helper()
	c, err := client.New("http://"+s.addr, opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// admin returns an API client authenticated as the admin.
func (s *testServer) admin() *client.Client {
	return s.client(client.WithBasicAuth("admin", s.adminPassword))
}

// createRegistry creates a registry on a free loopback port and returns its
// login server (host:port).
func (s *testServer) createRegistry(name string, anonymousPull bool) string {
	s.t.Helper()
	r, err := s.admin().CreateRegistry(context.Background(), api.CreateRegistryRequest{Name: name, AnonymousPull: anonymousPull})
	if err != nil {
		s.t.Fatalf("creating registry %s: %v", name, err)
	}
	return r.LoginServer
}

// loginServer returns the host:port of a registry.
func (s *testServer) loginServer(name string) string {
	s.t.Helper()
	r, err := s.admin().GetRegistry(context.Background(), name)
	if err != nil {
		s.t.Fatal(err)
	}
	return r.LoginServer
}

// Source addresses. The brute-force limiter keys failed logins by client
// address and user name; the authorization matrices send each request from
// a loopback address of its own (127.0.0.0/8 is all local on Linux), so
// that the decisions they check are never masked by a lockout caused by the
// matrix's own deliberate failures. The limiter has its own test, from one
// address.

var sourceSeq atomic.Uint32

// freshSource returns a loopback address no other request of this process
// has used.
func freshSource() net.IP {
	n := sourceSeq.Add(1)
	return net.IPv4(127, byte(100+n/62500), byte(n/250%250), byte(n%250+1))
}

// httpFrom returns an HTTP client whose connections come from ip.
func httpFrom(ip net.IP) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
		Timeout:   60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// response is a fully read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	b := r.body
	if len(b) > 400 {
		b = append(b[:400:400], "..."...)
	}
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(b))
}

// do sends req with c and reads the whole response.
func do(t testing.TB, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func newRequest(t testing.TB, method, url string, body []byte) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// The persisted state: every row of every table of the database, and every
// file of the data directory except the database files themselves.

// persisted is a fingerprint of the server's persisted state.
type persisted struct {
	tables map[string]string // table -> hash of its rows
	rows   map[string]int
	files  map[string]string // path -> size and mode
}

// stateReader reads the database of a server through a connection of its
// own.
type stateReader struct {
	dir string
	db  *sql.DB
}

func newStateReader(t testing.TB, dataDir string) *stateReader {
	t.Helper()
	d, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "gantry.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(1)
	t.Cleanup(func() { d.Close() })
	return &stateReader{dir: dataDir, db: d}
}

func (r *stateReader) read(t testing.TB) persisted {
	t.Helper()
	p := persisted{tables: map[string]string{}, rows: map[string]int{}, files: map[string]string{}}
	tx, err := r.db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rows, err := tx.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	for _, table := range tables {
		rs, err := tx.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatalf("reading %s: %v", table, err)
		}
		cols, _ := rs.Columns()
		var lines []string
		for rs.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%q", vals))
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		rs.Close()
		sort.Strings(lines)
		h := sha256.New()
		for _, l := range lines {
			io.WriteString(h, l+"\n")
		}
		p.tables[table] = hex.EncodeToString(h.Sum(nil))
		p.rows[table] = len(lines)
	}
	err = filepath.WalkDir(r.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking (a finished upload)
			}
			return err
		}
		rel, _ := filepath.Rel(r.dir, path)
		if strings.HasPrefix(rel, "gantry.db") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		size := info.Size()
		if d.IsDir() {
			size = 0
		}
		p.files[rel] = fmt.Sprintf("%d %s", size, info.Mode())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// diff describes how q differs from p ("" if it does not).
func (p persisted) diff(q persisted) string {
	var out []string
	for table, h := range q.tables {
		if p.tables[table] != h {
			out = append(out, fmt.Sprintf("table %s changed (%d rows, was %d)", table, q.rows[table], p.rows[table]))
		}
	}
	for table := range p.tables {
		if _, ok := q.tables[table]; !ok {
			out = append(out, "table "+table+" vanished")
		}
	}
	for f, v := range q.files {
		if w, ok := p.files[f]; !ok {
			out = append(out, "file "+f+" appeared")
		} else if v != w {
			out = append(out, fmt.Sprintf("file %s changed (%s, was %s)", f, v, w))
		}
	}
	for f := range p.files {
		if _, ok := q.files[f]; !ok {
			out = append(out, "file "+f+" vanished")
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// OCI content.

const (
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
	mtConfig   = "application/vnd.oci.image.config.v1+json"
	mtLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func blobDescriptor(mediaType string, b []byte) descriptor {
	return descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// imageManifest returns an OCI image manifest of config and layers, made
// unique by note.
func imageManifest(config, layer []byte, note string, subject *descriptor) []byte {
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mtManifest,
		"config":        blobDescriptor(mtConfig, config),
		"layers":        []descriptor{blobDescriptor(mtLayer, layer)},
		"annotations":   map[string]string{"note": note},
	}
	if subject != nil {
		m["subject"] = subject
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// ociClient talks the Distribution API to one registry with fixed Basic
// credentials (the admin, in the fixtures).
type ociClient struct {
	t          testing.TB
	host       string
	user, pass string
	http       *http.Client
}

func newOCIClient(t testing.TB, host, user, pass string) *ociClient {
	return &ociClient{t: t, host: host, user: user, pass: pass, http: httpFrom(net.IPv4(127, 0, 0, 1))}
}

func (c *ociClient) do(method, path string, body []byte, header map[string]string) response {
	c.t.Helper()
	req := newRequest(c.t, method, "http://"+c.host+path, body)
	req.SetBasicAuth(c.user, c.pass)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return do(c.t, c.http, req)
}

// pushBlob uploads b to repo in one request and returns its digest.
func (c *ociClient) pushBlob(repo string, b []byte) digest.Digest {
	c.t.Helper()
	d := digest.FromBytes(b)
	r := c.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), b, map[string]string{"Content-Type": "application/octet-stream"})
	if r.status != http.StatusCreated {
		c.t.Fatalf("pushing blob %s to %s: %s", d, repo, r)
	}
	return d
}

// pushManifest puts manifest m at ref (a tag or its digest) in repo.
func (c *ociClient) pushManifest(repo, ref string, m []byte) digest.Digest {
	c.t.Helper()
	r := c.do("PUT", "/v2/"+repo+"/manifests/"+ref, m, map[string]string{"Content-Type": mtManifest})
	if r.status != http.StatusCreated {
		c.t.Fatalf("pushing manifest %s:%s: %s", repo, ref, r)
	}
	return digest.FromBytes(m)
}

// pushImage pushes a fresh image (config, layer, manifest) to repo:tag and
// returns the manifest digest and the layer digest.
func (c *ociClient) pushImage(repo, tag string) (manifest, layer digest.Digest) {
	c.t.Helper()
	note := testenv.RandomHex(8)
	cfg := []byte(`{"architecture":"amd64","os":"linux","note":"` + note + `"}`)
	lay := []byte("layer " + note)
	c.pushBlob(repo, cfg)
	layer = c.pushBlob(repo, lay)
	return c.pushManifest(repo, tag, imageManifest(cfg, lay, note, nil)), layer
}

// startUpload opens an upload session in repo and returns its path.
func (c *ociClient) startUpload(repo string) string {
	c.t.Helper()
	r := c.do("POST", "/v2/"+repo+"/blobs/uploads/", nil, nil)
	if r.status != http.StatusAccepted {
		c.t.Fatalf("starting an upload in %s: %s", repo, r)
	}
	return r.header.Get("Location")
}

// exists reports whether a manifest or blob path answers 200 to HEAD.
func (c *ociClient) exists(path string) bool {
	c.t.Helper()
	r := c.do("HEAD", path, nil, map[string]string{"Accept": mtManifest})
	switch r.status {
	case http.StatusOK:
		return true
	case http.StatusNotFound:
		return false
	}
	c.t.Fatalf("HEAD %s: %s", path, r)
	return false
}
