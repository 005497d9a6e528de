package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
	"github.com/gantryhq/gantry/internal/testenv"
)

func TestGC(t *testing.T) {
	t.Parallel()
	c := testenv.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f := newFixture(t, store.WithClock(c.Now), store.WithGCGrace(time.Hour), store.WithUploadTTL(2*time.Hour))
	cfg, cfgN := f.blob("app", `{}`)
	kept, keptN := f.blob("app", "referenced layer")
	orphan, _ := f.blob("app", "uploaded but never referenced")
	doomed, doomedN := f.blob("app", "referenced by a manifest that is deleted")
	if _, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "v1",
		Body: imageManifest(t, cfg, cfgN, map[digest.Digest]int64{kept: keptN}, nil)}); err != nil {
		t.Fatal(err)
	}
	m2, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{
		Body: imageManifest(t, cfg, cfgN, map[digest.Digest]int64{doomed: doomedN}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.DeleteManifest(ctx(), "reg", "app", m2.Digest, store.Actor{}); err != nil {
		t.Fatal(err)
	}
	staleUpload, err := f.st.StartUpload(ctx(), "reg", "app", "")
	if err != nil {
		t.Fatal(err)
	}
	// Within the grace window nothing goes.
	res, err := f.st.GC(ctx(), store.GCOptions{})
	if err != nil || len(res.Blobs) != 0 || res.Uploads != 0 {
		t.Fatalf("GC within grace: %+v %v", res, err)
	}
	checked, _ := f.blob("app", "old, unreferenced, but checked by a push")
	c.Advance(3 * time.Hour)
	recent, _ := f.blob("app", "uploaded just now")
	if _, err := f.st.StatBlob(ctx(), "reg", "app", checked); err != nil {
		t.Fatal(err)
	}
	res, err = f.st.GC(ctx(), store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gone := map[digest.Digest]bool{}
	for _, b := range res.Blobs {
		gone[b.Digest] = true
	}
	if len(res.Blobs) != 2 || !gone[orphan] || !gone[doomed] || res.Uploads != 1 {
		t.Fatalf("GC removed %+v", res)
	}
	for _, d := range []digest.Digest{cfg, kept, recent, checked} {
		if _, err := f.st.StatBlob(ctx(), "reg", "app", d); err != nil {
			t.Errorf("blob %s lost: %v", d, err)
		}
		if _, err := os.Stat(blobFile(f, d)); err != nil {
			t.Errorf("blob file %s lost: %v", d, err)
		}
	}
	for d := range gone {
		if _, err := f.st.StatBlob(ctx(), "reg", "app", d); !errors.Is(err, store.ErrBlobUnknown) {
			t.Errorf("collected blob %s still linked: %v", d, err)
		}
		if _, err := os.Stat(blobFile(f, d)); !os.IsNotExist(err) {
			t.Errorf("collected blob file %s remains: %v", d, err)
		}
	}
	if _, err := f.st.UploadOffset(ctx(), "reg", "app", staleUpload); !errors.Is(err, store.ErrUploadUnknown) {
		t.Errorf("stale upload survives: %v", err)
	}
	// A blob file without a row (a crash between publish and commit) goes too.
	stray := digest.FromString("stray")
	if err := os.MkdirAll(filepath.Dir(blobFile(f, stray)), 0o755); err != nil { // as publishing made it
		t.Fatal(err)
	}
	if err := os.WriteFile(blobFile(f, stray), []byte("stray"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := c.Now().Add(-2 * time.Hour)
	os.Chtimes(blobFile(f, stray), old, old)
	if res, err := f.st.GC(ctx(), store.GCOptions{}); err != nil || len(res.Blobs) != 1 || res.Blobs[0].Digest != stray {
		t.Fatalf("stray file: %+v %v", res, err)
	}
}

func blobFile(f *fixture, d digest.Digest) string {
	return filepath.Join(f.root, "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
}

// TestGCConcurrentWithPushes runs GC in a loop, with no grace window at all,
// while pushers upload blobs (some shared between images, some re-uploaded
// after being collected) and push manifests, and others delete manifests to
// create garbage. A push may be refused when GC took its blobs before the
// manifest arrived (the client retries), but no blob of a stored manifest may
// ever be lost.
func TestGCConcurrentWithPushes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.WithGCGrace(0))
	st := f.st
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gcs, collected atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			res, err := st.GC(ctx, store.GCOptions{})
			if err != nil && ctx.Err() == nil {
				t.Errorf("GC: %v", err)
				return
			}
			gcs.Add(1)
			collected.Add(int64(len(res.Blobs)))
		}
	}()
	const pushers, images = 4, 40
	var pushed, refused atomic.Int64
	var pwg sync.WaitGroup
	for p := 0; p < pushers; p++ {
		pwg.Add(1)
		go func(p int) {
			defer pwg.Done()
			repo := fmt.Sprintf("app%d", p%2) // two pushers per repository
			for i := 0; i < images; i++ {
				shared := fmt.Sprintf("shared layer %d", i%5)
				own := fmt.Sprintf("layer of pusher %d image %d", p, i)
				cfg := fmt.Sprintf(`{"pusher":%d,"image":%d}`, p, i)
				for attempt := 0; ; attempt++ {
					if attempt > 50 {
						t.Errorf("push %d/%d never succeeded", p, i)
						return
					}
					descs := map[digest.Digest]int64{}
					var cd digest.Digest
					var cn int64
					ok := true
					for j, content := range []string{cfg, shared, own} {
						d := digest.FromString(content)
						n, err := st.PutBlob(ctx, "reg", repo, d, int64(len(content)), strings.NewReader(content))
						if err != nil {
							t.Errorf("PutBlob: %v", err)
							return
						}
						if j == 0 {
							cd, cn = d, n
						} else {
							descs[d] = n
						}
					}
					m, err := st.PutManifest(ctx, "reg", repo, store.PutManifestRequest{
						Reference: fmt.Sprintf("p%d-i%d", p, i), Body: imageManifest(t, cd, cn, descs, nil)})
					if errors.Is(err, store.ErrManifestBlobUnknown) {
						refused.Add(1)
						ok = false
					} else if err != nil {
						t.Errorf("PutManifest: %v", err)
						return
					}
					if ok {
						pushed.Add(1)
						// Every other image is deleted again: garbage for GC.
						if i%2 == 1 {
							if err := st.DeleteManifest(ctx, "reg", repo, m.Digest, store.Actor{}); err != nil {
								t.Errorf("DeleteManifest: %v", err)
							}
						}
						break
					}
				}
			}
		}(p)
	}
	pwg.Wait()
	cancel()
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d GC passes collected %d blobs; %d pushes stored, %d refused and retried", gcs.Load(), collected.Load(), pushed.Load(), refused.Load())
	if gcs.Load() < 2 || collected.Load() == 0 {
		t.Fatalf("GC did not run concurrently: %d passes, %d collected", gcs.Load(), collected.Load())
	}
	// Every stored manifest is complete: each blob it references is linked,
	// its file exists and its content matches its digest.
	for _, repo := range []string{"app0", "app1"} {
		list, err := st.ListManifests(context.Background(), "reg", repo, store.Page{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != pushers/2*images/2 {
			t.Errorf("%s: %d manifests, want %d", repo, len(list), pushers/2*images/2)
		}
		for _, m := range list {
			full, err := st.GetManifest(context.Background(), "reg", repo, m.Digest.String())
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range referencedBlobs(t, full.Body) {
				file, size, err := st.OpenBlob(context.Background(), "reg", repo, d)
				if err != nil {
					t.Errorf("%s@%s: blob %s lost: %v", repo, m.Digest, d, err)
					continue
				}
				h := sha256.New()
				n, _ := io.Copy(h, file)
				file.Close()
				if n != size || digest.NewDigest(digest.SHA256, h) != d {
					t.Errorf("%s@%s: blob %s corrupt", repo, m.Digest, d)
				}
			}
		}
	}
	// With the pushes over, a last pass leaves exactly the referenced blobs.
	if _, err := st.GC(context.Background(), store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, repo := range []string{"app0", "app1"} {
		list, _ := st.ListManifests(context.Background(), "reg", repo, store.Page{})
		for _, m := range list {
			full, _ := st.GetManifest(context.Background(), "reg", repo, m.Digest.String())
			for _, d := range referencedBlobs(t, full.Body) {
				want[d.Encoded()] = true
			}
		}
	}
	got := files(t, filepath.Join(f.root, "blobs"))
	if len(got) != len(want) {
		t.Errorf("%d blob files remain, %d referenced", len(got), len(want))
	}
}

func referencedBlobs(t testing.TB, body []byte) []digest.Digest {
	t.Helper()
	m, err := manifest.Parse("", body)
	if err != nil {
		t.Fatal(err)
	}
	var out []digest.Digest
	for _, d := range m.Blobs() {
		out = append(out, d.Digest)
	}
	return out
}

// TestGCOptions covers a pass scoped to one registry, a dry run and a grace
// window given for one pass.
func TestGCOptions(t *testing.T) {
	t.Parallel()
	c := testenv.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f := newFixture(t, store.WithClock(c.Now), store.WithGCGrace(time.Hour), store.WithUploadTTL(2*time.Hour))
	if _, err := f.st.CreateRegistry(ctx(), store.Registry{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	put := func(reg, content string) digest.Digest {
		t.Helper()
		d := digest.FromString(content)
		if _, err := f.st.PutBlob(ctx(), reg, "app", d, int64(len(content)), strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	mine := put("reg", "only in reg")
	theirs := put("other", "only in other")
	shared := put("reg", "in both")
	put("other", "in both")
	if _, err := f.st.StartUpload(ctx(), "other", "app", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.StartUpload(ctx(), "reg", "app", ""); err != nil {
		t.Fatal(err)
	}
	c.Advance(3 * time.Hour)
	young := put("reg", "uploaded just now")
	c.Advance(time.Second)
	digests := func(res store.GCResult) []string {
		var out []string
		for _, b := range res.Blobs {
			out = append(out, b.Digest.String())
		}
		slices.Sort(out)
		return out
	}
	want := func(ds ...digest.Digest) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.String())
		}
		slices.Sort(out)
		return out
	}

	if _, err := f.st.GC(ctx(), store.GCOptions{Registry: "nope"}); !errors.Is(err, store.ErrRegistryUnknown) {
		t.Fatalf("GC of an unknown registry: %v", err)
	}
	// A dry run reports and removes nothing.
	zero := time.Duration(0)
	res, err := f.st.GC(ctx(), store.GCOptions{DryRun: true, Grace: &zero})
	if err != nil || !slices.Equal(digests(res), want(mine, theirs, shared, young)) || res.Uploads != 2 ||
		res.Bytes != int64(len("only in reg")+len("only in other")+len("in both")+len("uploaded just now")) {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	for _, d := range []digest.Digest{mine, theirs, shared, young} {
		if _, err := os.Stat(blobFile(f, d)); err != nil {
			t.Errorf("dry run removed %s: %v", d, err)
		}
	}
	// A pass over reg takes what only reg links, past the grace window, and
	// reg's expired uploads.
	res, err = f.st.GC(ctx(), store.GCOptions{Registry: "reg"})
	if err != nil || !slices.Equal(digests(res), want(mine)) || res.Uploads != 1 {
		t.Fatalf("GC of reg: %+v %v", res, err)
	}
	if _, err := os.Stat(blobFile(f, mine)); !os.IsNotExist(err) {
		t.Errorf("collected blob file remains: %v", err)
	}
	// Grace 0 takes the young blob too; a full pass takes the rest.
	res, err = f.st.GC(ctx(), store.GCOptions{Registry: "reg", Grace: &zero})
	if err != nil || !slices.Equal(digests(res), want(young)) {
		t.Fatalf("GC of reg with grace 0: %+v %v", res, err)
	}
	res, err = f.st.GC(ctx(), store.GCOptions{})
	if err != nil || !slices.Equal(digests(res), want(theirs, shared)) || res.Uploads != 1 || res.Duration <= 0 {
		t.Fatalf("full GC: %+v %v", res, err)
	}
}
