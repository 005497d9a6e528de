package registry_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestRefusalsNameWhatIsWrong: the message of every refused request names
// what was wrong — the repository, tag, digest, upload, parameter or size
// at fault — not only the category.
func TestRefusalsNameWhatIsWrong(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg, cfgSize := e.pushBlob(t, "app", []byte(`{"seed":"refusals"}`))
	missing := digest.FromString("never pushed")
	loc := e.do(t, "POST", "/v2/app/blobs/uploads/", nil).Header.Get("Location")
	upload := loc[strings.LastIndex(loc, "/")+1:]
	if i := strings.Index(upload, "?"); i >= 0 {
		upload = upload[:i]
	}
	refs := manifestJSON(t, mtManifest, cfg, cfgSize, []digest.Digest{missing}, []int64{5}, nil)

	for _, tc := range []struct {
		name, method, path string
		body               []byte
		header             []string
		status             int
		want               []string // in the message
	}{
		{"unknown blob", "GET", "/v2/app/blobs/" + missing.String(), nil, nil, 404, []string{missing.String()}},
		{"unknown tag", "GET", "/v2/app/manifests/nosuchtag", nil, nil, 404, []string{"nosuchtag"}},
		{"unknown repository", "GET", "/v2/nosuch/tags/list", nil, nil, 404, []string{"nosuch"}},
		{"invalid digest", "GET", "/v2/app/blobs/sha256:xyz", nil, nil, 400, []string{"sha256:xyz"}},
		{"invalid repository name", "GET", "/v2/App/manifests/latest", nil, nil, 400, []string{"App"}},
		{"invalid tag", "PUT", "/v2/app/manifests/-bad", refs, []string{"Content-Type", mtManifest}, 400, []string{"-bad"}},
		{"unknown upload", "PATCH", "/v2/app/blobs/uploads/0b0e7c0e-0000-4000-8000-000000000000", []byte("x"), nil, 404, []string{"0b0e7c0e-0000-4000-8000-000000000000"}},
		{"chunk out of order", "PATCH", "/v2/app/blobs/uploads/" + upload, []byte("abc"), []string{"Content-Range", "5-7"}, 416, []string{"5"}},
		{"digest mismatch", "POST", "/v2/app/blobs/uploads/?digest=" + missing.String(), []byte("other bytes"), nil, 400, []string{missing.String()}},
		{"bad page size", "GET", "/v2/app/tags/list?n=abc", nil, nil, 400, []string{"abc"}},
		{"unsupported method", "POST", "/v2/app/manifests/latest", nil, nil, 405, []string{"POST"}},
		{"no such endpoint", "GET", "/v2/app/unknown/thing", nil, nil, 404, []string{"unknown/thing"}},
		{"manifest not JSON", "PUT", "/v2/app/manifests/v1", []byte("{not json"), []string{"Content-Type", mtManifest}, 400, []string{"manifest"}},
		{"manifest of unknown content", "PUT", "/v2/app/manifests/v1", refs, []string{"Content-Type", mtManifest}, 400, []string{missing.String()}},
		{"manifest digest mismatch", "PUT", "/v2/app/manifests/" + missing.String(), refs, []string{"Content-Type", mtManifest}, 400, []string{missing.String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, tc.method, tc.path, tc.body, tc.header...)
			var b struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			_ = json.Unmarshal(r.body, &b)
			if r.StatusCode != tc.status || len(b.Errors) != 1 {
				t.Fatalf("%s %s: %d %s, want %d with one error", tc.method, tc.path, r.StatusCode, r.body, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(b.Errors[0].Message, w) {
					t.Errorf("%s %s: message %q does not name %q", tc.method, tc.path, b.Errors[0].Message, w)
				}
			}
		})
	}
}
