package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
)

// fixture is a store over a fresh database and data directory, with a
// registry named "reg".
type fixture struct {
	t    testing.TB
	db   *db.DB
	st   *store.Store
	root string
	dbp  string
	opts []store.Option
}

func newFixture(t testing.TB, opts ...store.Option) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, root: filepath.Join(dir, "data"), dbp: filepath.Join(dir, "gantry.db"), opts: opts}
	f.open()
	if _, err := f.st.CreateRegistry(context.Background(), store.Registry{Name: "reg"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// open (re)opens the database and the store, as a server restart does.
func (f *fixture) open() {
	f.t.Helper()
	if f.db != nil {
		f.db.Close()
	}
	d, err := db.Open(context.Background(), f.dbp)
	if err != nil {
		f.t.Fatal(err)
	}
	f.db = d
	f.t.Cleanup(func() { d.Close() })
	st, err := store.Open(context.Background(), d, f.root, f.opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.st = st
}

func (f *fixture) blob(repo string, content string) (digest.Digest, int64) {
	f.t.Helper()
	d := digest.FromString(content)
	n, err := f.st.PutBlob(context.Background(), "reg", repo, d, int64(len(content)), strings.NewReader(content))
	if err != nil {
		f.t.Fatalf("PutBlob: %v", err)
	}
	return d, n
}

// files lists the regular files under dir, relative to it.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// imageManifest builds an OCI image manifest over a config and layers.
func imageManifest(t testing.TB, config digest.Digest, configSize int64, layers map[digest.Digest]int64, extra map[string]any) []byte {
	t.Helper()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     manifest.MediaTypeOCIManifest,
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": configSize},
	}
	var ls []any
	for d, n := range layers {
		ls = append(ls, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n})
	}
	if ls == nil {
		ls = []any{}
	}
	m["layers"] = ls
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctx() context.Context { return context.Background() }

func TestRegistries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	st := f.st
	if _, err := st.CreateRegistry(ctx(), store.Registry{Name: "reg"}); !errors.Is(err, store.ErrRegistryExists) || !errors.Is(err, db.ErrConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	for _, bad := range []string{"", "UPPER", "a/b", "-x", "../x", strings.Repeat("a", 65)} {
		if _, err := st.CreateRegistry(ctx(), store.Registry{Name: bad}); !errors.Is(err, store.ErrNameInvalid) {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	if _, err := st.CreateRegistry(ctx(), store.Registry{Name: "one", Listen: "127.0.0.1:5001"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRegistry(ctx(), store.Registry{Name: "two", Listen: "127.0.0.1:5001"}); !errors.Is(err, store.ErrListenInUse) {
		t.Fatalf("listen conflict: %v", err)
	}
	if _, err := st.GetRegistry(ctx(), "nope"); !errors.Is(err, store.ErrRegistryUnknown) || !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if on, _ := st.AnonymousPull(ctx(), "one"); on {
		t.Fatal("anonymous pull on by default")
	}
	r, err := st.UpdateRegistry(ctx(), store.Registry{Name: "one", Listen: "127.0.0.1:5002", AnonymousPull: true})
	if err != nil || r.Listen != "127.0.0.1:5002" || !r.AnonymousPull {
		t.Fatalf("update: %+v %v", r, err)
	}
	if on, _ := st.AnonymousPull(ctx(), "one"); !on {
		t.Fatal("AnonymousPull cache not invalidated by update")
	}
	regs, err := st.ListRegistries(ctx())
	if err != nil || len(regs) != 2 || regs[0].Name != "one" || regs[1].Name != "reg" {
		t.Fatalf("list: %+v %v", regs, err)
	}
	// Deleting a registry removes its repositories and content.
	f.blob("app", "layer")
	if err := st.DeleteRegistry(ctx(), "reg"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ListRepositories(ctx(), "reg", store.Page{}); !errors.Is(err, store.ErrRegistryUnknown) {
		t.Fatalf("after delete: %v", err)
	}
	if err := st.DeleteRegistry(ctx(), "reg"); !errors.Is(err, store.ErrRegistryUnknown) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestPutBlob(t *testing.T) {
	t.Parallel()
	content := "hello blob"
	good := digest.FromString(content)
	good512 := digest.SHA512.FromString(content)
	tests := []struct {
		name     string
		registry string
		repo     string
		digest   digest.Digest
		size     int64
		want     error
	}{
		{"sha256", "reg", "app", good, int64(len(content)), nil},
		{"sha512", "reg", "app", good512, -1, nil},
		{"unknown size", "reg", "app", good, -1, nil},
		{"digest mismatch", "reg", "app", digest.FromString("other"), -1, store.ErrDigestInvalid},
		{"wrong size", "reg", "app", good, 3, store.ErrSizeInvalid},
		{"malformed digest", "reg", "app", "sha256:nothex", -1, store.ErrDigestInvalid},
		{"unsupported algorithm", "reg", "app", digest.SHA384.FromString(content), -1, store.ErrDigestInvalid},
		{"unknown registry", "nope", "app", good, -1, store.ErrRegistryUnknown},
		{"invalid repository", "reg", "../etc", good, -1, store.ErrNameInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			n, err := f.st.PutBlob(ctx(), tt.registry, tt.repo, tt.digest, tt.size, strings.NewReader(content))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				// Nothing stored: no blob file, no upload file, no repository.
				if got := files(t, f.root); len(got) != 0 {
					t.Errorf("files left behind: %v", got)
				}
				if repos, _ := f.st.ListRepositories(ctx(), "reg", store.Page{}); len(repos) != 0 {
					t.Errorf("repositories created: %+v", repos)
				}
				return
			}
			if n != int64(len(content)) {
				t.Errorf("n = %d", n)
			}
			file, size, err := f.st.OpenBlob(ctx(), "reg", "app", tt.digest)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			b, _ := io.ReadAll(file)
			if string(b) != content || size != int64(len(content)) {
				t.Errorf("read %q (%d)", b, size)
			}
			if _, err := f.st.StatBlob(ctx(), "reg", "other", tt.digest); !errors.Is(err, store.ErrBlobUnknown) {
				t.Errorf("blob readable from another repository: %v", err)
			}
		})
	}
}

func TestBlobsAreStoredOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.st.CreateRegistry(ctx(), store.Registry{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	d, _ := f.blob("a", "shared")
	if _, err := f.st.PutBlob(ctx(), "other", "b", d, -1, strings.NewReader("shared")); err != nil {
		t.Fatal(err)
	}
	if got := files(t, filepath.Join(f.root, "blobs")); len(got) != 1 {
		t.Fatalf("blob files: %v", got)
	}
	// Link across registries without moving bytes.
	if _, err := f.st.LinkBlob(ctx(), d, store.RepoRef{Registry: "other", Repository: "b"}, store.RepoRef{Registry: "reg", Repository: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.StatBlob(ctx(), "reg", "c", d); err != nil {
		t.Fatal(err)
	}
	// Any repository of the source registry.
	if _, err := f.st.LinkBlob(ctx(), d, store.RepoRef{Registry: "reg"}, store.RepoRef{Registry: "reg", Repository: "e"}); err != nil {
		t.Fatal(err)
	}
	missing := digest.FromString("missing")
	if _, err := f.st.LinkBlob(ctx(), missing, store.RepoRef{Registry: "reg", Repository: "a"}, store.RepoRef{Registry: "reg", Repository: "f"}); !errors.Is(err, store.ErrBlobUnknown) {
		t.Fatalf("missing source: %v", err)
	}
	if err := f.st.DeleteBlob(ctx(), "reg", "a", d); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.StatBlob(ctx(), "reg", "a", d); !errors.Is(err, store.ErrBlobUnknown) {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := f.st.StatBlob(ctx(), "reg", "c", d); err != nil {
		t.Fatalf("other link lost: %v", err)
	}
	if err := f.st.DeleteBlob(ctx(), "reg", "a", d); !errors.Is(err, store.ErrBlobUnknown) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestChunkedUpload(t *testing.T) {
	t.Parallel()
	content := strings.Repeat("0123456789", 1000)
	d := digest.FromString(content)
	f := newFixture(t)
	id, err := f.st.StartUpload(ctx(), "reg", "app", "")
	if err != nil {
		t.Fatal(err)
	}
	off, err := f.st.AppendUpload(ctx(), "reg", "app", id, 0, strings.NewReader(content[:3000]))
	if err != nil || off != 3000 {
		t.Fatalf("first chunk: %d %v", off, err)
	}
	// Out of order: refused, nothing appended.
	if _, err := f.st.AppendUpload(ctx(), "reg", "app", id, 5000, strings.NewReader(content[5000:6000])); !errors.Is(err, store.ErrRangeInvalid) {
		t.Fatalf("out of order: %v", err)
	}
	if _, err := f.st.AppendUpload(ctx(), "reg", "app", id, 0, strings.NewReader(content[:10])); !errors.Is(err, store.ErrRangeInvalid) {
		t.Fatalf("retry of a written chunk: %v", err)
	}
	// Another repository cannot see the session.
	if _, err := f.st.UploadOffset(ctx(), "reg", "other", id); !errors.Is(err, store.ErrUploadUnknown) {
		t.Fatalf("foreign repo: %v", err)
	}
	// Restart: the hash state comes back from the database.
	f.open()
	if off, err := f.st.UploadOffset(ctx(), "reg", "app", id); err != nil || off != 3000 {
		t.Fatalf("after restart: %d %v", off, err)
	}
	// Streamed chunk (no start).
	if off, err := f.st.AppendUpload(ctx(), "reg", "app", id, -1, strings.NewReader(content[3000:7000])); err != nil || off != 7000 {
		t.Fatalf("streamed chunk: %d %v", off, err)
	}
	n, err := f.st.FinishUpload(ctx(), "reg", "app", id, 7000, strings.NewReader(content[7000:]), d)
	if err != nil || n != int64(len(content)) {
		t.Fatalf("finish: %d %v", n, err)
	}
	if _, err := f.st.StatBlob(ctx(), "reg", "app", d); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.UploadOffset(ctx(), "reg", "app", id); !errors.Is(err, store.ErrUploadUnknown) {
		t.Fatalf("session survives: %v", err)
	}
	if got := files(t, filepath.Join(f.root, "uploads")); len(got) != 0 {
		t.Fatalf("upload files left: %v", got)
	}
}

func TestUploadFinishVariants(t *testing.T) {
	t.Parallel()
	content := "some content to upload"
	tests := []struct {
		name   string
		digest digest.Digest
		want   error
	}{
		{"sha256", digest.FromString(content), nil},
		{"sha512 after sha256 hashing", digest.SHA512.FromString(content), nil},
		{"mismatch", digest.FromString("else"), store.ErrDigestInvalid},
		{"malformed", "sha256:zz", store.ErrDigestInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			id, err := f.st.StartUpload(ctx(), "reg", "app", "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.st.AppendUpload(ctx(), "reg", "app", id, 0, strings.NewReader(content)); err != nil {
				t.Fatal(err)
			}
			_, err = f.st.FinishUpload(ctx(), "reg", "app", id, -1, nil, tt.digest)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				if got := files(t, filepath.Join(f.root, "blobs")); len(got) != 0 {
					t.Errorf("blob stored: %v", got)
				}
				return
			}
			if _, err := f.st.StatBlob(ctx(), "reg", "app", tt.digest); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCancelAndOrphanUploads(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id, err := f.st.StartUpload(ctx(), "reg", "app", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AppendUpload(ctx(), "reg", "app", id, 0, strings.NewReader("partial")); err != nil {
		t.Fatal(err)
	}
	if err := f.st.CancelUpload(ctx(), "reg", "app", id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.UploadOffset(ctx(), "reg", "app", id); !errors.Is(err, store.ErrUploadUnknown) {
		t.Fatalf("after cancel: %v", err)
	}
	// A file no session owns (a crash during a one-shot upload) goes at Open.
	orphan := filepath.Join(f.root, "uploads", "3f1b7c2e-0000-4000-8000-000000000000")
	if err := os.WriteFile(orphan, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	kept, err := f.st.StartUpload(ctx(), "reg", "app", "")
	if err != nil {
		t.Fatal(err)
	}
	f.open()
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphan upload file kept: %v", err)
	}
	if _, err := f.st.UploadOffset(ctx(), "reg", "app", kept); err != nil {
		t.Fatalf("live session lost at restart: %v", err)
	}
	for _, bad := range []string{"../gantry.db", "not-a-uuid", ""} {
		if _, err := f.st.UploadOffset(ctx(), "reg", "app", bad); !errors.Is(err, store.ErrUploadUnknown) {
			t.Errorf("id %q: %v", bad, err)
		}
	}
}

func TestUploadResumeWithoutHashState(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id, err := f.st.StartUpload(ctx(), "reg", "app", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AppendUpload(ctx(), "reg", "app", id, 0, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	// Lose the saved hash state; the store must rehash the file.
	if _, err := f.db.W.Exec(`UPDATE uploads SET hash_state = NULL`); err != nil {
		t.Fatal(err)
	}
	f.open()
	if _, err := f.st.FinishUpload(ctx(), "reg", "app", id, 3, strings.NewReader("def"), digest.FromString("abcdef")); err != nil {
		t.Fatal(err)
	}
}

func TestManifests(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg, cfgN := f.blob("app", `{"os":"linux"}`)
	layer, layerN := f.blob("app", "layer bytes")
	body := imageManifest(t, cfg, cfgN, map[digest.Digest]int64{layer: layerN}, nil)
	by := store.Actor{Principal: "p1", RunID: "run1"}
	m, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "v1", MediaType: manifest.MediaTypeOCIManifest, Body: body, Tags: []string{"latest"}, By: by})
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest != digest.FromBytes(body) || m.MediaType != manifest.MediaTypeOCIManifest {
		t.Fatalf("put: %+v", m)
	}
	for _, ref := range []string{"v1", "latest", m.Digest.String()} {
		got, err := f.st.GetManifest(ctx(), "reg", "app", ref)
		if err != nil || !bytes.Equal(got.Body, body) || got.Digest != m.Digest {
			t.Fatalf("get %s: %v", ref, err)
		}
	}
	list, err := f.st.ListManifests(ctx(), "reg", "app", store.Page{})
	if err != nil || len(list) != 1 || strings.Join(list[0].Tags, ",") != "latest,v1" {
		t.Fatalf("list: %+v %v", list, err)
	}
	tags, err := f.st.ListTags(ctx(), "reg", "app", store.Page{Last: "latest", N: 5})
	if err != nil || len(tags) != 1 || tags[0].Name != "v1" || tags[0].Digest != m.Digest {
		t.Fatalf("tags after latest: %+v %v", tags, err)
	}
	repos, err := f.st.ListRepositories(ctx(), "reg", store.Page{})
	if err != nil || len(repos) != 1 || repos[0].ManifestCount != 1 || repos[0].TagCount != 2 || repos[0].UpdatedAt.IsZero() {
		t.Fatalf("repositories: %+v %v", repos, err)
	}
	// Moving a tag records history with who pushed it.
	body2 := imageManifest(t, cfg, cfgN, nil, map[string]any{"annotations": map[string]string{"v": "2"}})
	m2, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "v1", Body: body2, By: store.Actor{Principal: "p2"}})
	if err != nil {
		t.Fatal(err)
	}
	hist, err := f.st.TagHistory(ctx(), "reg", "app", "v1")
	if err != nil || len(hist) != 2 {
		t.Fatalf("history: %+v %v", hist, err)
	}
	if hist[0].Old != "" || hist[0].New != m.Digest || hist[0].PushedBy != "p1" || hist[0].RunID != "run1" ||
		hist[1].Old != m.Digest || hist[1].New != m2.Digest || hist[1].PushedBy != "p2" {
		t.Fatalf("history: %+v", hist)
	}
	if d, err := f.st.ResolveTag(ctx(), "reg", "app", "v1"); err != nil || d != m2.Digest {
		t.Fatalf("resolve after move: %s %v", d, err)
	}
	// Delete the first manifest: its remaining tag goes, with history.
	if err := f.st.DeleteManifest(ctx(), "reg", "app", m.Digest, store.Actor{Principal: "p3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.GetManifest(ctx(), "reg", "app", m.Digest.String()); !errors.Is(err, store.ErrManifestUnknown) {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := f.st.GetManifest(ctx(), "reg", "app", "latest"); !errors.Is(err, store.ErrTagUnknown) {
		t.Fatalf("tag of deleted manifest: %v", err)
	}
	if hist, _ := f.st.TagHistory(ctx(), "reg", "app", "latest"); len(hist) != 2 || hist[1].New != "" || hist[1].PushedBy != "p3" {
		t.Fatalf("latest history: %+v", hist)
	}
	if err := f.st.Untag(ctx(), "reg", "app", "v1", store.Actor{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.ResolveTag(ctx(), "reg", "app", "v1"); !errors.Is(err, store.ErrTagUnknown) {
		t.Fatalf("after untag: %v", err)
	}
	if err := f.st.TagManifest(ctx(), "reg", "app", "restored", m2.Digest, store.Actor{}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.TagManifest(ctx(), "reg", "app", "x", m.Digest, store.Actor{}); !errors.Is(err, store.ErrManifestUnknown) {
		t.Fatalf("tag of deleted manifest: %v", err)
	}
	if err := f.st.DeleteRepository(ctx(), "reg", "app", store.Actor{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.GetManifest(ctx(), "reg", "app", "restored"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("after repository delete: %v", err)
	}
}

func TestPutManifestRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg, cfgN := f.blob("app", `{}`)
	layer, layerN := f.blob("app", "layer")
	other, otherN := f.blob("elsewhere", "only in another repository")
	missing := digest.FromString("never pushed")
	good := imageManifest(t, cfg, cfgN, map[digest.Digest]int64{layer: layerN}, nil)
	child, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Body: good})
	if err != nil {
		t.Fatal(err)
	}
	index := func(d digest.Digest, n int64) []byte {
		b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": manifest.MediaTypeOCIIndex,
			"manifests": []any{map[string]any{"mediaType": manifest.MediaTypeOCIManifest, "digest": d, "size": n}}})
		return b
	}
	tests := []struct {
		name string
		req  store.PutManifestRequest
		want error
	}{
		{"missing layer", store.PutManifestRequest{Reference: "t", Body: imageManifest(t, cfg, cfgN, map[digest.Digest]int64{missing: 5}, nil)}, store.ErrManifestBlobUnknown},
		{"missing config", store.PutManifestRequest{Reference: "t", Body: imageManifest(t, missing, 2, nil, nil)}, store.ErrManifestBlobUnknown},
		{"layer of another repository", store.PutManifestRequest{Reference: "t", Body: imageManifest(t, cfg, cfgN, map[digest.Digest]int64{other: otherN}, nil)}, store.ErrManifestBlobUnknown},
		{"wrong layer size", store.PutManifestRequest{Reference: "t", Body: imageManifest(t, cfg, cfgN, map[digest.Digest]int64{layer: layerN + 1}, nil)}, store.ErrManifestInvalid},
		{"missing child", store.PutManifestRequest{Reference: "t", Body: index(missing, 10)}, store.ErrManifestBlobUnknown},
		{"malformed JSON", store.PutManifestRequest{Reference: "t", Body: []byte(`{"schemaVersion":2,`)}, store.ErrManifestInvalid},
		{"not an object", store.PutManifestRequest{Reference: "t", Body: []byte(`[1]`)}, store.ErrManifestInvalid},
		{"schema 1", store.PutManifestRequest{Reference: "t", MediaType: "application/vnd.docker.distribution.manifest.v1+prettyjws", Body: []byte(`{"schemaVersion":1}`)}, store.ErrManifestInvalid},
		{"content type mismatch", store.PutManifestRequest{Reference: "t", MediaType: manifest.MediaTypeOCIIndex, Body: good}, store.ErrManifestInvalid},
		{"digest mismatch", store.PutManifestRequest{Reference: digest.FromString("x").String(), Body: good}, store.ErrDigestInvalid},
		{"malformed digest reference", store.PutManifestRequest{Reference: "sha256:baddigeststring", Body: good}, store.ErrDigestInvalid},
		{"invalid tag", store.PutManifestRequest{Reference: "-bad", Body: good}, store.ErrNameInvalid},
		{"invalid tag parameter", store.PutManifestRequest{Reference: "ok", Tags: []string{"a/b"}, Body: good}, store.ErrNameInvalid},
		{"too large", store.PutManifestRequest{Reference: "t", Body: bytes.Repeat([]byte(" "), store.DefaultMaxManifestSize+1)}, store.ErrManifestTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.st.PutManifest(ctx(), "reg", "app", tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			// Nothing stored: still only the child manifest, no tags.
			list, _ := f.st.ListManifests(ctx(), "reg", "app", store.Page{})
			if len(list) != 1 || list[0].Digest != child.Digest {
				t.Fatalf("manifests after refusal: %+v", list)
			}
			if tags, _ := f.st.ListTags(ctx(), "reg", "app", store.Page{}); len(tags) != 0 {
				t.Fatalf("tags after refusal: %+v", tags)
			}
		})
	}
	// Accepted although absent: non-distributable layers and the subject.
	foreign := map[string]any{"layers": []any{
		map[string]any{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": missing, "size": 100},
		map[string]any{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": digest.FromString("f2"), "size": 100, "urls": []string{"https://example.com/f2"}},
	}, "subject": map[string]any{"mediaType": manifest.MediaTypeOCIManifest, "digest": digest.FromString("no subject yet"), "size": 12}}
	if _, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "nd", Body: imageManifest(t, cfg, cfgN, nil, foreign)}); err != nil {
		t.Fatalf("non-distributable and missing subject: %v", err)
	}
	if _, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "idx", Body: index(child.Digest, child.Size)}); err != nil {
		t.Fatalf("index: %v", err)
	}
}

func TestReferrers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg, cfgN := f.blob("app", `{}`)
	subject, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "v1", Body: imageManifest(t, cfg, cfgN, nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	subj := map[string]any{"mediaType": manifest.MediaTypeOCIManifest, "digest": subject.Digest, "size": subject.Size}
	sig, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Body: imageManifest(t, cfg, cfgN, nil,
		map[string]any{"subject": subj, "artifactType": "application/vnd.example.sig", "annotations": map[string]string{"k": "v"}})})
	if err != nil {
		t.Fatal(err)
	}
	if sig.Subject != subject.Digest {
		t.Fatalf("subject = %s", sig.Subject)
	}
	sbom, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Body: imageManifest(t, cfg, cfgN, nil,
		map[string]any{"subject": subj, "artifactType": "application/vnd.example.sbom"})})
	if err != nil {
		t.Fatal(err)
	}
	all, err := f.st.Referrers(ctx(), "reg", "app", subject.Digest, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("referrers: %+v %v", all, err)
	}
	only, err := f.st.Referrers(ctx(), "reg", "app", subject.Digest, "application/vnd.example.sbom")
	if err != nil || len(only) != 1 || only[0].Digest != sbom.Digest || only[0].ArtifactType != "application/vnd.example.sbom" {
		t.Fatalf("filtered: %+v %v", only, err)
	}
	for _, d := range all {
		if d.Digest == sig.Digest && d.Annotations["k"] != "v" {
			t.Fatalf("annotations lost: %+v", d)
		}
	}
	if none, err := f.st.Referrers(ctx(), "reg", "nope", subject.Digest, ""); err != nil || len(none) != 0 {
		t.Fatalf("unknown repository: %+v %v", none, err)
	}
}

func TestTagEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var mu sync.Mutex
	var got []store.TagEvent
	unsubscribe := f.st.Subscribe(func(ev store.TagEvent) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	})
	f.st.Subscribe(func(store.TagEvent) { panic("a broken subscriber must not break pushes") })
	cfg, cfgN := f.blob("app", `{}`)
	b1 := imageManifest(t, cfg, cfgN, nil, nil)
	b2 := imageManifest(t, cfg, cfgN, nil, map[string]any{"annotations": map[string]string{"x": "y"}})
	m1, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "v1", Body: b1, By: store.Actor{Principal: "p", RunID: "r1"}})
	if err != nil {
		t.Fatal(err)
	}
	// Same digest again: no event.
	if _, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "v1", Body: b1}); err != nil {
		t.Fatal(err)
	}
	m2, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "v1", Body: b2})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.TagManifest(ctx(), "reg", "app", "stable", m1.Digest, store.Actor{Principal: "promoter"}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Untag(ctx(), "reg", "app", "stable", store.Actor{}); err != nil {
		t.Fatal(err)
	}
	unsubscribe()
	if err := f.st.TagManifest(ctx(), "reg", "app", "after", m1.Digest, store.Actor{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("events: %+v", got)
	}
	want := []store.TagEvent{
		{Registry: "reg", Repository: "app", Tag: "v1", Old: "", New: m1.Digest, PushedBy: "p", RunID: "r1"},
		{Registry: "reg", Repository: "app", Tag: "v1", Old: m1.Digest, New: m2.Digest},
		{Registry: "reg", Repository: "app", Tag: "stable", New: m1.Digest, PushedBy: "promoter"},
	}
	for i, w := range want {
		g := got[i]
		g.Time = time.Time{}
		if g != w {
			t.Errorf("event %d = %+v, want %+v", i, g, w)
		}
		if got[i].Time.IsZero() {
			t.Errorf("event %d without time", i)
		}
	}
}

// TestConcurrentManifestPushes exercises group commit: pushes that share a
// transaction succeed or fail independently.
func TestConcurrentManifestPushes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var cfg, layer digest.Digest
	var cfgN, layerN int64
	for r := 0; r < 4; r++ {
		cfg, cfgN = f.blob(fmt.Sprintf("repo%d", r), `{}`)
		layer, layerN = f.blob(fmt.Sprintf("repo%d", r), "layer")
	}
	missing := digest.FromString("missing")
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			layers := map[digest.Digest]int64{layer: layerN}
			if i%3 == 0 {
				layers = map[digest.Digest]int64{missing: 1}
			}
			body := imageManifest(t, cfg, cfgN, layers, map[string]any{"annotations": map[string]string{"i": fmt.Sprint(i)}})
			_, errs[i] = f.st.PutManifest(ctx(), "reg", fmt.Sprintf("repo%d", i%4), store.PutManifestRequest{Reference: fmt.Sprintf("t%d", i), Body: body})
		}(i)
	}
	wg.Wait()
	stored := 0
	for i, err := range errs {
		repo := fmt.Sprintf("repo%d", i%4)
		_, getErr := f.st.GetManifest(ctx(), "reg", repo, fmt.Sprintf("t%d", i))
		if i%3 == 0 {
			if !errors.Is(err, store.ErrManifestBlobUnknown) || getErr == nil {
				t.Errorf("push %d: %v, then get: %v", i, err, getErr)
			}
			continue
		}
		if err != nil || getErr != nil {
			t.Errorf("push %d: %v, then get: %v", i, err, getErr)
		}
		stored++
	}
	if stored != 42 {
		t.Fatalf("stored %d", stored)
	}
}

