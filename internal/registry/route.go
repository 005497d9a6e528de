package registry

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/store"
)

// kind is the endpoint a request path names.
type kind int

const (
	kindBase        kind = iota // /v2/
	kindCatalog                 // /v2/_catalog
	kindTags                    // /v2/<name>/tags/list
	kindManifest                // /v2/<name>/manifests/<reference>
	kindBlob                    // /v2/<name>/blobs/<digest>
	kindUploadStart             // /v2/<name>/blobs/uploads/
	kindUpload                  // /v2/<name>/blobs/uploads/<id>
	kindReferrers               // /v2/<name>/referrers/<digest>
)

// route is a parsed request path.
type route struct {
	kind kind
	// repo is the repository name (empty for base and catalog).
	repo string
	// ref is the manifest reference, blob digest, upload id or subject.
	ref string
}

// errNoRoute answers paths that name no endpoint.
var errNoRoute = errors.New("no such endpoint")

// parseRoute maps a request path (as sent, not decoded: no legitimate
// name, reference or upload id contains an escape) to an endpoint. Repository names contain
// slashes, so endpoints are recognised by their suffix (the name grammar
// keeps the result unambiguous), and the name is validated: "..", "." and
// empty segments never pass. Errors wrap errNoRoute or store.ErrNameInvalid.
func parseRoute(path string) (route, error) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return route{kind: kindBase}, nil
		}
		return route{}, fmt.Errorf("%q: %w", path, errNoRoute)
	}
	switch rest {
	case "":
		return route{kind: kindBase}, nil
	case "_catalog":
		return route{kind: kindCatalog}, nil
	}
	var rt route
	switch {
	case strings.HasSuffix(rest, "/tags/list"):
		rt = route{kind: kindTags, repo: strings.TrimSuffix(rest, "/tags/list")}
	case strings.HasSuffix(rest, "/blobs/uploads/"):
		rt = route{kind: kindUploadStart, repo: strings.TrimSuffix(rest, "/blobs/uploads/")}
	case strings.HasSuffix(rest, "/blobs/uploads"):
		rt = route{kind: kindUploadStart, repo: strings.TrimSuffix(rest, "/blobs/uploads")}
	default:
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			return route{}, fmt.Errorf("%q: %w", path, errNoRoute)
		}
		head, last := rest[:i], rest[i+1:]
		if last == "" {
			return route{}, fmt.Errorf("%q: %w", path, errNoRoute)
		}
		var k kind
		var suffix string
		switch {
		case strings.HasSuffix(head, "/blobs/uploads"):
			k, suffix = kindUpload, "/blobs/uploads"
		case strings.HasSuffix(head, "/blobs"):
			k, suffix = kindBlob, "/blobs"
		case strings.HasSuffix(head, "/manifests"):
			k, suffix = kindManifest, "/manifests"
		case strings.HasSuffix(head, "/referrers"):
			k, suffix = kindReferrers, "/referrers"
		default:
			return route{}, fmt.Errorf("%q: %w", path, errNoRoute)
		}
		rt = route{kind: k, repo: strings.TrimSuffix(head, suffix), ref: last}
	}
	if err := store.ValidRepository(rt.repo); err != nil {
		return route{}, err
	}
	return rt, nil
}

// patterns name the endpoints as a router pattern would, for metrics and
// the access log: never the raw path, so the names stay few.
var patterns = map[kind]string{
	kindBase:        "/v2/",
	kindCatalog:     "/v2/_catalog",
	kindTags:        "/v2/{name}/tags/list",
	kindManifest:    "/v2/{name}/manifests/{reference}",
	kindBlob:        "/v2/{name}/blobs/{digest}",
	kindUploadStart: "/v2/{name}/blobs/uploads/",
	kindUpload:      "/v2/{name}/blobs/uploads/{uuid}",
	kindReferrers:   "/v2/{name}/referrers/{digest}",
}

// Route names the endpoint of a Distribution API request path by its
// pattern ("/v2/{name}/blobs/{digest}") and the repository it addresses
// ("" for the base and the catalog); ok is false for a path that names no
// endpoint.
func Route(path string) (pattern, repo string, ok bool) {
	rt, err := parseRoute(path)
	if err != nil {
		return "", "", false
	}
	return patterns[rt.kind], rt.repo, true
}
