package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

const (
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
	mtIndex    = "application/vnd.oci.image.index.v1+json"
	mtDocker   = "application/vnd.docker.distribution.manifest.v2+json"
	mtList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtConfig   = "application/vnd.oci.image.config.v1+json"
	mtLayer    = "application/vnd.oci.image.layer.v1.tar"
)

type response struct {
	*http.Response
	body []byte
}

// code returns the first OCI error code of the body.
func (r response) code() string {
	var b struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	_ = json.Unmarshal(r.body, &b)
	if len(b.Errors) == 0 {
		return ""
	}
	return b.Errors[0].Code
}

func (e *env) do(t testing.TB, method, path string, body []byte, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp, b}
}

// raw serves a request whose target is taken verbatim (no client or mux
// path cleaning) by the handler itself.
func (e *env) raw(t testing.TB, method, target string, body []byte, header ...string) response {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	b, _ := io.ReadAll(resp.Body)
	return response{resp, b}
}

func (e *env) expect(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.StatusCode != status || (code != "" && r.code() != code) {
		t.Fatalf("%s %s: got %d %s, want %d %s: %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, r.code(), status, code, r.body)
	}
}

// pushBlob uploads content monolithically into repo.
func (e *env) pushBlob(t testing.TB, repo string, content []byte) (digest.Digest, int64) {
	t.Helper()
	d := digest.FromBytes(content)
	r := e.do(t, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), content)
	e.expect(t, r, http.StatusCreated, "")
	return d, int64(len(content))
}

func manifestJSON(t testing.TB, mediaType string, config digest.Digest, configSize int64, layers []digest.Digest, sizes []int64, extra map[string]any) []byte {
	t.Helper()
	m := map[string]any{"schemaVersion": 2, "mediaType": mediaType,
		"config": map[string]any{"mediaType": mtConfig, "digest": config, "size": configSize}}
	ls := []any{}
	for i, d := range layers {
		ls = append(ls, map[string]any{"mediaType": mtLayer, "digest": d, "size": sizes[i]})
	}
	m["layers"] = ls
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func indexJSON(t testing.TB, mediaType, childType string, children map[digest.Digest]int64, extra map[string]any) []byte {
	t.Helper()
	ms := []any{}
	for d, n := range children {
		ms = append(ms, map[string]any{"mediaType": childType, "digest": d, "size": n,
			"platform": map[string]string{"os": "linux", "architecture": "amd64"}})
	}
	m := map[string]any{"schemaVersion": 2, "mediaType": mediaType, "manifests": ms}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

// image pushes a config and a layer into repo and returns a manifest over them.
func (e *env) image(t testing.TB, repo, mediaType string, seed string) []byte {
	t.Helper()
	cd, cn := e.pushBlob(t, repo, []byte(`{"seed":"`+seed+`"}`))
	ld, ln := e.pushBlob(t, repo, []byte("layer "+seed))
	return manifestJSON(t, mediaType, cd, cn, []digest.Digest{ld}, []int64{ln}, nil)
}

func TestBase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do(t, "GET", "/v2/", nil)
	e.expect(t, r, http.StatusOK, "")
	if r.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("API version header: %q", r.Header.Get("Docker-Distribution-API-Version"))
	}
	e.expect(t, e.do(t, "GET", "/v2/app/unknown/thing", nil), http.StatusNotFound, "NOT_FOUND")
	e.expect(t, e.do(t, "POST", "/v2/app/manifests/latest", nil), http.StatusMethodNotAllowed, "UNSUPPORTED")
	e.expect(t, e.do(t, "PATCH", "/v2/app/blobs/"+digest.FromString("x").String(), nil), http.StatusMethodNotAllowed, "UNSUPPORTED")
}