// TestCacheFollowsConcurrentTagMoves moves one tag from many goroutines
// while others read it; afterwards the cached answer must be the committed
// one (the last entry of the tag's history).
func TestCacheFollowsConcurrentTagMoves(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg, cfgN := f.blob("app", `{}`)
	var digests []digest.Digest
	for i := 0; i < 8; i++ {
		m, err := f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{
			Body: imageManifest(t, cfg, cfgN, nil, map[string]any{"annotations": map[string]string{"i": fmt.Sprint(i)}})})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, m.Digest)
	}
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		for i := range digests {
			wg.Add(2)
			go func(i int) {
				defer wg.Done()
				if i%2 == 0 {
					f.st.TagManifest(ctx(), "reg", "app", "moving", digests[i], store.Actor{})
				} else {
					m, _ := f.st.GetManifest(ctx(), "reg", "app", digests[i].String())
					f.st.PutManifest(ctx(), "reg", "app", store.PutManifestRequest{Reference: "moving", Body: m.Body})
				}
			}(i)
			go func() {
				defer wg.Done()
				f.st.ResolveTag(ctx(), "reg", "app", "moving")
			}()
		}
		wg.Wait()
		hist, err := f.st.TagHistory(ctx(), "reg", "app", "moving")
		if err != nil {
			t.Fatal(err)
		}
		want := hist[len(hist)-1].New
		for i := 0; i < 3; i++ {
			if got, err := f.st.ResolveTag(ctx(), "reg", "app", "moving"); err != nil || got != want {
				t.Fatalf("round %d: resolved %s, committed %s (%v)", round, got, want, err)
			}
			if m, err := f.st.GetManifest(ctx(), "reg", "app", "moving"); err != nil || m.Digest != want {
				t.Fatalf("round %d: manifest %s, committed %s (%v)", round, m.Digest, want, err)
			}
		}
	}
}
