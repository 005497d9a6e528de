package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/store"
)

func TestParseRoute(t *testing.T) {
	t.Parallel()
	d := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		path string
		want route
		err  error
	}{
		{"/v2/", route{kind: kindBase}, nil},
		{"/v2", route{kind: kindBase}, nil},
		{"/v2/_catalog", route{kind: kindCatalog}, nil},
		{"/v2/app/tags/list", route{kindTags, "app", ""}, nil},
		{"/v2/a/b/c/manifests/latest", route{kindManifest, "a/b/c", "latest"}, nil},
		{"/v2/app/manifests/" + d, route{kindManifest, "app", d}, nil},
		{"/v2/app/blobs/" + d, route{kindBlob, "app", d}, nil},
		{"/v2/app/blobs/uploads/", route{kindUploadStart, "app", ""}, nil},
		{"/v2/app/blobs/uploads", route{kindUploadStart, "app", ""}, nil},
		{"/v2/app/blobs/uploads/abc", route{kindUpload, "app", "abc"}, nil},
		{"/v2/app/referrers/" + d, route{kindReferrers, "app", d}, nil},
		// Names that contain endpoint words are still unambiguous.
		{"/v2/blobs/manifests/tags", route{kindManifest, "blobs", "tags"}, nil},
		{"/v2/manifests/blobs/uploads/", route{kindUploadStart, "manifests", ""}, nil},
		{"/v2/x/blobs/uploads/blobs/" + d, route{kindBlob, "x/blobs/uploads", d}, nil},
		{"/v2/tags/list/tags/list", route{kindTags, "tags/list", ""}, nil},
		{"/", route{}, errNoRoute},
		{"/v3/app/tags/list", route{}, errNoRoute},
		{"/v2/app", route{}, errNoRoute},
		{"/v2/app/manifests/", route{}, errNoRoute},
		{"/v2/app/other/x", route{}, errNoRoute},
		{"/v2/../manifests/x", route{}, store.ErrNameInvalid},
		{"/v2/a/../b/manifests/x", route{}, store.ErrNameInvalid},
		{"/v2/a/./b/manifests/x", route{}, store.ErrNameInvalid},
		{"/v2//a/manifests/x", route{}, store.ErrNameInvalid},
		{"/v2/A/manifests/x", route{}, store.ErrNameInvalid},
		{"/v2/a%2Fb/manifests/x", route{}, store.ErrNameInvalid},
		{"/v2/manifests/x", route{}, errNoRoute},
	}
	for _, tt := range tests {
		got, err := parseRoute(tt.path)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%s: err %v, want %v", tt.path, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %+v %v, want %+v", tt.path, got, err, tt.want)
		}
	}
}

// FuzzParseRoute checks that the router never panics, fails only with its
// two errors, and that every repository it accepts is a valid name that
// cannot climb out of a directory.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"/v2/", "/v2/_catalog", "/v2/a/b/tags/list", "/v2/app/manifests/latest",
		"/v2/app/blobs/sha256:" + strings.Repeat("0", 64), "/v2/app/blobs/uploads/",
		"/v2/app/blobs/uploads/3f1b7c2e-0000-4000-8000-000000000000", "/v2/app/referrers/sha512:00",
		"/v2/../etc/manifests/x", "/v2/a%2F..%2Fb/blobs/uploads/", "/v2//blobs/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt, err := parseRoute(path)
		if err != nil {
			if !errors.Is(err, errNoRoute) && !errors.Is(err, store.ErrNameInvalid) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		switch rt.kind {
		case kindBase, kindCatalog:
			if rt.repo != "" || rt.ref != "" {
				t.Fatalf("%q: %+v", path, rt)
			}
			return
		case kindManifest, kindBlob, kindUpload, kindReferrers:
			if rt.ref == "" || strings.Contains(rt.ref, "/") {
				t.Fatalf("%q: reference %q", path, rt.ref)
			}
		}
		if err := store.ValidRepository(rt.repo); err != nil {
			t.Fatalf("%q: accepted repository %q", path, rt.repo)
		}
		for _, seg := range strings.Split(rt.repo, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "%\\") {
				t.Fatalf("%q: unsafe repository %q", path, rt.repo)
			}
		}
		if !strings.HasPrefix(path, "/v2/"+rt.repo+"/") {
			t.Fatalf("%q: repository %q is not the path's prefix", path, rt.repo)
		}
	})
}

func TestRoutePattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path, pattern, repo string
		ok                  bool
	}{
		{"/v2/", "/v2/", "", true},
		{"/v2/_catalog", "/v2/_catalog", "", true},
		{"/v2/a/b/tags/list", "/v2/{name}/tags/list", "a/b", true},
		{"/v2/app/manifests/latest", "/v2/{name}/manifests/{reference}", "app", true},
		{"/v2/app/blobs/sha256:" + strings.Repeat("a", 64), "/v2/{name}/blobs/{digest}", "app", true},
		{"/v2/app/blobs/uploads/", "/v2/{name}/blobs/uploads/", "app", true},
		{"/v2/app/blobs/uploads/0f9e", "/v2/{name}/blobs/uploads/{uuid}", "app", true},
		{"/v2/app/referrers/sha256:" + strings.Repeat("b", 64), "/v2/{name}/referrers/{digest}", "app", true},
		{"/v2/app/nothing/x", "", "", false},
		{"/oauth2/token", "", "", false},
	} {
		pattern, repo, ok := Route(tc.path)
		if pattern != tc.pattern || repo != tc.repo || ok != tc.ok {
			t.Errorf("Route(%q) = %q, %q, %v; want %q, %q, %v", tc.path, pattern, repo, ok, tc.pattern, tc.repo, tc.ok)
		}
	}
}
