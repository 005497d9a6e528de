package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantryhq/gantry/api"
)

// scanBenchConfig is gantry-bench scan's flags.
type scanBenchConfig struct {
	bin, osvScanner, vulndb, dir string
	rounds                       int
}

// runScanBench is gantry-bench scan: it builds one image (an Alpine-style
// apk database, the gantry binary and the osv-scanner binary as Go
// binaries, npm and Python packages), and scans it with a real gantry
// server (pushed to one of its registries) and with the osv-scanner
// command line (as a docker archive, offline database) in the same run,
// both against the Go vulnerability database. Each round scans a fresh
// copy of the image (same content, new layer digests), so every gantry
// scan reads every layer; then it scans an image that shares the base
// layers with one already scanned (layer cache).
func runScanBench(ctx context.Context, args []string, out io.Writer) error {
	var cfg scanBenchConfig
	fs := flag.NewFlagSet("gantry-bench scan", flag.ContinueOnError)
	fs.StringVar(&cfg.bin, "gantry-bin", "", "the gantry binary to run as the server")
	fs.StringVar(&cfg.osvScanner, "osv-scanner", "", "the osv-scanner binary (v2)")
	fs.StringVar(&cfg.vulndb, "vulndb", "", "directory of OSV files (golang.org/x/vulndb's data/osv)")
	fs.StringVar(&cfg.dir, "dir", "", "work directory")
	fs.IntVar(&cfg.rounds, "rounds", 3, "scans of each tool")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.bin == "" || cfg.osvScanner == "" || cfg.vulndb == "" || cfg.dir == "" {
		return fmt.Errorf("--gantry-bin, --osv-scanner, --vulndb and --dir are required")
	}
	zipPath := filepath.Join(cfg.dir, "Go-all.zip")
	if err := zipDir(cfg.vulndb, zipPath); err != nil {
		return err
	}
	// osv-scanner's offline database layout (both spellings of its
	// versions).
	dbDir := filepath.Join(cfg.dir, "osvdb")
	for _, sub := range []string{"osv-scanner", "osv-scalibr"} {
		if err := os.MkdirAll(filepath.Join(dbDir, sub, "Go"), 0o755); err != nil {
			return err
		}
		if err := copyFile(zipPath, filepath.Join(dbDir, sub, "Go", "all.zip")); err != nil {
			return err
		}
	}

	srv, err := newSoakServer(soakConfig{bin: cfg.bin, dir: cfg.dir, gcInterval: time.Hour, gcGrace: time.Hour,
		uploadTTL: time.Hour, bodyTimeout: time.Minute})
	if err != nil {
		return err
	}
	if err := srv.start(ctx); err != nil {
		return err
	}
	defer srv.stop()
	base, err := srv.createRegistry(ctx, "bench")
	if err != nil {
		return err
	}
	host := strings.TrimPrefix(base, "http://")
	zf, err := os.Open(zipPath)
	if err != nil {
		return err
	}
	fi, _ := zf.Stat()
	t0 := time.Now()
	imp, err := srv.client.ImportVulnDB(ctx, zf, fi.Size(), "golang.org/x/vulndb")
	zf.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "gantry vulndb import: %d advisories in %s\n", imp.Added, time.Since(t0).Round(time.Millisecond))

	bins := map[string]string{"usr/local/bin/gantry": cfg.bin, "usr/local/bin/osv-scanner": cfg.osvScanner}
	var gantryTimes, osvTimes []time.Duration
	var gantryFindings, osvFindings map[string]bool
	var packages int
	var shared []v1.Layer
	for round := range cfg.rounds {
		img, layers, err := benchImage(bins)
		if err != nil {
			return err
		}
		shared = layers
		tag := fmt.Sprintf("r%d", round)
		ref, err := name.ParseReference(host+"/app:"+tag, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "admin", Password: srv.password}), remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("pushing the image: %w", err)
		}
		archive := filepath.Join(cfg.dir, "image-"+tag+".tar")
		if err := tarball.WriteToFile(archive, ref, img); err != nil {
			return err
		}

		t := time.Now()
		rep, err := srv.client.Scan(ctx, api.ScanRequest{Registry: "bench", Repository: "app", Reference: tag})
		if err != nil {
			return fmt.Errorf("gantry scan: %w", err)
		}
		gantryTimes = append(gantryTimes, time.Since(t))
		packages = rep.Packages
		gantryFindings = map[string]bool{}
		for _, v := range rep.Vulnerabilities {
			gantryFindings[v.ID+" "+v.Package.Name+"@"+strings.TrimPrefix(v.Package.Version, "v")] = true
		}
		if rep.LayersCached != 0 {
			return fmt.Errorf("round %d: %d layers came from the cache; want a cold scan", round, rep.LayersCached)
		}

		t = time.Now()
		found, err := osvScan(ctx, cfg.osvScanner, archive, dbDir)
		if err != nil {
			return err
		}
		osvTimes = append(osvTimes, time.Since(t))
		osvFindings = found
		os.Remove(archive)
	}

	// An application image on the last round's layers: only its own
	// layer is read.
	app, err := mutate.AppendLayers(empty.Image, append(slices.Clone(shared), mustLayer(map[string][]byte{"app/server.js": []byte("// app\n")}))...)
	if err != nil {
		return err
	}
	ref, _ := name.ParseReference(host+"/app:derived", name.Insecure)
	if err := remote.Write(ref, app, remote.WithAuth(&authn.Basic{Username: "admin", Password: srv.password}), remote.WithContext(ctx)); err != nil {
		return err
	}
	t := time.Now()
	rep, err := srv.client.Scan(ctx, api.ScanRequest{Registry: "bench", Repository: "app", Reference: "derived"})
	if err != nil {
		return err
	}
	cached := time.Since(t)

	fmt.Fprintf(out, "image: %d packages; distinct (advisory, package, version) findings: gantry %d, osv-scanner %d\n", packages, len(gantryFindings), len(osvFindings))
	for _, f := range slices.Sorted(maps.Keys(gantryFindings)) {
		if !osvFindings[f] {
			fmt.Fprintf(out, "  only gantry: %s\n", f)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(osvFindings)) {
		if !gantryFindings[f] {
			fmt.Fprintf(out, "  only osv-scanner: %s\n", f)
		}
	}
	fmt.Fprintf(out, "first scan, median of %d: gantry %s, osv-scanner %s (gantry/osv-scanner %.2f)\n", cfg.rounds,
		median(gantryTimes).Round(time.Millisecond), median(osvTimes).Round(time.Millisecond),
		median(gantryTimes).Seconds()/median(osvTimes).Seconds())
	fmt.Fprintf(out, "  gantry %v\n  osv-scanner %v\n", rounded(gantryTimes), rounded(osvTimes))
	fmt.Fprintf(out, "image on an already-scanned base: gantry %s (%d layers read, %d from the cache)\n",
		cached.Round(time.Millisecond), rep.LayersRead, rep.LayersCached)
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounded(ds []time.Duration) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Round(time.Millisecond).String())
	}
	return out
}

