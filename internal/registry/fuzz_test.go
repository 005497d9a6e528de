package registry_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// FuzzHandler drives the whole handler with arbitrary methods, paths and
// bodies: it must never fail with a 5xx, and every error carries an OCI
// error body.
func FuzzHandler(f *testing.F) {
	e := newEnv(f)
	d := digest.FromString("x").String()
	for _, s := range []struct{ method, path, body string }{
		{"GET", "/v2/", ""},
		{"PUT", "/v2/app/manifests/v1", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`},
		{"PUT", "/v2/app/manifests/v1", `{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + d + `","size":1},"layers":[]}`},
		{"POST", "/v2/app/blobs/uploads/?digest=" + d, "x"},
		{"POST", "/v2/app/blobs/uploads/?mount=" + d + "&from=other", ""},
		{"PATCH", "/v2/app/blobs/uploads/3f1b7c2e-0000-4000-8000-000000000000", "abc"},
		{"GET", "/v2/app/tags/list?n=1&last=a", ""},
		{"GET", "/v2/app/referrers/" + d + "?artifactType=x", ""},
		{"DELETE", "/v2/app/manifests/v1", ""},
		{"GET", "/v2/_catalog?n=x", ""},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	methods := map[string]bool{"GET": true, "HEAD": true, "PUT": true, "POST": true, "PATCH": true, "DELETE": true}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if !methods[method] || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n#") {
			return
		}
		req, err := http.NewRequest(method, "http://registry"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && method != "HEAD" && rec.Code != http.StatusRequestedRangeNotSatisfiable {
			var b struct {
				Errors []struct{ Code string } `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Errors) == 0 || b.Errors[0].Code == "" {
				t.Fatalf("%s %s: %d without an OCI error body: %q", method, path, rec.Code, rec.Body)
			}
		}
	})
}
