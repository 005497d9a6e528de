package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
)

// TestQuota: a registry's quota refuses a blob (monolithic, chunked or
// mounted) or manifest that would take it beyond the limit, with an error
// that gives the usage and the quota and matches ErrQuotaExceeded and
// errdefs.ErrDenied; nothing of a refused push is left behind; content the
// registry already holds is free; other registries are not limited; raising
// or removing the quota lets pushes through again.
func TestQuota(t *testing.T) {
	f := newFixture(t)
	reg, err := f.st.GetRegistry(ctx(), "reg")
	if err != nil {
		t.Fatal(err)
	}
	setQuota := func(n int64) {
		t.Helper()
		reg.Quota = n
		if _, err := f.st.UpdateRegistry(ctx(), reg); err != nil {
			t.Fatal(err)
		}
	}
	usage := func() int64 {
		t.Helper()
		u, err := f.st.RegistryUsage(ctx(), "reg")
		if err != nil {
			t.Fatal(err)
		}
		return u.Size
	}
	refused := func(what string, err error, adding bool) {
		t.Helper()
		var qe *store.QuotaError
		if !errors.As(err, &qe) || !errors.Is(err, store.ErrQuotaExceeded) || !errors.Is(err, errdefs.ErrDenied) {
			t.Fatalf("%s: %v, want a quota error", what, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "registry reg holds") || !strings.Contains(msg, "quota") || qe.Quota != reg.Quota ||
			(adding && !strings.Contains(msg, "more would exceed it")) {
			t.Fatalf("%s: message %q (%+v)", what, msg, qe)
		}
	}

	setQuota(100)
	a, _ := f.blob("app", strings.Repeat("a", 60))
	if got := usage(); got != 60 {
		t.Fatalf("usage %d, want 60", got)
	}
	// Monolithic: 41 bytes more would make 101.
	big := strings.Repeat("b", 41)
	_, err = f.st.PutBlob(ctx(), "reg", "app", digest.FromString(big), -1, strings.NewReader(big))
	refused("monolithic blob beyond the quota", err, false)
	// The same content again is free; so is a mount within the registry.
	if _, err := f.st.PutBlob(ctx(), "reg", "app", a, 60, strings.NewReader(strings.Repeat("a", 60))); err != nil {
		t.Fatalf("re-pushing held content: %v", err)
	}
	if _, err := f.st.LinkBlob(ctx(), a, store.RepoRef{Registry: "reg", Repository: "app"}, store.RepoRef{Registry: "reg", Repository: "other"}); err != nil {
		t.Fatalf("mounting held content: %v", err)
	}

	// Chunked: the body is cut off where the quota ends and the session is
	// dropped with its bytes.
	id, err := f.st.StartUpload(ctx(), "reg", "app", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AppendUpload(ctx(), "reg", "app", id, 0, strings.NewReader(strings.Repeat("c", 30))); err != nil {
		t.Fatalf("a chunk within the quota: %v", err)
	}
	_, err = f.st.AppendUpload(ctx(), "reg", "app", id, 30, strings.NewReader(strings.Repeat("c", 30)))
	refused("a chunk beyond the quota", err, false)
	if _, err := f.st.UploadOffset(ctx(), "reg", "app", id); !errors.Is(err, store.ErrUploadUnknown) {
		t.Fatalf("the refused upload session is still there: %v", err)
	}
	if left := files(t, filepath.Join(f.root, "uploads")); len(left) != 0 {
		t.Fatalf("upload files left: %v", left)
	}

	// A mount from another registry counts like an upload.
	if _, err := f.st.CreateRegistry(ctx(), store.Registry{Name: "free"}); err != nil {
		t.Fatal(err)
	}
	shared := strings.Repeat("s", 50)
	sd := digest.FromString(shared)
	if _, err := f.st.PutBlob(ctx(), "free", "lib", sd, 50, strings.NewReader(shared)); err != nil {
		t.Fatalf("a registry without a quota: %v", err)
	}
	_, err = f.st.LinkBlob(ctx(), sd, store.RepoRef{Registry: "free", Repository: "lib"}, store.RepoRef{Registry: "reg", Repository: "app"})
	refused("a mount beyond the quota", err, true)

	// A manifest: config (a, 60) + layer (10) + its own bytes.
	l, _ := f.blob("app", strings.Repeat("l", 10))
	body := imageManifest(t, a, 60, map[digest.Digest]int64{l: 10}, nil)
	_, err = f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "v1", MediaType: manifest.MediaTypeOCIManifest, Body: body})
	refused("a manifest beyond the quota", err, true)
	if _, err := f.st.GetManifest(ctx(), "reg", "app", "v1"); !errors.Is(err, store.ErrTagUnknown) && !errors.Is(err, store.ErrManifestUnknown) {
		t.Fatalf("the refused manifest was stored: %v", err)
	}

	// At the quota, a new upload is refused before any byte arrives.
	setQuota(70)
	if _, err := f.st.StartUpload(ctx(), "reg", "app", ""); err == nil {
		t.Fatal("an upload started in a registry at its quota")
	} else {
		refused("an upload at the quota", err, false)
	}

	// Raising the quota lets the same push through; removing it too.
	setQuota(70 + int64(len(body)))
	if _, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "v1", MediaType: manifest.MediaTypeOCIManifest, Body: body}); err != nil {
		t.Fatalf("a manifest within the raised quota: %v", err)
	}
	if got := usage(); got != 70+int64(len(body)) {
		t.Fatalf("usage %d, want %d", got, 70+len(body))
	}
	setQuota(0)
	if _, err := f.st.PutBlob(ctx(), "reg", "app", digest.FromString(big), -1, strings.NewReader(big)); err != nil {
		t.Fatalf("without a quota: %v", err)
	}
	if _, err := f.st.CreateRegistry(ctx(), store.Registry{Name: "neg", Quota: -1}); !errors.Is(err, store.ErrQuotaInvalid) {
		t.Fatalf("negative quota: %v", err)
	}
	if _, err := os.Stat(f.root); err != nil {
		t.Fatal(err)
	}
}
