package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/oci"
)

// dockerHub is the credential key of Docker Hub, whatever its spelling.
const dockerHub = oci.DockerHub

// errUnreachable marks a registry that could not be contacted at all (as
// opposed to one that refused the credentials).
var errUnreachable = errors.New("registry unreachable")

// errUnauthorized marks refused credentials.
var errUnauthorized = errors.New("unauthorized")

// registryKey normalizes a login server for credential lookups:
// "https://index.docker.io/v1/" and "registry-1.docker.io" are docker.io.
func registryKey(host string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	switch h = strings.ToLower(h); h {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return dockerHub
	}
	return h
}

// engineErr marks errors of talking to the engine itself (as opposed to
// the engine reporting a failure: it is unreachable, or its API does not
// fit) with ErrEngine.
func engineErr(err error) error {
	if errors.Is(err, docker.ErrUnavailable) || errors.Is(err, docker.ErrUnsupported) {
		return fmt.Errorf("%w: %w", ErrEngine, err)
	}
	return err
}

// imageOf splits a reference into an Image (canonical form: docker.io and
// library/ for Docker Hub, :latest when neither tag nor digest is given).
func imageOf(ref string) Image {
	r, err := oci.ParseReference(ref)
	if err != nil {
		return Image{Repository: ref}
	}
	r = r.Normalize()
	return Image{Registry: r.Domain, Repository: r.Path, Tag: r.Tag, Digest: r.Digest}
}

// auth is the engine's form of a login for the server address host: the
// identity token alone when there is one.
func (c Credential) auth(host string) docker.AuthConfig {
	if c.IdentityToken != "" {
		return docker.AuthConfig{Username: c.Username, IdentityToken: c.IdentityToken, ServerAddress: host}
	}
	return docker.AuthConfig{Username: c.Username, Password: c.Password, ServerAddress: host}
}

// registryClient talks to a registry's distribution API with the Docker
// token flow: a request answered 401 with a Bearer challenge is repeated
// with a token fetched from the realm with the credential (or anonymously),
// one answered with a Basic challenge with the credential itself.
type registryClient struct {
	http *http.Client
	base string // scheme://host
	cred *Credential
}

func newRegistryClient(host string, cred *Credential) *registryClient {
	base := "https://" + host
	switch {
	case registryKey(host) == dockerHub:
		base = "https://registry-1.docker.io"
	case isLoopback(host):
		// Loopback registries are insecure registries for the engine too.
		base = "http://" + host
	}
	return &registryClient{http: &http.Client{Timeout: 30 * time.Second}, base: base, cred: cred}
}

// do sends a request, authenticating when challenged. scope is the token
// scope ("repository:x:pull") or "".
func (c *registryClient) do(ctx context.Context, method, path, scope string, hdr http.Header) (*http.Response, error) {
	send := func(auth string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errUnreachable, err)
		}
		return resp, nil
	}
	resp, err := send("")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	challenge := resp.Header.Get("WWW-Authenticate")
	drainBody(resp)
	scheme, params := parseChallenge(challenge)
	switch strings.ToLower(scheme) {
	case "basic":
		if c.cred == nil {
			return nil, fmt.Errorf("%s%s: %w: no credentials", c.base, path, errUnauthorized)
		}
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth(c.cred.Username, c.cred.Password)
		return send(req.Header.Get("Authorization"))
	case "bearer":
		token, err := c.token(ctx, params, scope)
		if err != nil {
			return nil, err
		}
		return send("Bearer " + token)
	}
	return nil, fmt.Errorf("%s%s: %w: unsupported challenge %q", c.base, path, errUnauthorized, scheme)
}

// token fetches a bearer token from the challenge's realm.
func (c *registryClient) token(ctx context.Context, params map[string]string, scope string) (string, error) {
	realm := params["realm"]
	if realm == "" {
		return "", fmt.Errorf("%w: bearer challenge without realm", errUnauthorized)
	}
	u, err := url.Parse(realm)
	if err != nil {
		return "", fmt.Errorf("%w: bad realm %q", errUnauthorized, realm)
	}
	q := u.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	var req *http.Request
	if c.cred != nil && c.cred.IdentityToken != "" {
		// OAuth2's refresh-token grant, as docker does with an identity
		// token.
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.cred.IdentityToken},
			"client_id": {"gantry"}, "service": {params["service"]}}
		if scope != "" {
			form.Set("scope", scope)
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, realm, strings.NewReader(form.Encode()))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return "", err
		}
		if c.cred != nil {
			req.SetBasicAuth(c.cred.Username, c.cred.Password)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errUnreachable, err)
	}
	defer drainBody(resp)
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return "", fmt.Errorf("%w: the registry refused the credentials (%s)", errUnauthorized, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token request: %s", resp.Status)
	}
	var t struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&t); err != nil {
		return "", fmt.Errorf("decoding token: %w", err)
	}
	if t.Token == "" {
		t.Token = t.AccessToken
	}
	return t.Token, nil
}

func drainBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// parseChallenge splits a WWW-Authenticate value: scheme and parameters.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.TrimSpace(k)
		if strings.HasPrefix(v, `"`) {
			end := strings.Index(v[1:], `"`)
			if end < 0 {
				params[k] = v[1:]
				break
			}
			params[k] = v[1 : end+1]
			rest = v[end+2:]
		} else {
			val, r, _ := strings.Cut(v, ",")
			params[k] = strings.TrimSpace(val)
			rest = r
		}
		rest = strings.TrimLeft(rest, ", ")
	}
	return scheme, params
}

// pingRegistry verifies a login the way docker login does: GET /v2/,
// authenticating when challenged.
func pingRegistry(ctx context.Context, c Credential) error {
	rc := newRegistryClient(c.Registry, &c)
	resp, err := rc.do(ctx, http.MethodGet, "/v2/", "", nil)
	if err != nil {
		return err
	}
	defer drainBody(resp)
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s", errUnauthorized, resp.Status)
	}
	return fmt.Errorf("%w: GET /v2/: %s", errUnreachable, resp.Status)
}

// manifestTypes are the manifest media types a digest HEAD accepts.
var manifestTypes = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// headDigest asks the registry for the digest of img's tag.
func headDigest(ctx context.Context, img Image, cred *Credential) (string, error) {
	rc := newRegistryClient(img.Registry, cred)
	ref := img.Tag
	if img.Digest != "" {
		return img.Digest, nil
	}
	resp, err := rc.do(ctx, http.MethodHead, "/v2/"+img.Repository+"/manifests/"+ref, "repository:"+img.Repository+":pull",
		http.Header{"Accept": {strings.Join(manifestTypes, ", ")}})
	if err != nil {
		return "", err
	}
	defer drainBody(resp)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HEAD %s: %s", img.Reference(), resp.Status)
	}
	d := resp.Header.Get("Docker-Content-Digest")
	if d == "" {
		return "", fmt.Errorf("HEAD %s: no Docker-Content-Digest", img.Reference())
	}
	return d, nil
}
