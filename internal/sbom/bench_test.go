package sbom_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/sbom"
)

// fileOpener opens every layer from one file.
type fileOpener string

func (f fileOpener) OpenLayer(context.Context, sbom.Layer) (io.ReadCloser, error) {
	return os.Open(string(f))
}

// bigLayer writes a tar.gz of about 200 MB of content to path: an apk
// database, 2,000 package.json files, 40 Go binaries, and 1,000 files of
// 100 KiB of incompressible data.
func bigLayer(b *testing.B, path string) (digest.Digest, int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	dg := digest.Canonical.Digester()
	zw := gzip.NewWriter(io.MultiWriter(f, dg.Hash()))
	tw := tar.NewWriter(zw)
	add := func(name string, mode int64, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			b.Fatal(err)
		}
		tw.Write(body)
	}
	var total int64
	add("etc/os-release", 0o644, []byte(alpineRelease))
	add("lib/apk/db/installed", 0o644, []byte(apkInstalled))
	for i := range 2000 {
		add(fmt.Sprintf("app/node_modules/pkg%d/package.json", i), 0o644, fmt.Appendf(nil, `{"name": "pkg%d", "version": "1.0.%d"}`, i, i))
	}
	bin := goBinary(b)
	for i := range 40 {
		add(fmt.Sprintf("usr/local/bin/tool%d", i), 0o755, bin)
		total += int64(len(bin))
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 100<<10)
	for i := range 1000 {
		for j := range data {
			data[j] = byte(rnd.Uint32())
		}
		add(fmt.Sprintf("usr/share/data/blob%d.bin", i), 0o644, data)
		total += int64(len(data))
	}
	tw.Close()
	zw.Close()
	return dg.Digest(), total
}

// BenchmarkLayer200MB extracts one sizeable layer (not cached: a fresh
// database each round) and reports the peak Go heap in use.
func BenchmarkLayer200MB(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "layer.tar.gz")
	d, total := bigLayer(b, path)
	st, _ := os.Stat(path)
	b.Logf("layer: %d MB of file content, %d MB compressed", total>>20, st.Size()>>20)
	l := sbom.Layer{Digest: d, MediaType: gzipTar, Size: st.Size()}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		x := newExtractor(b)
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		})
		b.StartTimer()
		inv, err := x.Inventory(context.Background(), []sbom.Layer{l}, fileOpener(path))
		b.StopTimer()
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(peak-base.HeapInuse)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(len(inv.Packages)), "packages")
		start := time.Now()
		again, err := x.Inventory(context.Background(), []sbom.Layer{l}, fileOpener(path))
		if err != nil || again.LayersCached != 1 {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "cached-ms")
		b.StartTimer()
	}
}