// osvScan runs osv-scanner on a docker archive with the offline database
// and returns its findings, "ID name@version".
func osvScan(ctx context.Context, bin, archive, dbDir string) (map[string]bool, error) {
	cmd := exec.CommandContext(ctx, bin, "scan", "image", "--archive", archive, "--offline-vulnerabilities", "--format", "json")
	cmd.Env = append(os.Environ(), "OSV_SCANNER_LOCAL_DB_CACHE_DIRECTORY="+dbDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	// Exit code 1: vulnerabilities found.
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("osv-scanner: %w\n%s", err, lastLines(stderr.String(), 10))
	}
	var res struct {
		Results []struct {
			Packages []struct {
				Package struct {
					Name, Version string
				} `json:"package"`
				Vulnerabilities []struct {
					ID string `json:"id"`
				} `json:"vulnerabilities"`
			} `json:"packages"`
		} `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("osv-scanner output: %w", err)
	}
	found := map[string]bool{}
	for _, r := range res.Results {
		for _, p := range r.Packages {
			for _, v := range p.Vulnerabilities {
				found[v.ID+" "+p.Package.Name+"@"+strings.TrimPrefix(p.Package.Version, "v")] = true
			}
		}
	}
	return found, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// benchImage builds the benchmark image: a base layer (os-release and an
// apk database), a layer of Go binaries, a layer of npm and Python
// packages. Each layer holds a random marker, so its digest is new.
func benchImage(bins map[string]string) (v1.Image, []v1.Layer, error) {
	var apk strings.Builder
	for i := range 60 {
		fmt.Fprintf(&apk, "P:pkg%d\nV:1.%d.0-r%d\nA:x86_64\nT:package %d\no:pkg%d\n\n", i, i, i%7, i, i)
	}
	fmt.Fprintf(&apk, "P:zlib\nV:1.2.12-r0\nA:x86_64\nT:zlib\no:zlib\n\n")
	baseFiles := map[string][]byte{
		"etc/os-release":       []byte("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME=\"Alpine Linux v3.18\"\n"),
		"lib/apk/db/installed": []byte(apk.String()),
	}
	binFiles := map[string][]byte{}
	for path, src := range bins {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, nil, err
		}
		binFiles[path] = b
	}
	langFiles := map[string][]byte{}
	for i := range 200 {
		langFiles[fmt.Sprintf("app/node_modules/npm-pkg-%d/package.json", i)] = fmt.Appendf(nil, `{"name": "npm-pkg-%d", "version": "1.%d.0"}`, i, i)
	}
	for i := range 50 {
		langFiles[fmt.Sprintf("usr/lib/python3.11/site-packages/py_pkg_%d-2.%d.0.dist-info/METADATA", i, i)] =
			fmt.Appendf(nil, "Metadata-Version: 2.1\nName: py-pkg-%d\nVersion: 2.%d.0\n", i, i)
	}
	var layers []v1.Layer
	for _, files := range []map[string][]byte{baseFiles, binFiles, langFiles} {
		var marker [8]byte
		rand.Read(marker[:])
		files["etc/.bench-"+hex.EncodeToString(marker[:])] = marker[:]
		layers = append(layers, mustLayer(files))
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	return img, layers, err
}

// mustLayer is a gzip-compressed layer of the files.
func mustLayer(files map[string][]byte) v1.Layer {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, p := range slices.Sorted(maps.Keys(files)) {
		_ = tw.WriteHeader(&tar.Header{Name: p, Mode: 0o755, Size: int64(len(files[p])), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		_, _ = tw.Write(files[p])
	}
	_ = tw.Close()
	data := b.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		panic(err)
	}
	return l
}

// zipDir writes the *.json files of dir into a zip.
func zipDir(dir, dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		w, err := zw.Create(filepath.Base(p))
		if err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return zw.Close()
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
