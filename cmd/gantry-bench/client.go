package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// authTransport adds credentials to registry requests: HTTP Basic when the
// registry asks for it, or the Docker token flow — on a 401 with a Bearer
// challenge it fetches a token from the realm (with Basic credentials, for
// the challenge's service and scope), caches it per scope and retries.
type authTransport struct {
	base     http.RoundTripper
	username string
	password string

	mu     sync.Mutex
	basic  bool
	tokens map[string]string // scope -> bearer token
	scope  map[string]string // "METHOD repo" -> scope last challenged
}

func newAuthTransport(base http.RoundTripper, username, password string) *authTransport {
	return &authTransport{base: base, username: username, password: password,
		tokens: map[string]string{}, scope: map[string]string{}}
}

// key identifies requests that need the same token: same repository and
// same kind of access.
func key(r *http.Request) string {
	p := r.URL.Path
	if i := strings.Index(p, "/blobs/"); i >= 0 {
		p = p[:i]
	} else if i := strings.Index(p, "/manifests/"); i >= 0 {
		p = p[:i]
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	return fmt.Sprintf("%v %s", write, p)
}

func (t *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.username == "" && t.password == "" {
		return t.base.RoundTrip(r)
	}
	k := key(r)
	t.mu.Lock()
	basic := t.basic
	tok := t.tokens[t.scope[k]]
	t.mu.Unlock()
	req := r.Clone(r.Context())
	switch {
	case basic:
		req.SetBasicAuth(t.username, t.password)
	case tok != "":
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	if r.Body != nil && r.GetBody == nil {
		return resp, nil // cannot replay the body
	}
	scheme, params := parseChallenge(resp.Header.Get("WWW-Authenticate"))
	switch strings.ToLower(scheme) {
	case "basic":
		t.mu.Lock()
		t.basic = true
		t.mu.Unlock()
	case "bearer":
		tok, err := t.fetchToken(params)
		if err != nil {
			resp.Body.Close()
			return nil, err
		}
		t.mu.Lock()
		t.tokens[params["scope"]] = tok
		t.scope[k] = params["scope"]
		t.mu.Unlock()
	default:
		return resp, nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	retry := r.Clone(r.Context())
	if r.GetBody != nil {
		if retry.Body, err = r.GetBody(); err != nil {
			return nil, err
		}
	}
	return t.RoundTrip(retry)
}

func (t *authTransport) fetchToken(params map[string]string) (string, error) {
	u, err := url.Parse(params["realm"])
	if err != nil || params["realm"] == "" {
		return "", fmt.Errorf("bearer challenge without a usable realm %q", params["realm"])
	}
	q := u.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	for _, s := range strings.Fields(params["scope"]) {
		q.Add("scope", s)
	}
	u.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	req.SetBasicAuth(t.username, t.password)
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("fetching token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching token: %s", resp.Status)
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("decoding token: %w", err)
	}
	if body.Token == "" {
		body.Token = body.AccessToken
	}
	return body.Token, nil
}

// parseChallenge splits `Bearer realm="...",service="...",scope="..."`.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if strings.HasPrefix(v, `"`) {
			end := strings.Index(v[1:], `"`)
			if end < 0 {
				params[k] = v[1:]
				break
			}
			params[k], rest = v[1:end+1], v[end+2:]
		} else {
			val, r, _ := strings.Cut(v, ",")
			params[k], rest = val, r
		}
	}
	return scheme, params
}
