package importer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vault"
)

// benchServer is a throw-away gantry (store, importer, one registry served
// on loopback) in its own directory, removed by close.
type benchServer struct {
	dir   string
	st    *store.Store
	im    *Service
	admin auth.Identity
	hosts map[string]string // registry -> login server
	close func()
}

func newBenchServer(b *testing.B, registries ...string) *benchServer {
	b.Helper()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "gantry-bench-*")
	if err != nil {
		b.Fatal(err)
	}
	d, err := db.Open(ctx, filepath.Join(dir, "gantry.db"))
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(ctx, d, dir)
	if err != nil {
		b.Fatal(err)
	}
	au, err := auth.New(d, filepath.Join(dir, "keys"), auth.WithPasswordHashCost(64, 1), auth.WithRegistryLookup(st))
	if err != nil {
		b.Fatal(err)
	}
	setup, err := au.EnsureAdmin(ctx, "admin-password", dir)
	if err != nil {
		b.Fatal(err)
	}
	vlt, err := vault.New(d, filepath.Join(dir, "keys"))
	if err != nil {
		b.Fatal(err)
	}
	im := New(d, st, vlt, au, WithSpoolDir(dir))
	ictx, cancel := context.WithCancel(ctx)
	if err := im.Start(ictx); err != nil {
		b.Fatal(err)
	}
	s := &benchServer{dir: dir, st: st, im: im, hosts: map[string]string{},
		admin: auth.Identity{Principal: setup.Principal, Name: auth.AdminUsername, Kind: auth.KindAdmin}}
	var servers []*httptest.Server
	for _, name := range registries {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.CreateRegistry(ctx, store.Registry{Name: name, Listen: ln.Addr().String()}); err != nil {
			b.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/v2/", registry.New(name, st, registry.WithAuthorizer(auth.AllowAll{}), registry.WithFallback(im), registry.WithPushGuard(im)))
		srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux, ErrorLog: slogDiscard()}}
		srv.Start()
		servers = append(servers, srv)
		s.hosts[name] = ln.Addr().String()
	}
	s.close = func() {
		for _, srv := range servers {
			srv.Close()
		}
		cancel()
		im.Wait()
		d.Close()
		os.RemoveAll(dir)
	}
	return s
}

func slogDiscard() *log.Logger { return slog.NewLogLogger(slog.DiscardHandler, slog.LevelError) }

