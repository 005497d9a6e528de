package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/store/manifest"
)

// TestBatchedPushesAreCached: manifests and tags pushed concurrently (and
// so committed in shared transactions) are all in the read cache after
// their pushes, so that the first pull of each does not go to SQLite.
// Before, only the first write of each batch was cached: the others failed
// the generation check that the first one's cache write had moved.
func TestBatchedPushesAreCached(t *testing.T) {
	ctx := context.Background()
	d, err := db.Open(ctx, filepath.Join(t.TempDir(), "gantry.db"), db.Durable(true))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := Open(ctx, d, filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRegistry(ctx, Registry{Name: "reg"}); err != nil {
		t.Fatal(err)
	}
	cfg := `{"os":"linux"}`
	cd := digest.FromString(cfg)
	if _, err := s.PutBlob(ctx, "reg", "app", cd, int64(len(cfg)), strings.NewReader(cfg)); err != nil {
		t.Fatal(err)
	}
	const n = 64
	digests := make([]digest.Digest, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[],"annotations":{"i":"%d"}}`,
				manifest.MediaTypeOCIManifest, cd, len(cfg), i)
			m, err := s.PutManifest(ctx, "reg", "app", PutManifestRequest{Reference: fmt.Sprintf("t%d", i), MediaType: manifest.MediaTypeOCIManifest, Body: []byte(body)})
			digests[i] = m.Digest
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	id, err := s.repoID(ctx, "reg", "app")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for i, dg := range digests {
		if got, ok := s.cache.tag(id, fmt.Sprintf("t%d", i)); !ok || got != dg {
			missing = append(missing, fmt.Sprintf("tag t%d", i))
		}
		if _, ok := s.cache.manifest(id, dg); !ok {
			missing = append(missing, "manifest "+dg.String())
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d pushes not in the cache: %v", len(missing), 2*n, missing[:min(len(missing), 5)])
	}
}
