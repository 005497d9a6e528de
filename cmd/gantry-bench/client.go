package main

import (
	"net/http"
	"strings"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/remote"
)

// authTransport adds credentials to registry requests with gantry's one
// registry client (internal/remote: go-containerregistry's handshake, HTTP
// Basic or a Docker token for the request's repository, cached and
// refreshed on 401). Requests without credentials, or outside a
// repository, go straight to the base transport.
type authTransport struct {
	base http.RoundTripper
	rc   *remote.Client
	cred remote.Credential
}

func newAuthTransport(base http.RoundTripper, username, password string) *authTransport {
	return &authTransport{base: base, rc: remote.New(remote.WithBaseTransport(base)),
		cred: remote.Credential{Username: username, Password: password}}
}

func (t *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	repo := repository(r.URL.Path)
	if t.cred == (remote.Credential{}) || repo == "" {
		return t.base.RoundTrip(r)
	}
	rt, err := t.rc.Repository(r.URL.Scheme, r.URL.Host, repo, t.cred, egress.Local, "pull", "push").
		Transport(r.Context(), remote.Policy{Attempts: 1})
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	return rt.RoundTrip(r)
}

// repository is the repository a Distribution API path names ("" for
// /v2/ itself and the catalog).
func repository(path string) string {
	p, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	for _, sep := range []string{"/blobs/", "/manifests/", "/tags/", "/referrers/"} {
		if i := strings.Index(p, sep); i > 0 {
			return p[:i]
		}
	}
	return ""
}