func TestBlobUploads(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	d := digest.FromBytes(content)

	t.Run("post then put", func(t *testing.T) {
		r := e.do(t, "POST", "/v2/a/blobs/uploads/", nil)
		e.expect(t, r, http.StatusAccepted, "")
		loc := r.Header.Get("Location")
		if !strings.HasPrefix(loc, "/v2/a/blobs/uploads/") || r.Header.Get("Range") != "0-0" || r.Header.Get("Docker-Upload-UUID") == "" {
			t.Fatalf("POST headers: %v", r.Header)
		}
		r = e.do(t, "PUT", loc+"?digest="+d.String(), content, "Content-Type", "application/octet-stream")
		e.expect(t, r, http.StatusCreated, "")
		if r.Header.Get("Location") != "/v2/a/blobs/"+d.String() || r.Header.Get("Docker-Content-Digest") != d.String() {
			t.Fatalf("PUT headers: %v", r.Header)
		}
	})
	t.Run("chunked with out-of-order chunk", func(t *testing.T) {
		loc := e.do(t, "POST", "/v2/b/blobs/uploads/", nil).Header.Get("Location")
		r := e.do(t, "PATCH", loc, content[:1000], "Content-Range", "0-999")
		e.expect(t, r, http.StatusAccepted, "")
		if r.Header.Get("Range") != "0-999" {
			t.Fatalf("Range after first chunk: %q", r.Header.Get("Range"))
		}
		e.expect(t, e.do(t, "PATCH", loc, content[2000:3000], "Content-Range", "2000-2999"), http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID")
		e.expect(t, e.do(t, "PATCH", loc, content[:10], "Content-Range", "0-99"), http.StatusBadRequest, "SIZE_INVALID")
		r = e.do(t, "GET", loc, nil)
		e.expect(t, r, http.StatusNoContent, "")
		if r.Header.Get("Range") != "0-999" {
			t.Fatalf("status Range: %q", r.Header.Get("Range"))
		}
		e.expect(t, e.do(t, "PATCH", loc, content[1000:5000], "Content-Range", "1000-4999"), http.StatusAccepted, "")
		e.expect(t, e.do(t, "PUT", loc+"?digest="+d.String(), content[5000:], "Content-Range", fmt.Sprintf("5000-%d", len(content)-1)), http.StatusCreated, "")
		e.expect(t, e.do(t, "GET", "/v2/b/blobs/"+d.String(), nil), http.StatusOK, "")
	})
	t.Run("streamed", func(t *testing.T) {
		loc := e.do(t, "POST", "/v2/c/blobs/uploads/", nil).Header.Get("Location")
		r := e.do(t, "PATCH", loc, content)
		e.expect(t, r, http.StatusAccepted, "")
		e.expect(t, e.do(t, "PUT", r.Header.Get("Location")+"?digest="+d.String(), nil), http.StatusCreated, "")
	})
	t.Run("sha512", func(t *testing.T) {
		d512 := digest.SHA512.FromBytes(content)
		loc := e.do(t, "POST", "/v2/d/blobs/uploads/", nil).Header.Get("Location")
		e.expect(t, e.do(t, "PATCH", loc, content), http.StatusAccepted, "")
		e.expect(t, e.do(t, "PUT", loc+"?digest="+d512.String(), nil), http.StatusCreated, "")
		r := e.do(t, "GET", "/v2/d/blobs/"+d512.String(), nil)
		e.expect(t, r, http.StatusOK, "")
		if !bytes.Equal(r.body, content) || r.Header.Get("Docker-Content-Digest") != d512.String() {
			t.Fatal("sha512 blob content")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		loc := e.do(t, "POST", "/v2/e/blobs/uploads/", nil).Header.Get("Location")
		e.expect(t, e.do(t, "PATCH", loc, content[:100]), http.StatusAccepted, "")
		e.expect(t, e.do(t, "DELETE", loc, nil), http.StatusNoContent, "")
		e.expect(t, e.do(t, "GET", loc, nil), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		e.expect(t, e.do(t, "PATCH", loc, content[:100]), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
	})
	t.Run("upload of another repository", func(t *testing.T) {
		loc := e.do(t, "POST", "/v2/f/blobs/uploads/", nil).Header.Get("Location")
		other := strings.Replace(loc, "/v2/f/", "/v2/g/", 1)
		e.expect(t, e.do(t, "GET", other, nil), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
	})
	t.Run("range reads", func(t *testing.T) {
		r := e.do(t, "GET", "/v2/a/blobs/"+d.String(), nil, "Range", "bytes=10-19")
		e.expect(t, r, http.StatusPartialContent, "")
		if !bytes.Equal(r.body, content[10:20]) || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", len(content)) {
			t.Fatalf("range: %q %v", r.body, r.Header)
		}
		e.expect(t, e.do(t, "GET", "/v2/a/blobs/"+d.String(), nil, "Range", fmt.Sprintf("bytes=%d-", len(content)+10)), http.StatusRequestedRangeNotSatisfiable, "")
		// A zero-length suffix is unsatisfiable (RFC 9110), not an empty 206.
		r = e.do(t, "GET", "/v2/a/blobs/"+d.String(), nil, "Range", "bytes=-0")
		e.expect(t, r, http.StatusRequestedRangeNotSatisfiable, "")
		if r.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(content)) {
			t.Fatalf("bytes=-0: Content-Range %q", r.Header.Get("Content-Range"))
		}
		r = e.do(t, "HEAD", "/v2/a/blobs/"+d.String(), nil)
		e.expect(t, r, http.StatusOK, "")
		if r.ContentLength != int64(len(content)) || len(r.body) != 0 {
			t.Fatalf("HEAD: %d %d", r.ContentLength, len(r.body))
		}
	})
	t.Run("mount", func(t *testing.T) {
		r := e.do(t, "POST", "/v2/m1/blobs/uploads/?mount="+d.String()+"&from=a", nil)
		e.expect(t, r, http.StatusCreated, "")
		if r.Header.Get("Location") != "/v2/m1/blobs/"+d.String() {
			t.Fatalf("mount location %q", r.Header.Get("Location"))
		}
		e.expect(t, e.do(t, "POST", "/v2/m2/blobs/uploads/?mount="+d.String(), nil), http.StatusCreated, "")
		e.expect(t, e.do(t, "HEAD", "/v2/m2/blobs/"+d.String(), nil), http.StatusOK, "")
		missing := digest.FromString("missing")
		r = e.do(t, "POST", "/v2/m3/blobs/uploads/?mount="+missing.String()+"&from=a", nil)
		e.expect(t, r, http.StatusAccepted, "")
		if !strings.HasPrefix(r.Header.Get("Location"), "/v2/m3/blobs/uploads/") {
			t.Fatalf("fallback location %q", r.Header.Get("Location"))
		}
		e.expect(t, e.do(t, "POST", "/v2/m3/blobs/uploads/?mount="+d.String()+"&from=nope", nil), http.StatusAccepted, "")
	})
	t.Run("delete", func(t *testing.T) {
		e.expect(t, e.do(t, "DELETE", "/v2/m1/blobs/"+d.String(), nil), http.StatusAccepted, "")
		e.expect(t, e.do(t, "HEAD", "/v2/m1/blobs/"+d.String(), nil), http.StatusNotFound, "")
		e.expect(t, e.do(t, "GET", "/v2/m1/blobs/"+d.String(), nil), http.StatusNotFound, "BLOB_UNKNOWN")
		e.expect(t, e.do(t, "DELETE", "/v2/m1/blobs/"+d.String(), nil), http.StatusNotFound, "BLOB_UNKNOWN")
		e.expect(t, e.do(t, "HEAD", "/v2/a/blobs/"+d.String(), nil), http.StatusOK, "")
	})
}

func TestManifests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.image(t, "app", mtManifest, "amd64")
	imgD := digest.FromBytes(img)

	r := e.do(t, "PUT", "/v2/app/manifests/v1", img, "Content-Type", mtManifest)
	e.expect(t, r, http.StatusCreated, "")
	if r.Header.Get("Docker-Content-Digest") != imgD.String() || r.Header.Get("Location") != "/v2/app/manifests/"+imgD.String() {
		t.Fatalf("PUT headers: %v", r.Header)
	}
	for _, ref := range []string{"v1", imgD.String()} {
		for _, method := range []string{"GET", "HEAD"} {
			r := e.do(t, method, "/v2/app/manifests/"+ref, nil, "Accept", mtManifest)
			e.expect(t, r, http.StatusOK, "")
			if r.Header.Get("Content-Type") != mtManifest || r.Header.Get("Docker-Content-Digest") != imgD.String() || r.ContentLength != int64(len(img)) {
				t.Fatalf("%s %s headers: %v", method, ref, r.Header)
			}
			if method == "GET" && !bytes.Equal(r.body, img) {
				t.Fatal("body differs")
			}
		}
	}
	e.expect(t, e.do(t, "GET", "/v2/app/manifests/nope", nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
	e.expect(t, e.do(t, "GET", "/v2/app/manifests/"+digest.FromString("x").String(), nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
	e.expect(t, e.do(t, "GET", "/v2/nope/manifests/v1", nil), http.StatusNotFound, "NAME_UNKNOWN")

	// Nested index: an index of an index of two images.
	arm := e.image(t, "app", mtManifest, "arm64")
	e.expect(t, e.do(t, "PUT", "/v2/app/manifests/"+digest.FromBytes(arm).String(), arm, "Content-Type", mtManifest), http.StatusCreated, "")
	inner := indexJSON(t, mtIndex, mtManifest, map[digest.Digest]int64{imgD: int64(len(img)), digest.FromBytes(arm): int64(len(arm))}, nil)
	e.expect(t, e.do(t, "PUT", "/v2/app/manifests/inner", inner, "Content-Type", mtIndex), http.StatusCreated, "")
	outer := indexJSON(t, mtIndex, mtIndex, map[digest.Digest]int64{digest.FromBytes(inner): int64(len(inner))}, nil)
	e.expect(t, e.do(t, "PUT", "/v2/app/manifests/outer", outer, "Content-Type", mtIndex), http.StatusCreated, "")
	if r := e.do(t, "GET", "/v2/app/manifests/outer", nil); r.Header.Get("Content-Type") != mtIndex || !bytes.Equal(r.body, outer) {
		t.Fatalf("outer index: %v", r.Header)
	}

	// Docker schema 2 manifest and manifest list.
	dm := e.image(t, "docker", mtDocker, "docker")
	e.expect(t, e.do(t, "PUT", "/v2/docker/manifests/latest", dm, "Content-Type", mtDocker), http.StatusCreated, "")
	dl := indexJSON(t, mtList, mtDocker, map[digest.Digest]int64{digest.FromBytes(dm): int64(len(dm))}, nil)
	e.expect(t, e.do(t, "PUT", "/v2/docker/manifests/list", dl, "Content-Type", mtList), http.StatusCreated, "")
	if r := e.do(t, "GET", "/v2/docker/manifests/list", nil); r.Header.Get("Content-Type") != mtList {
		t.Fatalf("manifest list type: %v", r.Header)
	}

	// Tag parameters on a push by digest.
	other := e.image(t, "app", mtManifest, "tagged")
	od := digest.FromBytes(other)
	r = e.do(t, "PUT", "/v2/app/manifests/"+od.String()+"?tag=a&tag=b", other, "Content-Type", mtManifest)
	e.expect(t, r, http.StatusCreated, "")
	if got := r.Header.Values("OCI-Tag"); strings.Join(got, ",") != "a,b" {
		t.Fatalf("OCI-Tag: %v", got)
	}
	for _, tag := range []string{"a", "b"} {
		if r := e.do(t, "HEAD", "/v2/app/manifests/"+tag, nil); r.Header.Get("Docker-Content-Digest") != od.String() {
			t.Fatalf("tag %s: %v", tag, r.Header)
		}
	}

	// Deletes: a tag, then the manifest (its other tag goes with it).
	e.expect(t, e.do(t, "DELETE", "/v2/app/manifests/a", nil), http.StatusAccepted, "")
	e.expect(t, e.do(t, "HEAD", "/v2/app/manifests/a", nil), http.StatusNotFound, "")
	e.expect(t, e.do(t, "HEAD", "/v2/app/manifests/b", nil), http.StatusOK, "")
	e.expect(t, e.do(t, "DELETE", "/v2/app/manifests/"+od.String(), nil), http.StatusAccepted, "")
	e.expect(t, e.do(t, "HEAD", "/v2/app/manifests/b", nil), http.StatusNotFound, "")
	e.expect(t, e.do(t, "DELETE", "/v2/app/manifests/"+od.String(), nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
	e.expect(t, e.do(t, "DELETE", "/v2/app/manifests/nope", nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
}

func TestReferrers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.image(t, "app", mtManifest, "subject")
	subj := digest.FromBytes(img)
	e.expect(t, e.do(t, "PUT", "/v2/app/manifests/v1", img, "Content-Type", mtManifest), http.StatusCreated, "")
	empty, en := e.pushBlob(t, "app", []byte("{}"))
	subjDesc := map[string]any{"mediaType": mtManifest, "digest": subj, "size": len(img)}
	art := func(at string) []byte {
		b := manifestJSON(t, mtManifest, empty, en, nil, nil, map[string]any{"artifactType": at, "subject": subjDesc,
			"annotations": map[string]string{"org.example": at}})
		return b
	}
	for _, at := range []string{"application/vnd.example.sig", "application/vnd.example.sbom"} {
		r := e.do(t, "PUT", "/v2/app/manifests/"+digest.FromBytes(art(at)).String(), art(at), "Content-Type", mtManifest)
		e.expect(t, r, http.StatusCreated, "")
		if r.Header.Get("OCI-Subject") != subj.String() {
			t.Fatalf("OCI-Subject: %v", r.Header)
		}
	}
	// A subject that does not exist (yet) is accepted.
	ghost := digest.FromString("ghost")
	orphan := manifestJSON(t, mtManifest, empty, en, nil, nil, map[string]any{"artifactType": "application/vnd.example.sig",
		"subject": map[string]any{"mediaType": mtManifest, "digest": ghost, "size": 5}})
	e.expect(t, e.do(t, "PUT", "/v2/app/manifests/orphan", orphan, "Content-Type", mtManifest), http.StatusCreated, "")

	list := func(path string) (int, []map[string]any, http.Header) {
		r := e.do(t, "GET", path, nil)
		e.expect(t, r, http.StatusOK, "")
		if r.Header.Get("Content-Type") != mtIndex {
			t.Fatalf("referrers content type %q", r.Header.Get("Content-Type"))
		}
		var idx struct {
			SchemaVersion int              `json:"schemaVersion"`
			MediaType     string           `json:"mediaType"`
			Manifests     []map[string]any `json:"manifests"`
		}
		if err := json.Unmarshal(r.body, &idx); err != nil || idx.SchemaVersion != 2 || idx.MediaType != mtIndex {
			t.Fatalf("referrers body %s: %v", r.body, err)
		}
		return len(idx.Manifests), idx.Manifests, r.Header
	}
	if n, ms, _ := list("/v2/app/referrers/" + subj.String()); n != 2 || ms[0]["annotations"] == nil {
		t.Fatalf("referrers: %v", ms)
	}
	n, ms, h := list("/v2/app/referrers/" + subj.String() + "?artifactType=application/vnd.example.sbom")
	if n != 1 || ms[0]["artifactType"] != "application/vnd.example.sbom" || h.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("filtered referrers: %v %v", ms, h)
	}
	if n, _, _ := list("/v2/app/referrers/" + ghost.String()); n != 1 {
		t.Fatalf("referrers of a missing subject: %d", n)
	}
	if n, _, _ := list("/v2/unknown/referrers/" + subj.String()); n != 0 {
		t.Fatalf("referrers in unknown repo: %d", n)
	}
	e.expect(t, e.do(t, "GET", "/v2/app/referrers/sha256:nothex", nil), http.StatusBadRequest, "DIGEST_INVALID")
}

func TestTagListAndCatalog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.image(t, "app", mtManifest, "tags")
	for _, tag := range []string{"c", "a", "e", "b", "d"} {
		e.expect(t, e.do(t, "PUT", "/v2/app/manifests/"+tag, img, "Content-Type", mtManifest), http.StatusCreated, "")
	}
	var tl struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	r := e.do(t, "GET", "/v2/app/tags/list", nil)
	e.expect(t, r, http.StatusOK, "")
	json.Unmarshal(r.body, &tl)
	if tl.Name != "app" || strings.Join(tl.Tags, ",") != "a,b,c,d,e" || r.Header.Get("Link") != "" {
		t.Fatalf("tags: %+v link %q", tl, r.Header.Get("Link"))
	}
	r = e.do(t, "GET", "/v2/app/tags/list?n=2", nil)
	json.Unmarshal(r.body, &tl)
	if strings.Join(tl.Tags, ",") != "a,b" || r.Header.Get("Link") != `</v2/app/tags/list?last=b&n=2>; rel="next"` {
		t.Fatalf("page 1: %+v link %q", tl, r.Header.Get("Link"))
	}
	r = e.do(t, "GET", "/v2/app/tags/list?n=2&last=d", nil)
	json.Unmarshal(r.body, &tl)
	if strings.Join(tl.Tags, ",") != "e" || r.Header.Get("Link") != "" {
		t.Fatalf("last page: %+v link %q", tl, r.Header.Get("Link"))
	}
	r = e.do(t, "GET", "/v2/app/tags/list?n=0", nil)
	json.Unmarshal(r.body, &tl)
	if len(tl.Tags) != 0 {
		t.Fatalf("n=0: %+v", tl)
	}
	e.expect(t, e.do(t, "GET", "/v2/app/tags/list?n=-1", nil), http.StatusBadRequest, "PAGINATION_NUMBER_INVALID")
	e.expect(t, e.do(t, "GET", "/v2/nope/tags/list", nil), http.StatusNotFound, "NAME_UNKNOWN")

	e.pushBlob(t, "other/repo", []byte("x"))
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	r = e.do(t, "GET", "/v2/_catalog?n=1", nil)
	e.expect(t, r, http.StatusOK, "")
	json.Unmarshal(r.body, &cat)
	if strings.Join(cat.Repositories, ",") != "app" || r.Header.Get("Link") != `</v2/_catalog?last=app&n=1>; rel="next"` {
		t.Fatalf("catalog: %+v %q", cat, r.Header.Get("Link"))
	}
	r = e.do(t, "GET", "/v2/_catalog", nil)
	json.Unmarshal(r.body, &cat)
	if strings.Join(cat.Repositories, ",") != "app,other/repo" {
		t.Fatalf("catalog: %+v", cat)
	}
}

// TestBadInput sends malformed requests; each must be answered with the
// spec's error code and leave nothing stored.
func TestBadInput(t *testing.T) {
	t.Parallel()
	blob := []byte("content")
	bd := digest.FromBytes(blob)
	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
		header []string
		status int
		code   string
		raw    bool
	}{
		{"invalid digest", "POST", "/v2/app/blobs/uploads/?digest=sha256:xyz", blob, nil, 400, "DIGEST_INVALID", false},
		{"unsupported digest algorithm", "POST", "/v2/app/blobs/uploads/?digest=" + digest.SHA384.FromBytes(blob).String(), blob, nil, 400, "DIGEST_INVALID", false},
		{"digest mismatch", "POST", "/v2/app/blobs/uploads/?digest=" + digest.FromString("other").String(), blob, nil, 400, "DIGEST_INVALID", false},
		{"invalid blob digest on GET", "GET", "/v2/app/blobs/sha256:xyz", nil, nil, 400, "DIGEST_INVALID", false},
		{"malformed manifest", "PUT", "/v2/app/manifests/v1", []byte(`{"schemaVersion":2,`), []string{"Content-Type", mtManifest}, 400, "MANIFEST_INVALID", false},
		{"manifest not JSON", "PUT", "/v2/app/manifests/v1", []byte("hello"), nil, 400, "MANIFEST_INVALID", false},
		{"manifest schema 1", "PUT", "/v2/app/manifests/v1", []byte(`{"schemaVersion":1,"fsLayers":[]}`), []string{"Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws"}, 400, "MANIFEST_INVALID", false},
		{"oversized manifest", "PUT", "/v2/app/manifests/v1", bytes.Repeat([]byte(" "), 4<<20+1), []string{"Content-Type", mtManifest}, 413, "MANIFEST_INVALID", false},
		{"manifest with missing blobs", "PUT", "/v2/app/manifests/v1",
			manifestJSON(t, mtManifest, bd, int64(len(blob)), []digest.Digest{digest.FromString("l")}, []int64{1}, nil), []string{"Content-Type", mtManifest}, 400, "MANIFEST_BLOB_UNKNOWN", false},
		{"index with missing child", "PUT", "/v2/app/manifests/v1",
			indexJSON(t, mtIndex, mtManifest, map[digest.Digest]int64{digest.FromString("c"): 10}, nil), []string{"Content-Type", mtIndex}, 400, "MANIFEST_BLOB_UNKNOWN", false},
		{"manifest digest mismatch", "PUT", "/v2/app/manifests/" + digest.FromString("y").String(), []byte(`{}`), nil, 400, "DIGEST_INVALID", false},
		{"manifest bad digest reference", "PUT", "/v2/app/manifests/sha256:baddigeststring", []byte(`{}`), nil, 400, "DIGEST_INVALID", false},
		{"invalid tag", "PUT", "/v2/app/manifests/-tag", []byte(`{}`), nil, 400, "NAME_INVALID", false},
		{"invalid tag parameter", "PUT", "/v2/app/manifests/" + digest.FromString("{}").String() + "?tag=a%2Fb", []byte(`{}`), nil, 400, "NAME_INVALID", false},
		{"uppercase repository", "POST", "/v2/App/blobs/uploads/", nil, nil, 400, "NAME_INVALID", false},
		{"path traversal", "POST", "/v2/app/../../etc/blobs/uploads/", nil, nil, 400, "NAME_INVALID", true},
		{"dot segment", "PUT", "/v2/./app/manifests/v1", []byte(`{}`), nil, 400, "NAME_INVALID", true},
		{"encoded traversal", "GET", "/v2/app/%2e%2e/x/manifests/v1", nil, nil, 400, "NAME_INVALID", true},
		{"empty segment", "POST", "/v2/a//b/blobs/uploads/", nil, nil, 400, "NAME_INVALID", true},
		{"upload id traversal", "PATCH", "/v2/app/blobs/uploads/..%2F..%2Fgantry.db", blob, nil, 404, "BLOB_UPLOAD_UNKNOWN", true},
		{"decoded upload id traversal", "PATCH", "/v2/app/blobs/uploads/../../../gantry.db", blob, nil, 404, "NOT_FOUND", true},
		{"encoded slash in name", "POST", "/v2/a%2Fb/blobs/uploads/", nil, nil, 400, "NAME_INVALID", true},
		{"unknown upload", "PUT", "/v2/app/blobs/uploads/3f1b7c2e-0000-4000-8000-000000000000?digest=" + bd.String(), blob, nil, 404, "BLOB_UPLOAD_UNKNOWN", false},
		{"put without digest", "PUT", "/v2/app/blobs/uploads/3f1b7c2e-0000-4000-8000-000000000000", blob, nil, 400, "DIGEST_INVALID", false},
		{"malformed content range", "PATCH", "/v2/app/blobs/uploads/3f1b7c2e-0000-4000-8000-000000000000", blob, []string{"Content-Range", "abc"}, 416, "BLOB_UPLOAD_INVALID", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var r response
			if tt.raw {
				r = e.raw(t, tt.method, tt.path, tt.body, tt.header...)
			} else {
				r = e.do(t, tt.method, tt.path, tt.body, tt.header...)
			}
			e.expect(t, r, tt.status, tt.code)
			e.assertEmpty(t)
		})
	}
}

// assertEmpty checks that the registry holds nothing: no repository, no
// blob or upload file.
func (e *env) assertEmpty(t testing.TB) {
	t.Helper()
	if repos, err := e.st.ListRepositories(context.Background(), e.name, store.Page{}); err != nil || len(repos) != 0 {
		t.Fatalf("repositories stored: %+v %v", repos, err)
	}
	var found []string
	filepath.WalkDir(e.root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 0 {
		t.Fatalf("files stored: %v", found)
	}
}

func TestUnknownRegistry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mux := http.NewServeMux()
	mux.Handle("/v2/", registry.New("deleted", e.st, registry.WithAuthorizer(auth.AllowAll{})))
	e2 := &env{st: e.st, srv: newServer(t, mux), root: e.root, name: "test"}
	e2.expect(t, e2.do(t, "POST", "/v2/app/blobs/uploads/?digest="+digest.FromString("x").String(), []byte("x")), 404, "NAME_UNKNOWN")
	e2.expect(t, e2.do(t, "POST", "/v2/app/blobs/uploads/", nil), 404, "NAME_UNKNOWN")
	e2.expect(t, e2.do(t, "PUT", "/v2/app/manifests/v1", []byte(`{"schemaVersion":2,"config":{"mediaType":"a","digest":"`+digest.FromString("c").String()+`","size":1},"layers":[]}`)), 404, "NAME_UNKNOWN")
	e2.expect(t, e2.do(t, "GET", "/v2/app/manifests/v1", nil), 404, "NAME_UNKNOWN")
	e2.expect(t, e2.do(t, "GET", "/v2/_catalog", nil), 404, "NAME_UNKNOWN")
	e.assertEmpty(t)
}

// recorder is an Authorizer that records what each request needed and
// refuses requests for denied repositories or without credentials.
type recorder struct {
	mu      sync.Mutex
	needs   []string
	deny    string
	noScope string // a repository the credentials do not cover
	anonOK  atomic.Bool
}

func (a *recorder) Authorize(r *http.Request, registry string, need []auth.Access) (auth.Identity, error) {
	var parts []string
	for _, n := range need {
		parts = append(parts, n.Type+":"+n.Name+":"+strings.Join(n.Actions, ","))
	}
	a.mu.Lock()
	a.needs = append(a.needs, r.Method+" "+strings.Join(parts, " "))
	deny, noScope := a.deny, a.noScope
	a.mu.Unlock()
	if r.Header.Get("Authorization") == "" && !a.anonOK.Load() {
		return auth.Identity{}, auth.ErrUnauthenticated
	}
	for _, n := range need {
		if n.Name == deny {
			return auth.Identity{}, fmt.Errorf("repository %s: %w", n.Name, auth.ErrDenied)
		}
		if n.Name == noScope {
			return auth.Identity{}, fmt.Errorf("token does not cover %s: %w", n.Name, auth.ErrUnauthenticated)
		}
	}
	return auth.Identity{Principal: "principal-1", Name: "tester", RunID: "run-7"}, nil
}

func (a *recorder) Challenge(r *http.Request, registry string, need []auth.Access) string {
	var scopes []string
	for _, n := range need {
		scopes = append(scopes, n.Type+":"+n.Name+":"+strings.Join(n.Actions, ","))
	}
	return `Bearer realm="http://auth/token",service="` + registry + `",scope="` + strings.Join(scopes, " ") + `"`
}

func (a *recorder) set(deny, noScope string) {
	a.mu.Lock()
	a.deny, a.noScope = deny, noScope
	a.mu.Unlock()
}

func (a *recorder) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.needs[len(a.needs)-1]
}

func TestAccessControl(t *testing.T) {
	t.Parallel()
	a := &recorder{deny: "secret"}
	e := newEnv(t, registry.WithAuthorizer(a))
	authz := []string{"Authorization", "Bearer x"}

	// Unauthenticated: 401 with the challenge, before anything is stored.
	r := e.do(t, "POST", "/v2/app/blobs/uploads/?digest="+digest.FromString("x").String(), []byte("x"))
	e.expect(t, r, http.StatusUnauthorized, "UNAUTHORIZED")
	if r.Header.Get("WWW-Authenticate") != `Bearer realm="http://auth/token",service="test",scope="repository:app:push"` {
		t.Fatalf("challenge %q", r.Header.Get("WWW-Authenticate"))
	}
	e.assertEmpty(t)
	// Denied: 403.
	e.expect(t, e.do(t, "POST", "/v2/secret/blobs/uploads/", nil, authz...), http.StatusForbidden, "DENIED")
	e.assertEmpty(t)

	cases := []struct {
		method, path string
		need         string
	}{
		{"GET", "/v2/", "GET "},
		{"GET", "/v2/_catalog", "GET registry:catalog:*"},
		{"GET", "/v2/app/tags/list", "GET repository:app:list"},
		{"GET", "/v2/app/manifests/v1", "GET repository:app:pull"},
		{"HEAD", "/v2/app/manifests/v1", "HEAD repository:app:pull"},
		{"PUT", "/v2/app/manifests/v1", "PUT repository:app:push"},
		{"DELETE", "/v2/app/manifests/v1", "DELETE repository:app:delete"},
		{"GET", "/v2/app/blobs/" + digest.FromString("x").String(), "GET repository:app:pull"},
		{"DELETE", "/v2/app/blobs/" + digest.FromString("x").String(), "DELETE repository:app:delete"},
		{"POST", "/v2/app/blobs/uploads/", "POST repository:app:push"},
		{"GET", "/v2/app/referrers/" + digest.FromString("x").String(), "GET repository:app:pull"},
	}
	for _, c := range cases {
		e.do(t, c.method, c.path, nil, authz...)
		if got := a.last(); got != c.need {
			t.Errorf("%s %s needed %q, want %q", c.method, c.path, got, c.need)
		}
	}
	// A mount checks pull on the source separately: a refused source only
	// means an upload session instead.
	a.anonOK.Store(true)
	e.pushBlob(t, "app", []byte("mount me"))
	e.expect(t, e.do(t, "POST", "/v2/other/blobs/uploads/?mount="+digest.FromBytes([]byte("mount me")).String()+"&from=app", nil, authz...), http.StatusCreated, "")
	if got := a.last(); got != "POST repository:app:pull" {
		t.Errorf("mount source check %q", got)
	}
	mounted := digest.FromBytes([]byte("mount me")).String()
	// A source the caller may not read: an upload session instead.
	e.pushBlob(t, "secret2", []byte("mount me"))
	a.set("secret2", "")
	e.expect(t, e.do(t, "POST", "/v2/other2/blobs/uploads/?mount="+mounted+"&from=secret2", nil, authz...), http.StatusAccepted, "")
	// A source the token does not cover: 401, challenging for both scopes.
	e.pushBlob(t, "uncovered", []byte("mount me"))
	a.set("secret", "uncovered")
	r = e.do(t, "POST", "/v2/other3/blobs/uploads/?mount="+mounted+"&from=uncovered", nil, authz...)
	e.expect(t, r, http.StatusUnauthorized, "UNAUTHORIZED")
	if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, `scope="repository:other3:push repository:uncovered:pull"`) {
		t.Errorf("mount challenge %q", got)
	}

	// Tag history records the caller's principal and run.
	img := e.image(t, "app", mtManifest, "history")
	e.expect(t, e.do(t, "PUT", "/v2/app/manifests/v1", img, append(authz, "Content-Type", mtManifest)...), http.StatusCreated, "")
	hist, err := e.st.TagHistory(context.Background(), "test", "app", "v1")
	if err != nil || len(hist) != 1 || hist[0].PushedBy != "principal-1" || hist[0].RunID != "run-7" {
		t.Fatalf("history: %+v %v", hist, err)
	}
}

func TestDefaultDeniesEverything(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mux := http.NewServeMux()
	mux.Handle("/v2/", registry.New("test", e.st))
	e2 := &env{st: e.st, srv: newServer(t, mux), root: e.root, name: "test"}
	e2.expect(t, e2.do(t, "GET", "/v2/", nil), http.StatusUnauthorized, "UNAUTHORIZED")
	e2.expect(t, e2.do(t, "POST", "/v2/app/blobs/uploads/", nil), http.StatusUnauthorized, "UNAUTHORIZED")
}

func TestThrottled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registry.WithAuthorizer(throttler{}))
	r := e.do(t, "GET", "/v2/", nil)
	e.expect(t, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if r.Header.Get("Retry-After") != "30" {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
}

type throttler struct{}

func (throttler) Authorize(*http.Request, string, []auth.Access) (auth.Identity, error) {
	return auth.Identity{}, fmt.Errorf("login: %w", &auth.ThrottledError{RetryAfter: 30e9})
}
func (throttler) Challenge(*http.Request, string, []auth.Access) string { return "" }

// fallback serves misses by pushing content into the store, as a
// pull-through cache would.
type fallback struct {
	st    *store.Store
	body  []byte
	calls int
}

func (f *fallback) FetchManifest(ctx context.Context, reg, repo, reference string) error {
	f.calls++
	if reference == "throttled" {
		return fmt.Errorf("upstream: %w", registry.ErrTooManyRequests)
	}
	if reference != "cached" {
		return fmt.Errorf("upstream: %w", store.ErrManifestUnknown)
	}
	_, err := f.st.PutManifest(ctx, reg, repo, store.PutManifestRequest{Reference: reference, Body: f.body})
	return err
}

func (f *fallback) FetchBlob(ctx context.Context, registry, repo string, d digest.Digest) error {
	f.calls++
	_, err := f.st.PutBlob(ctx, registry, repo, d, -1, bytes.NewReader([]byte("upstream blob")))
	if err != nil {
		return fmt.Errorf("upstream: %w", store.ErrBlobUnknown)
	}
	return nil
}

func TestFallbackAndPushGuard(t *testing.T) {
	t.Parallel()
	fb := &fallback{}
	e := newEnv(t, registry.WithFallback(fb), registry.WithPushGuard(guard{"cache/reserved"}))
	fb.st = e.st
	cd, cn := e.pushBlob(t, "cache/up", []byte(`{}`))
	fb.body = manifestJSON(t, mtManifest, cd, cn, nil, nil, nil)
	r := e.do(t, "GET", "/v2/cache/up/manifests/cached", nil)
	e.expect(t, r, http.StatusOK, "")
	if !bytes.Equal(r.body, fb.body) {
		t.Fatal("fallback manifest not served")
	}
	e.expect(t, e.do(t, "GET", "/v2/cache/up/manifests/absent", nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
	e.expect(t, e.do(t, "GET", "/v2/cache/up/manifests/throttled", nil), http.StatusTooManyRequests, "TOOMANYREQUESTS")
	up := digest.FromString("upstream blob")
	e.expect(t, e.do(t, "GET", "/v2/cache/up/blobs/"+up.String(), nil), http.StatusOK, "")
	if fb.calls != 4 {
		t.Fatalf("fallback calls %d", fb.calls)
	}
	r = e.do(t, "POST", "/v2/cache/reserved/blobs/uploads/?digest="+up.String(), []byte("upstream blob"))
	e.expect(t, r, http.StatusForbidden, "DENIED")
	e.expect(t, e.do(t, "PUT", "/v2/cache/reserved/manifests/v1", fb.body), http.StatusForbidden, "DENIED")
	if _, err := e.st.GetRepository(context.Background(), "test", "cache/reserved"); !errors.Is(err, store.ErrRepositoryUnknown) {
		t.Fatalf("reserved repository written: %v", err)
	}
}

type guard struct{ reserved string }

func (g guard) CheckPush(_ context.Context, _, repo string) error {
	if repo == g.reserved {
		return fmt.Errorf("repository %s is a cache target: %w", repo, auth.ErrDenied)
	}
	return nil
}

// TestInterruptedUploads cuts connections in the middle of request bodies:
// a one-shot upload leaves nothing behind, a chunk keeps what arrived.
func TestInterruptedUploads(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	host := strings.TrimPrefix(e.srv.URL, "http://")
	send := func(req string, partial []byte) {
		t.Helper()
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(req))
		c.Write(partial)
		time.Sleep(100 * time.Millisecond)
		c.Close()
	}
	content := bytes.Repeat([]byte("x"), 1000)
	d := digest.FromBytes(content)
	send("POST /v2/app/blobs/uploads/?digest="+d.String()+" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", content[:400])
	testenv.WaitFor(t, 2*time.Second, "the aborted upload's files to go", func() bool { return len(filesUnder(e.root)) == 0 })
	e.assertEmpty(t)

	loc := e.do(t, "POST", "/v2/app/blobs/uploads/", nil).Header.Get("Location")
	send("PATCH "+loc+" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", content[:400])
	testenv.WaitFor(t, 2*time.Second, "the upload to hold 400 bytes", func() bool { return e.do(t, "GET", loc, nil).Header.Get("Range") == "0-399" })
	e.expect(t, e.do(t, "PATCH", loc, content[400:], "Content-Range", "400-999"), http.StatusAccepted, "")
	e.expect(t, e.do(t, "PUT", loc+"?digest="+d.String(), nil), http.StatusCreated, "")
	if r := e.do(t, "GET", "/v2/app/blobs/"+d.String(), nil); !bytes.Equal(r.body, content) {
		t.Fatal("resumed upload corrupt")
	}
}

func filesUnder(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}
