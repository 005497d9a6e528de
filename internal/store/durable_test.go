package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/store"
)

// TestDamagedBlobFileReplaced checks that a blob file of the wrong size
// (a torn write before a crash) is not trusted by its name: pushing the
// blob again replaces it.
func TestDamagedBlobFileReplaced(t *testing.T) {
	t.Parallel()
	for _, durable := range []bool{false, true} {
		f := newFixture(t, store.WithSync(durable))
		ctx := context.Background()
		content := strings.Repeat("blob content ", 1000)
		d, size := f.blob("app", content)
		path := filepath.Join(f.root, "blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded())
		if err := os.Truncate(path, size/2); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.PutBlob(ctx, "reg", "app", d, size, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("durable=%v: blob file after a second push: %d bytes, %v; want the content", durable, len(b), err)
		}
	}
}

// TestFsck damages a layer on disk and checks that Fsck finds it by its
// digest, quarantines the file, names the manifest, and that pushing the
// blob again heals it.
func TestFsck(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	cfg, cfgN := f.blob("app", `{"os":"linux"}`)
	content := "layer bytes of the image"
	layer, layerN := f.blob("app", content)
	m, err := f.st.PutManifest(ctx, "reg", "app", store.PutManifestRequest{Reference: "v1",
		Body: imageManifest(t, cfg, cfgN, map[digest.Digest]int64{layer: layerN}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := f.st.Fsck(ctx, "reg")
	if err != nil || len(rep.Damaged) != 0 || rep.Blobs != 3 {
		t.Fatalf("fsck of a sound store: %+v, %v; want 3 checked (2 blobs, 1 manifest), none damaged", rep, err)
	}
	// Same size, other bytes: a bit flip that os.Stat cannot see.
	path := filepath.Join(f.root, "blobs", layer.Algorithm().String(), layer.Encoded()[:2], layer.Encoded())
	if err := os.WriteFile(path, []byte(strings.ToUpper(content)), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err = f.st.Fsck(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 1 {
		t.Fatalf("fsck: %+v, want one damaged blob", rep)
	}
	dmg := rep.Damaged[0]
	if dmg.Digest != layer || !strings.HasPrefix(dmg.Problem, "content has digest sha256:") ||
		len(dmg.Manifests) != 1 || dmg.Manifests[0] != "reg/app@"+m.Digest.String() || dmg.Quarantined == "" {
		t.Fatalf("damage: %+v", dmg)
	}
	if _, err := os.Stat(dmg.Quarantined); err != nil {
		t.Fatalf("quarantined file: %v", err)
	}
	if _, _, err := f.st.OpenBlob(ctx, "reg", "app", layer); err == nil {
		t.Fatal("a quarantined blob is still served")
	}
	f.blob("app", content)
	if rep, err := f.st.Fsck(ctx, "reg"); err != nil || len(rep.Damaged) != 0 {
		t.Fatalf("fsck after pushing the blob again: %+v, %v", rep, err)
	}
}
