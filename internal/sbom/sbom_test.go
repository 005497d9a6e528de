package sbom_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/sbom"
	"github.com/gantryhq/gantry/internal/testenv"
)

const gzipTar = "application/vnd.oci.image.layer.v1.tar+gzip"

// file is one tar entry of a test layer.
type file struct {
	name string
	body string
	mode int64
	link string // symlink target
}

func tarGz(t testing.TB, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(f.body)), ModTime: time.Unix(0, 0)}
		if f.mode != 0 {
			h.Mode = f.mode
		}
		if f.link != "" {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, f.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if f.link == "" {
			if _, err := io.WriteString(tw, f.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// blobs is an Opener over layers in memory that counts the opens.
type blobs struct {
	mu    sync.Mutex
	data  map[digest.Digest][]byte
	opens map[digest.Digest]int
}

func newBlobs() *blobs {
	return &blobs{data: map[digest.Digest][]byte{}, opens: map[digest.Digest]int{}}
}

func (b *blobs) add(blob []byte, mediaType string) sbom.Layer {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := digest.FromBytes(blob)
	b.data[d] = blob
	return sbom.Layer{Digest: d, MediaType: mediaType, Size: int64(len(blob))}
}

func (b *blobs) OpenLayer(_ context.Context, l sbom.Layer) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opens[l.Digest]++
	blob, ok := b.data[l.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", l.Digest, errdefs.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(blob)), nil
}

func newExtractor(t testing.TB, opts ...sbom.Option) *sbom.Extractor {
	t.Helper()
	dir := t.TempDir()
	return sbom.New(testenv.DB(t, dir), nil, append([]sbom.Option{sbom.WithTempDir(dir)}, opts...)...)
}

func inventory(t testing.TB, x *sbom.Extractor, b *blobs, layers ...sbom.Layer) *sbom.Inventory {
	t.Helper()
	inv, err := x.Inventory(context.Background(), layers, b)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// layer adds a gzipped tar of the files to b.
func (b *blobs) layer(t testing.TB, files ...file) sbom.Layer {
	t.Helper()
	return b.add(tarGz(t, files...), gzipTar)
}

// scanLayer reads one layer of the files with a new extractor.
func scanLayer(t testing.TB, files ...file) (*sbom.Inventory, sbom.Layer) {
	t.Helper()
	b := newBlobs()
	l := b.layer(t, files...)
	return inventory(t, newExtractor(t), b, l), l
}

// alpine returns the release and package database of an Alpine image,
// then extra.
func alpine(extra ...file) []file {
	return append([]file{
		{name: "etc/os-release", body: alpineRelease},
		{name: "lib/apk/db/installed", body: apkInstalled},
	}, extra...)
}

// npm is the package.json of an npm package in dir/node_modules.
func npm(dir, name, version string) file {
	return file{name: dir + "/node_modules/" + name + "/package.json", body: `{"name": "` + name + `", "version": "` + version + `"}`}
}

// find returns the package named name, failing the test when there is not
// exactly one.
func find(t testing.TB, inv *sbom.Inventory, name string) sbom.Package {
	t.Helper()
	var got []sbom.Package
	for _, p := range inv.Packages {
		if p.Name == name {
			got = append(got, p)
		}
	}
	if len(got) != 1 {
		t.Fatalf("packages named %q: %+v; all: %+v", name, got, inv.Packages)
	}
	return got[0]
}

func has(inv *sbom.Inventory, name string) bool {
	for _, p := range inv.Packages {
		if p.Name == name {
			return true
		}
	}
	return false
}

// The fixtures: the release and package database of an Alpine 3.18 and a
// Debian 12 image.
var (
	//go:embed testdata/alpine-os-release
	alpineRelease string
	//go:embed testdata/apk-installed
	apkInstalled string
	//go:embed testdata/debian-os-release
	debianRelease string
	//go:embed testdata/dpkg-status
	dpkgStatus string
)

func TestAlpine(t *testing.T) {
	t.Parallel()
	inv, l := scanLayer(t, alpine(file{name: "bin/busybox", body: "\x7fELF not really", mode: 0o755})...)
	if inv.OS.ID != "alpine" || inv.OS.VersionID != "3.18.4" || inv.OS.PrettyName != "Alpine Linux v3.18" {
		t.Errorf("OS %+v", inv.OS)
	}
	musl := find(t, inv, "musl")
	want := sbom.Package{Name: "musl", Version: "1.2.4-r2", Type: "apk", Ecosystem: "Alpine:v3.18",
		Path: "/lib/apk/db/installed", Layer: l.Digest}
	musl.PURL = ""
	if musl != want {
		t.Errorf("musl: %+v, want %+v", musl, want)
	}
	crypto := find(t, inv, "libcrypto3")
	if crypto.Version != "3.1.4-r0" || crypto.Source != "openssl" || !strings.HasPrefix(crypto.PURL, "pkg:apk/alpine/libcrypto3@3.1.4-r0") {
		t.Errorf("libcrypto3: %+v", crypto)
	}
	if len(inv.Packages) != 3 || inv.Unscanned() {
		t.Errorf("packages %+v", inv.Packages)
	}
	if inv.LayersRead != 1 || inv.LayersCached != 0 {
		t.Errorf("read %d cached %d", inv.LayersRead, inv.LayersCached)
	}
}

func TestDebian(t *testing.T) {
	t.Parallel()
	// As in debian:12: /etc/os-release links to ../usr/lib/os-release.
	inv, _ := scanLayer(t,
		file{name: "usr/lib/os-release", body: debianRelease},
		file{name: "etc/os-release", link: "../usr/lib/os-release"},
		file{name: "var/lib/dpkg/status", body: dpkgStatus},
	)
	if inv.OS.ID != "debian" || inv.OS.VersionID != "12" || inv.OS.VersionCodename != "bookworm" {
		t.Errorf("OS %+v", inv.OS)
	}
	ssl := find(t, inv, "libssl3")
	if ssl.Ecosystem != "Debian:12" || ssl.Version != "3.0.11-1~deb12u2" || ssl.Type != "deb" || ssl.Source != "openssl" ||
		!strings.HasPrefix(ssl.PURL, "pkg:deb/debian/libssl3@3.0.11-1~deb12u2") {
		t.Errorf("libssl3: %+v", ssl)
	}
	if bf := find(t, inv, "base-files"); bf.Ecosystem != "Debian:12" || bf.Source != "" {
		t.Errorf("base-files: %+v", bf)
	}
	if has(inv, "tzdata") {
		t.Error("a package removed (deinstall, config-files) is listed")
	}
}

// moduleDir returns the directory of a module of the build in the module
// cache.
func moduleDir(t testing.TB, module string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	return strings.TrimSpace(string(out))
}

func TestRPM(t *testing.T) {
	t.Parallel()
	db, err := os.ReadFile(filepath.Join(moduleDir(t, "github.com/google/osv-scalibr"),
		"extractor/filesystem/os/rpm/testdata/rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, release, ecosystem string
	}{
		{"rocky", "NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n", "Rocky Linux"},
		{"alma", "NAME=\"AlmaLinux\"\nID=\"almalinux\"\nVERSION_ID=\"9.3\"\n", "AlmaLinux:9"},
		{"rhel", "NAME=\"Red Hat Enterprise Linux\"\nID=\"rhel\"\nVERSION_ID=\"9.3\"\nCPE_NAME=\"cpe:/o:redhat:enterprise_linux:9::baseos\"\n", "Red Hat:enterprise_linux:9::baseos"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			inv, _ := scanLayer(t,
				file{name: "etc/os-release", body: c.release},
				file{name: "var/lib/rpm/rpmdb.sqlite", body: string(db)},
			)
			alt := find(t, inv, "alternatives")
			if alt.Version != "1.20-2.el9" || alt.Type != "rpm" || alt.Ecosystem != c.ecosystem {
				t.Errorf("alternatives: %+v, want ecosystem %q", alt, c.ecosystem)
			}
			if len(inv.Packages) < 10 {
				t.Errorf("%d packages", len(inv.Packages))
			}
			for _, p := range inv.Packages {
				if p.Ecosystem != c.ecosystem || !strings.HasPrefix(p.PURL, "pkg:rpm/") {
					t.Fatalf("%+v", p)
				}
			}
		})
	}
}

// goBinary builds a small Go program that uses golang.org/x/text (from the
// module cache, no network).
func goBinary(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	textDir := moduleDir(t, "golang.org/x/text")
	version := filepath.Base(textDir)[strings.LastIndex(filepath.Base(textDir), "@")+1:]
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/hello\n\ngo 1.22\n\nrequire golang.org/x/text "+version+"\n")
	write("main.go", `package main

import (
	"fmt"

	"golang.org/x/text/language"
)

func main() { fmt.Println(language.English) }
`)
	cmd := exec.Command("go", "build", "-o", "hello", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOSUMDB=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func jar(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range map[string]string{
		"META-INF/MANIFEST.MF":                          "Manifest-Version: 1.0\r\nCreated-By: test\r\n\r\n",
		"META-INF/maven/org.example/lib/pom.properties": "groupId=org.example\nartifactId=lib\nversion=1.2.3\n",
		"org/example/lib/Lib.class":                     "\xca\xfe\xba\xbe",
		"META-INF/maven/org.example/lib/pom.xml":        "<project><groupId>org.example</groupId><artifactId>lib</artifactId><version>1.2.3</version></project>",
	} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLanguages(t *testing.T) {
	t.Parallel()
	b := newBlobs()
	l := b.layer(t,
		file{name: "usr/local/bin/hello", body: string(goBinary(t)), mode: 0o755},
		file{name: "app/node_modules/lodash/package.json", body: `{"name": "lodash", "version": "4.17.21", "license": "MIT"}`},
		file{name: "usr/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA",
			body: "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nSummary: Python HTTP for Humans.\n"},
		file{name: "opt/app/lib-1.2.3.jar", body: string(jar(t))},
	)
	x := newExtractor(t)
	inv := inventory(t, x, b, l)
	for _, c := range []struct {
		name, version, typ, ecosystem, purl string
	}{
		{"golang.org/x/text", "", "go", "Go", "pkg:golang/golang.org/x/text@"},
		{"stdlib", "", "go", "Go", "pkg:golang/go@"}, // the standard library: OSV's name (scalibr's is go)
		{"lodash", "4.17.21", "npm", "npm", "pkg:npm/lodash@4.17.21"},
		{"requests", "2.31.0", "pypi", "PyPI", "pkg:pypi/requests@2.31.0"},
		{"org.example:lib", "1.2.3", "maven", "Maven", "pkg:maven/org.example/lib@1.2.3"},
	} {
		p := find(t, inv, c.name)
		if (c.version != "" && p.Version != c.version) || p.Type != c.typ || p.Ecosystem != c.ecosystem ||
			!strings.HasPrefix(p.PURL, c.purl) {
			t.Errorf("%s: %+v", c.name, p)
		}
	}
	if p := find(t, inv, "golang.org/x/text"); p.Version == "" || p.Path != "/usr/local/bin/hello" {
		t.Errorf("x/text: %+v", p)
	}
	if p := find(t, inv, "example.com/hello"); p.Type != "go" {
		t.Errorf("main module: %+v", p)
	}
	if inv.OS != (sbom.OS{}) {
		t.Errorf("OS %+v without os-release", inv.OS)
	}

	// The same layer again comes from the cache, with the same packages.
	again := inventory(t, x, b, l)
	if again.LayersCached != 1 || again.LayersRead != 0 || b.opens[l.Digest] != 1 {
		t.Errorf("second scan: read %d, cached %d, opens %d", again.LayersRead, again.LayersCached, b.opens[l.Digest])
	}
	if fmt.Sprint(again.Packages) != fmt.Sprint(inv.Packages) {
		t.Errorf("from the cache:\n%+v\nread:\n%+v", again.Packages, inv.Packages)
	}
}

func TestLayering(t *testing.T) {
	t.Parallel()
	b := newBlobs()
	base := b.layer(t, alpine(
		npm("app", "lodash", "4.17.20"),
		npm("srv", "left-pad", "1.3.0"),
		npm("opt", "debug", "4.3.4"),
	)...)
	onlyMusl := apkInstalled[:strings.Index(apkInstalled, "\n\n")+1]
	top := b.layer(t,
		// The apk database replaced: only musl is left.
		file{name: "lib/apk/db/installed", body: onlyMusl},
		// lodash deleted by a whiteout, srv made opaque, a new package there.
		file{name: "app/node_modules/.wh.lodash"},
		file{name: "srv/.wh..wh..opq"},
		npm("srv", "express", "4.18.2"),
		// debug's package.json replaced by a file no extractor wants.
		file{name: "opt/node_modules/debug", link: "/dev/null"},
	)
	inv := inventory(t, newExtractor(t), b, base, top)
	for _, gone := range []string{"busybox", "libcrypto3", "lodash", "left-pad", "debug"} {
		if has(inv, gone) {
			t.Errorf("%s is listed: %+v", gone, inv.Packages)
		}
	}
	if p := find(t, inv, "musl"); p.Layer != top.Digest || p.Ecosystem != "Alpine:v3.18" {
		t.Errorf("musl: %+v", p)
	}
	if p := find(t, inv, "express"); p.Layer != top.Digest {
		t.Errorf("express: %+v", p)
	}
	if len(inv.Packages) != 2 {
		t.Errorf("packages %+v", inv.Packages)
	}
}

func TestCacheSharedBase(t *testing.T) {
	t.Parallel()
	b := newBlobs()
	base := b.layer(t, alpine()...)
	app1 := b.layer(t, npm("app", "lodash", "4.17.21"))
	app2 := b.layer(t, npm("app", "express", "4.18.2"))
	x := newExtractor(t)
	first := inventory(t, x, b, base, app1)
	if first.LayersRead != 2 || first.LayersCached != 0 {
		t.Errorf("first: read %d, cached %d", first.LayersRead, first.LayersCached)
	}
	second := inventory(t, x, b, base, app2)
	if second.LayersRead != 1 || second.LayersCached != 1 {
		t.Errorf("second: read %d, cached %d", second.LayersRead, second.LayersCached)
	}
	if b.opens[base.Digest] != 1 || b.opens[app2.Digest] != 1 {
		t.Errorf("opens: %v", b.opens)
	}
	if p := find(t, second, "musl"); p.Ecosystem != "Alpine:v3.18" || p.Layer != base.Digest {
		t.Errorf("musl from the cache: %+v", p)
	}
	find(t, second, "express")
	if has(second, "lodash") {
		t.Error("lodash of the other image is listed")
	}
}

// zeros streams a tar.gz holding one file of n zero bytes, so that a test
// can make a zip bomb without holding it.
func zeros(t testing.TB, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: n, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for left := n; left > 0; {
		k := min(left, int64(len(chunk)))
		if _, err := tw.Write(chunk[:k]); err != nil {
			t.Fatal(err)
		}
		left -= k
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	good := tarGz(t, alpine()...)
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)/2] ^= 0xff
	corrupt[len(corrupt)/2+1] ^= 0xff
	var plain bytes.Buffer
	zw := gzip.NewWriter(&plain)
	io.WriteString(zw, strings.Repeat("this is not a tar archive\n", 100))
	zw.Close()

	bomb := zeros(t, 2<<30) // 2 GiB of zeros, about 2 MiB compressed
	for _, c := range []struct {
		name      string
		blob      []byte
		mediaType string
		want      error
		text      string
	}{
		{"not gzip", []byte("plain text, no gzip"), gzipTar, errdefs.ErrInvalid, "not a valid tar archive"},
		{"corrupt gzip", corrupt, gzipTar, errdefs.ErrInvalid, "not a valid tar archive"},
		{"truncated", good[:len(good)/2], gzipTar, errdefs.ErrInvalid, "not a valid tar archive"},
		{"not a tar", plain.Bytes(), gzipTar, errdefs.ErrInvalid, "not a valid tar archive"},
		{"media type", good, "application/vnd.in-toto+json", errdefs.ErrInvalid, "unsupported layer media type"},
		{"zip bomb", bomb, gzipTar, errdefs.ErrTooLarge, "more than 64 MiB uncompressed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := newBlobs()
			l := b.add(c.blob, c.mediaType)
			x := newExtractor(t, sbom.WithLayerLimit(64<<20))
			start := time.Now()
			_, err := x.Inventory(context.Background(), []sbom.Layer{l}, b)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) ||
				!strings.Contains(err.Error(), "layer "+l.Digest.String()) {
				t.Fatalf("error %v, want %v containing %q and the layer", err, c.want, c.text)
			}
			t.Logf("%v (%v)", err, time.Since(start))
			// Nothing was cached: the layer is read again.
			x.Inventory(context.Background(), []sbom.Layer{l}, b)
			if b.opens[l.Digest] != 2 && c.name != "media type" {
				t.Errorf("opened %d times", b.opens[l.Digest])
			}
		})
	}
}

func TestDigestMismatch(t *testing.T) {
	t.Parallel()
	b := newBlobs()
	l := b.layer(t, npm("app", "lodash", "4.17.21"))
	other := tarGz(t, npm("app", "express", "4.18.2"))
	b.data[l.Digest] = other
	_, err := newExtractor(t).Inventory(context.Background(), []sbom.Layer{l}, b)
	if !errors.Is(err, sbom.ErrDigest) || !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("error %v", err)
	}
}

func TestEntryLimit(t *testing.T) {
	t.Parallel()
	var files []file
	for i := range 20 {
		files = append(files, file{name: fmt.Sprintf("f%d", i), body: "x"})
	}
	b := newBlobs()
	l := b.layer(t, files...)
	_, err := newExtractor(t, sbom.WithEntryLimit(10)).Inventory(context.Background(), []sbom.Layer{l}, b)
	if !errors.Is(err, errdefs.ErrTooLarge) || !strings.Contains(err.Error(), "more than 10 entries") {
		t.Fatalf("error %v", err)
	}
}

// endless is an Opener whose layer is an uncompressed tar of one endless
// file of zeros.
type endless struct{}

func (endless) OpenLayer(context.Context, sbom.Layer) (io.ReadCloser, error) {
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: 1 << 40, Typeflag: tar.TypeReg})
	return io.NopCloser(io.MultiReader(&hdr, zeroReader{})), nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestCancel(t *testing.T) {
	t.Parallel()
	x := newExtractor(t, sbom.WithLayerLimit(1<<40))
	l := sbom.Layer{Digest: digest.FromString("endless"), MediaType: "application/vnd.oci.image.layer.v1.tar"}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := x.Inventory(ctx, []sbom.Layer{l}, endless{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), l.Digest.String()) {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled after %v", d)
	}
}

func TestSymlinkLoop(t *testing.T) {
	t.Parallel()
	b := newBlobs()
	l := b.layer(t,
		file{name: "etc/os-release", link: "os-release.d/current"},
		file{name: "etc/os-release.d", link: "/etc/loop"},
		file{name: "etc/loop", link: "/etc/os-release.d"},
		file{name: "usr/lib/os-release", link: "../../etc/os-release"},
		file{name: "lib/apk/db/installed", body: apkInstalled},
	)
	done := make(chan *sbom.Inventory)
	go func() { done <- inventory(t, newExtractor(t), b, l) }()
	select {
	case inv := <-done:
		if !strings.Contains(strings.Join(inv.Notes, "\n"), "/etc/os-release: symlink loop") {
			t.Errorf("notes %q", inv.Notes)
		}
		if inv.OS != (sbom.OS{}) {
			t.Errorf("OS %+v", inv.OS)
		}
		// Without a release, the packages are still listed, as plain Alpine.
		if p := find(t, inv, "musl"); p.Ecosystem != "Alpine" {
			t.Errorf("musl: %+v", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("symlink loop: no answer in 30s")
	}
}

// A file at a path where an earlier entry of the layer had a directory
// (odd, but a tar may hold it) is extracted all the same.
func TestFileOverDirectory(t *testing.T) {
	t.Parallel()
	inv, _ := scanLayer(t,
		file{name: "x/package.json/node_modules/a/package.json", body: `{"name": "a", "version": "1.0.0"}`},
		file{name: "x/package.json", body: `{"name": "b", "version": "2.0.0"}`},
	)
	find(t, inv, "b")
}

func TestUnscanned(t *testing.T) {
	t.Parallel()
	inv, _ := scanLayer(t,
		file{name: "bin/busybox", body: "\x7fELF\x02\x01\x01" + strings.Repeat("\x00", 200), mode: 0o755},
		file{name: "bin/sh", link: "busybox"},
		file{name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\n"},
	)
	if !inv.Unscanned() || len(inv.Packages) != 0 {
		t.Errorf("unscanned %v, packages %+v", inv.Unscanned(), inv.Packages)
	}
}

func TestFileLimit(t *testing.T) {
	t.Parallel()
	b := newBlobs()
	l := b.layer(t,
		file{name: "usr/bin/big", body: strings.Repeat("x", 4096), mode: 0o755},
		npm("app", "lodash", "4.17.21"),
	)
	inv := inventory(t, newExtractor(t, sbom.WithFileLimit(1024)), b, l)
	want := "layer " + l.Digest.String() + ": /usr/bin/big skipped: 4.0 KiB is over the 1.0 KiB file limit"
	if !strings.Contains(strings.Join(inv.Notes, "\n"), want) {
		t.Errorf("notes %q, want %q", inv.Notes, want)
	}
	find(t, inv, "lodash")
}

func TestDocuments(t *testing.T) {
	t.Parallel()
	inv, _ := scanLayer(t, alpine(npm("app", "lodash", "4.17.21"))...)
	const ref = "registry.example/team/app:1.0"

	doc, err := inv.SPDX(ref)
	if err != nil {
		t.Fatal(err)
	}
	var spdx struct {
		SPDXVersion string `json:"spdxVersion"`
		Name        string `json:"name"`
		Packages    []struct {
			Name         string `json:"name"`
			Version      string `json:"versionInfo"`
			ExternalRefs []struct {
				Type    string `json:"referenceType"`
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(doc, &spdx); err != nil {
		t.Fatalf("SPDX: %v\n%s", err, doc)
	}
	if spdx.SPDXVersion != "SPDX-2.3" || spdx.Name != ref {
		t.Errorf("SPDX version %q, name %q", spdx.SPDXVersion, spdx.Name)
	}
	purls := map[string]bool{}
	for _, p := range spdx.Packages {
		for _, r := range p.ExternalRefs {
			if r.Type == "purl" {
				purls[r.Locator] = true
			}
		}
	}
	for _, p := range inv.Packages {
		if !purls[p.PURL] {
			t.Errorf("SPDX: no package with purl %s; %v", p.PURL, purls)
		}
	}

	doc, err = inv.CycloneDX(ref)
	if err != nil {
		t.Fatal(err)
	}
	var cdx struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Metadata    struct {
			Component struct {
				Name string `json:"name"`
				Type string `json:"type"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name string `json:"name"`
			PURL string `json:"purl"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &cdx); err != nil {
		t.Fatalf("CycloneDX: %v\n%s", err, doc)
	}
	if cdx.BOMFormat != "CycloneDX" || cdx.SpecVersion != "1.6" || cdx.Metadata.Component.Name != ref {
		t.Errorf("CycloneDX %q %q, subject %+v", cdx.BOMFormat, cdx.SpecVersion, cdx.Metadata.Component)
	}
	purls = map[string]bool{}
	for _, c := range cdx.Components {
		purls[c.PURL] = true
	}
	for _, p := range inv.Packages {
		if !purls[p.PURL] {
			t.Errorf("CycloneDX: no component with purl %s", p.PURL)
		}
	}
}