// writeLayout writes an OCI image layout holding one image of n layers of
// size bytes of random data each (uncompressed tar layers), streamed to
// disk, and returns its total size.
func writeLayout(b *testing.B, dir string, n int, size int64) int64 {
	b.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		b.Fatal(err)
	}
	put := func(write func(w io.Writer) error) ocispec.Descriptor {
		f, err := os.CreateTemp(blobs, "tmp-*")
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		cw := &countWriter{w: io.MultiWriter(f, h)}
		if err := write(cw); err != nil {
			b.Fatal(err)
		}
		f.Close()
		d := digest.NewDigest(digest.SHA256, h)
		if err := os.Rename(f.Name(), filepath.Join(blobs, d.Encoded())); err != nil {
			b.Fatal(err)
		}
		return ocispec.Descriptor{Digest: d, Size: cw.n}
	}
	var total int64
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	rng := rand.NewChaCha8([32]byte{byte(time.Now().UnixNano())})
	for i := range n {
		var diff hash.Hash
		l := put(func(w io.Writer) error {
			diff = sha256.New()
			tw := tar.NewWriter(io.MultiWriter(w, diff))
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("layer-%d.bin", i), Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
				return err
			}
			if _, err := io.CopyN(tw, rng, size); err != nil {
				return err
			}
			return tw.Close()
		})
		l.MediaType = ocispec.MediaTypeImageLayer
		layers = append(layers, l)
		diffIDs = append(diffIDs, l.Digest)
		total += l.Size
	}
	cfgBody, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	cfg := put(func(w io.Writer) error { _, err := w.Write(cfgBody); return err })
	cfg.MediaType = ocispec.MediaTypeImageConfig
	mBody, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "config": cfg, "layers": layers})
	m := put(func(w io.Writer) error { _, err := w.Write(mBody); return err })
	m.MediaType = ocispec.MediaTypeImageManifest
	m.Annotations = map[string]string{ocispec.AnnotationRefName: "1"}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": []ocispec.Descriptor{m}})
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		b.Fatal(err)
	}
	return total + cfg.Size + m.Size
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkImport compares, in one run on one machine, copying a large
// image (GANTRY_BENCH_LAYERS layers of GANTRY_BENCH_LAYER_MIB MiB of random
// data, default 8 x 128 MiB = 1 GiB) from a docker-registry (Distribution
// 2.8, htpasswd) upstream into an empty gantry: with gantry's import, with
// skopeo copy and with crane copy (both pushing into gantry's registry
// API). same-server imports it between two registries of one gantry.
// Each iteration starts from an empty gantry store (deleted afterwards);
// peak disk use is about three times the image size.
//
//	go test ./internal/importer -run '^$' -bench Import -benchtime 3x
func BenchmarkImport(b *testing.B) {
	skopeo := testenv.Tool(b, "skopeo")
	crane := testenv.Tool(b, "crane")
	layers := envInt("GANTRY_BENCH_LAYERS", 8)
	layerMiB := envInt("GANTRY_BENCH_LAYER_MIB", 128)

	up := testenv.StartDistribution(b, true)
	layout, err := os.MkdirTemp("", "gantry-bench-layout-*")
	if err != nil {
		b.Fatal(err)
	}
	size := writeLayout(b, layout, layers, int64(layerMiB)<<20)
	dockerConfig := b.TempDir()
	craneEnv := []string{"DOCKER_CONFIG=" + dockerConfig}
	testenv.Run(b, craneEnv, crane, "auth", "login", up.Host, "-u", up.Username, "-p", up.Password)
	src := up.Host + "/bench/big:1"
	start := time.Now()
	testenv.Run(b, craneEnv, crane, "push", "--insecure", layout, src)
	b.Logf("pushed %d MiB with crane in %s", size>>20, time.Since(start).Round(time.Millisecond))
	os.RemoveAll(layout)
	// Warm up: the upstream's files in the page cache and the push's dirty
	// pages written back, so that the first tool measured is not penalised.
	w := newBenchServer(b, "warmup")
	if _, err := w.im.Import(context.Background(), w.admin, "warmup", ImportRequest{Source: src, Username: up.Username, Password: up.Password}, nil); err != nil {
		b.Fatal(err)
	}
	w.close()
	syscall.Sync()

	// fresh runs op against a new server each iteration, timing op only.
	fresh := func(op func(b *testing.B, s *benchServer)) func(b *testing.B) {
		return func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				b.StopTimer()
				s := newBenchServer(b, "contoso")
				b.StartTimer()
				op(b, s)
				b.StopTimer()
				s.close()
				syscall.Sync()
				b.StartTimer()
			}
		}
	}
	b.Run("gantry-import", fresh(func(b *testing.B, s *benchServer) {
		res, err := s.im.Import(context.Background(), s.admin, "contoso", ImportRequest{Source: src, Username: up.Username, Password: up.Password}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if res.BlobsCopied != layers+1 {
			b.Fatalf("import copied %d blobs, want %d", res.BlobsCopied, layers+1)
		}
	}))
	b.Run("skopeo-copy", fresh(func(b *testing.B, s *benchServer) {
		testenv.Run(b, nil, skopeo, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", up.Username+":"+up.Password,
			"docker://"+src, "docker://"+s.hosts["contoso"]+"/bench/big:1")
	}))
	b.Run("crane-copy", fresh(func(b *testing.B, s *benchServer) {
		testenv.Run(b, craneEnv, crane, "copy", "--insecure", src, s.hosts["contoso"]+"/bench/big:1")
	}))
	b.Run("same-server", func(b *testing.B) {
		b.StopTimer()
		s := newBenchServer(b, "publicregistry", "contoso")
		defer s.close()
		if _, err := s.im.Import(context.Background(), s.admin, "publicregistry", ImportRequest{Source: src, Username: up.Username, Password: up.Password}, nil); err != nil {
			b.Fatal(err)
		}
		local := s.hosts["publicregistry"] + "/bench/big:1"
		i := 0
		b.StartTimer()
		for b.Loop() {
			i++
			res, err := s.im.Import(context.Background(), s.admin, "contoso", ImportRequest{Source: local, Targets: []string{"copy" + strconv.Itoa(i) + "/big:1"}}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if res.BytesCopied != 0 || !res.SameServer {
				b.Fatalf("same-server import copied bytes: %+v", res)
			}
		}
	})
}
