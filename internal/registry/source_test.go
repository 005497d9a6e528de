package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
)

// source is a Fallback with the ManifestSource and BlobSource capabilities,
// as a pull-through cache has them: repositories under "cache/" are its.
type source struct {
	fallback
	manifest store.Manifest
	blob     []byte
	// cut makes the stream fail after that many bytes (0: never).
	cut     int
	streams atomic.Int32
	fetches atomic.Int32
}

func (s *source) LookupManifest(_ context.Context, _, repo, ref string) (store.Manifest, bool, error) {
	if !strings.HasPrefix(repo, "cache/") {
		return store.Manifest{}, false, nil
	}
	switch ref {
	case "throttled":
		return store.Manifest{}, true, fmt.Errorf("upstream: %w", registry.ErrTooManyRequests)
	case "down":
		return store.Manifest{}, true, fmt.Errorf("upstream: %w", registry.ErrUnavailable)
	case "v1", s.manifest.Digest.String():
		return s.manifest, true, nil
	}
	return store.Manifest{}, true, fmt.Errorf("upstream: %w", store.ErrManifestUnknown)
}

type failingReader struct {
	r   io.Reader
	n   int
	cut int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.cut > 0 && f.n >= f.cut {
		return 0, errors.New("digest mismatch")
	}
	if f.cut > 0 && len(p) > f.cut-f.n {
		p = p[:f.cut-f.n]
	}
	n, err := f.r.Read(p)
	f.n += n
	return n, err
}

func (s *source) OpenBlob(_ context.Context, _, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	s.streams.Add(1)
	if !strings.HasPrefix(repo, "cache/") || d != digest.FromBytes(s.blob) {
		return nil, 0, fmt.Errorf("upstream: %w", store.ErrBlobUnknown)
	}
	return io.NopCloser(&failingReader{r: bytes.NewReader(s.blob), cut: s.cut}), int64(len(s.blob)), nil
}

func (s *source) FetchBlob(ctx context.Context, reg, repo string, d digest.Digest) error {
	s.fetches.Add(1)
	_, err := s.st.PutBlob(ctx, reg, repo, d, int64(len(s.blob)), bytes.NewReader(s.blob))
	return err
}

// TestManifestAndBlobSource: a ManifestSource answers manifest reads of
// its repositories before the store (errors mapped to 404, 429, 503), and
// a BlobSource streams missing blobs, aborting the response when the
// content turns out bad; ranged reads of a missing blob go through
// FetchBlob.
func TestManifestAndBlobSource(t *testing.T) {
	t.Parallel()
	src := &source{blob: bytes.Repeat([]byte("0123456789"), 100_000)}
	e := newEnv(t, registry.WithFallback(src))
	src.st = e.st
	cd, cn := e.pushBlob(t, "plain", []byte(`{}`))
	body := manifestJSON(t, mtManifest, cd, cn, nil, nil, nil)
	src.manifest = store.Manifest{Digest: digest.FromBytes(body), MediaType: mtManifest, Body: body}

	r := e.do(t, "GET", "/v2/cache/app/manifests/v1", nil)
	e.expect(t, r, http.StatusOK, "")
	if !bytes.Equal(r.body, body) || r.Header.Get("Docker-Content-Digest") != src.manifest.Digest.String() || r.Header.Get("Content-Type") != mtManifest {
		t.Fatalf("manifest from the source: %s %v", r.body, r.Header)
	}
	e.expect(t, e.do(t, "HEAD", "/v2/cache/app/manifests/"+src.manifest.Digest.String(), nil), http.StatusOK, "")
	e.expect(t, e.do(t, "GET", "/v2/cache/app/manifests/absent", nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
	e.expect(t, e.do(t, "GET", "/v2/cache/app/manifests/throttled", nil), http.StatusTooManyRequests, "TOOMANYREQUESTS")
	e.expect(t, e.do(t, "GET", "/v2/cache/app/manifests/down", nil), http.StatusServiceUnavailable, "UNAVAILABLE")
	// Not the source's repository: the store, and the plain fallback.
	e.expect(t, e.do(t, "GET", "/v2/plain/manifests/v1", nil), http.StatusNotFound, "MANIFEST_UNKNOWN")

	d := digest.FromBytes(src.blob)
	r = e.do(t, "GET", "/v2/cache/app/blobs/"+d.String(), nil)
	e.expect(t, r, http.StatusOK, "")
	if !bytes.Equal(r.body, src.blob) || r.ContentLength != int64(len(src.blob)) {
		t.Fatalf("streamed blob: %d bytes", len(r.body))
	}
	r = e.do(t, "HEAD", "/v2/cache/app/blobs/"+d.String(), nil)
	e.expect(t, r, http.StatusOK, "")
	if r.ContentLength != int64(len(src.blob)) {
		t.Fatalf("HEAD length %d", r.ContentLength)
	}
	e.expect(t, e.do(t, "GET", "/v2/cache/app/blobs/"+digest.FromString("other").String(), nil), http.StatusNotFound, "BLOB_UNKNOWN")

	// A stream that fails: the client sees a broken body, not a complete one.
	src.cut = 300_000
	req, _ := http.NewRequest("GET", e.srv.URL+"/v2/cache/app/blobs/"+d.String(), nil)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(got) == len(src.blob) {
		t.Fatalf("failed stream read cleanly: %d bytes, %v", len(got), err)
	}
	src.cut = 0

	// Ranged reads wait for the whole blob.
	r = e.do(t, "GET", "/v2/cache/app/blobs/"+d.String(), nil, "Range", "bytes=10-19")
	e.expect(t, r, http.StatusPartialContent, "")
	if string(r.body) != "0123456789" || src.fetches.Load() != 1 {
		t.Fatalf("range: %q, fetches %d", r.body, src.fetches.Load())
	}
}
