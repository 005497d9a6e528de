package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/testenv"
)

// diskBlobs returns the blob files under dataDir and their total size.
func diskBlobs(t *testing.T, dataDir string) (map[digest.Digest]int64, int64) {
	t.Helper()
	files := map[digest.Digest]int64{}
	var total int64
	err := filepath.WalkDir(filepath.Join(dataDir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			alg := filepath.Base(filepath.Dir(filepath.Dir(p)))
			files[digest.NewDigestFromEncoded(digest.Algorithm(alg), d.Name())] = info.Size()
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, total
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestScheduledGC: garbage (blobs never referenced, blobs of a deleted
// manifest, an abandoned upload session, a spool file left by a crash)
// used to stay on disk forever, since nothing ran GC. The scheduler runs it
// every storage.gcInterval: the bytes on disk go back to the live data, the
// expired session and its file go, and each pass is logged with what it
// freed.
func TestScheduledGC(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{storage: func(c *config.Storage) {
		c.GCInterval = 100 * time.Millisecond
		c.GCGrace = time.Second // pushes below finish their manifests well within it
		c.UploadTTL = time.Second
	}})
	oc := newOCIClient(t, s.createRegistry("gcreg", false), "admin", s.adminPassword)
	live := map[digest.Digest]bool{}
	var liveBytes int64
	for i := range 3 {
		note := testenv.RandomHex(8)
		cfg := []byte(`{"architecture":"amd64","os":"linux","note":"` + note + `"}`)
		lay := bytes.Repeat([]byte("live "+note), 1000)
		live[oc.pushBlob("app", cfg)] = true
		live[oc.pushBlob("app", lay)] = true
		liveBytes += int64(len(cfg) + len(lay))
		oc.pushManifest("app", fmt.Sprintf("v%d", i), imageManifest(cfg, lay, note, nil))
	}
	var garbage []digest.Digest
	for range 3 {
		garbage = append(garbage, oc.pushBlob("app", bytes.Repeat([]byte("orphan "+testenv.RandomHex(8)), 10000)))
	}
	doomed, doomedLayer := oc.pushImage("app", "doomed")
	garbage = append(garbage, doomedLayer)
	if r := oc.do("DELETE", "/v2/app/manifests/"+doomed.String(), nil, nil); r.status != http.StatusAccepted {
		t.Fatalf("deleting the manifest: %s", r)
	}
	upload := oc.startUpload("app")
	if r := oc.do("PATCH", upload, []byte("half a layer"), map[string]string{"Content-Type": "application/octet-stream"}); r.status != http.StatusAccepted {
		t.Fatalf("PATCH: %s", r)
	}
	spool := filepath.Join(s.cfg.Data, "spool", ".gantry-spool-123456")
	if err := os.WriteFile(spool, []byte("left by a crash"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	_ = os.Chtimes(spool, old, old)

	testenv.WaitFor(t, 20*time.Second, "the garbage to be collected", func() bool {
		files, total := diskBlobs(t, s.cfg.Data)
		for _, d := range garbage {
			if _, ok := files[d]; ok {
				return false
			}
		}
		return total == liveBytes && len(dirEntries(t, filepath.Join(s.cfg.Data, "uploads"))) == 0 &&
			len(dirEntries(t, filepath.Join(s.cfg.Data, "spool"))) == 0
	})
	files, _ := diskBlobs(t, s.cfg.Data)
	for d := range live {
		if _, ok := files[d]; !ok {
			t.Errorf("live blob %s collected", d)
		}
		if !oc.exists("/v2/app/blobs/" + d.String()) {
			t.Errorf("live blob %s not served", d)
		}
	}
	for _, d := range garbage {
		if oc.exists("/v2/app/blobs/" + d.String()) {
			t.Errorf("collected blob %s still served", d)
		}
	}
	if r := oc.do("GET", upload, nil, nil); r.status != http.StatusNotFound {
		t.Errorf("expired upload: %s", r)
	}
	testenv.WaitFor(t, 5*time.Second, "the GC log line", func() bool {
		return strings.Contains(s.log.String(), `msg="garbage collected"`)
	})
	var freed bool
	for _, line := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(line, `msg="garbage collected"`) && strings.Contains(line, "level=INFO") &&
			!strings.Contains(line, "bytes=0 ") && strings.Contains(line, "duration=") {
			freed = true
		}
	}
	if !freed {
		t.Errorf("no Info line of a pass that freed bytes:\n%s", s.log)
	}
	fams := scrapeMetrics(t, s)
	runs, freedBytes := fams["gantry_gc_runs_total"], fams["gantry_gc_freed_bytes_total"]
	if runs == nil || freedBytes == nil || runs.Metric[0].GetCounter().GetValue() < 1 || freedBytes.Metric[0].GetCounter().GetValue() <= 0 {
		t.Errorf("GC metrics: runs %v, freed bytes %v", runs, freedBytes)
	}
	if _, err := s.admin().RunGC(context.Background(), api.GCRequest{Grace: "soon"}); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "grace") {
		t.Errorf("grace soon: %v", err)
	}
	if _, err := s.admin().RunGC(context.Background(), api.GCRequest{Registry: "nosuch"}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown registry: %v", err)
	}
}

// TestGCDuringPushes runs scheduled passes with no grace window at all
// while clients push images concurrently (a push whose blobs were collected
// before its manifest arrived is refused and retried, as clients do) and
// manual passes through the API; then every stored manifest's blobs are
// served with the right content.
func TestGCDuringPushes(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{storage: func(c *config.Storage) {
		c.GCInterval = 5 * time.Millisecond
		c.GCGrace = 0
		// What is tested is GC's safety; fsyncs would only slow the
		// pushes down against passes every 5 ms.
		c.Durability = "fast"
	}})
	host := s.createRegistry("busy", false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // manual passes alongside the scheduled ones
		defer wg.Done()
		zero := "0s"
		for ctx.Err() == nil {
			if _, err := s.admin().RunGC(ctx, api.GCRequest{Grace: zero}); err != nil && ctx.Err() == nil {
				t.Errorf("RunGC: %v", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	const pushers, images = 4, 15
	type pushed struct{ repo, tag string }
	var mu sync.Mutex
	var stored []pushed
	var refused int
	var pwg sync.WaitGroup
	for p := range pushers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			oc := newOCIClient(t, host, "admin", s.adminPassword)
			repo := fmt.Sprintf("app%d", p%2)
			for i := range images {
				cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","pusher":%d,"image":%d}`, p, i))
				lay := bytes.Repeat([]byte(fmt.Sprintf("shared layer %d ", i%3)), 500)
				tag := fmt.Sprintf("p%d-i%d", p, i)
				for attempt := 0; ; attempt++ {
					if attempt > 1000 { // a livelock, not bad luck under load
						t.Errorf("push %s never succeeded", tag)
						return
					}
					oc.pushBlob(repo, cfg)
					oc.pushBlob(repo, lay)
					r := oc.do("PUT", "/v2/"+repo+"/manifests/"+tag, imageManifest(cfg, lay, tag, nil), map[string]string{"Content-Type": mtManifest})
					if r.status == http.StatusCreated {
						mu.Lock()
						stored = append(stored, pushed{repo, tag})
						mu.Unlock()
						break
					}
					if r.status != http.StatusBadRequest || !strings.Contains(r.String(), "BLOB_UNKNOWN") {
						t.Errorf("pushing %s: %s", tag, r)
						return
					}
					mu.Lock()
					refused++
					mu.Unlock()
				}
			}
		}()
	}
	pwg.Wait()
	cancel()
	wg.Wait()
	t.Logf("%d images stored, %d pushes refused and retried", len(stored), refused)
	if len(stored) != pushers*images {
		t.Fatalf("%d images stored, want %d", len(stored), pushers*images)
	}
	oc := newOCIClient(t, host, "admin", s.adminPassword)
	for _, p := range stored {
		r := oc.do("GET", "/v2/"+p.repo+"/manifests/"+p.tag, nil, map[string]string{"Accept": mtManifest})
		if r.status != http.StatusOK {
			t.Fatalf("GET %s:%s: %s", p.repo, p.tag, r)
		}
		var m struct {
			Config descriptor   `json:"config"`
			Layers []descriptor `json:"layers"`
		}
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatal(err)
		}
		for _, d := range append(m.Layers, m.Config) {
			b := oc.do("GET", "/v2/"+p.repo+"/blobs/"+d.Digest.String(), nil, nil)
			if b.status != http.StatusOK || digest.FromBytes(b.body) != d.Digest {
				t.Errorf("%s:%s: blob %s lost: %s", p.repo, p.tag, d.Digest, b)
			}
		}
	}
}
