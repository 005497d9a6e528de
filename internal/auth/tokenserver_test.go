package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// registryServer is a stand-in for a registry listener: the token endpoint
// at TokenPath and a /v2/ handler that authorizes like the real one.
func registryServer(t *testing.T, s *Service, registry string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(TokenPath, s.TokenHandler(registry))
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		need := needOf(r)
		id, err := s.Authorize(r, registry, need)
		switch {
		case errors.Is(err, ErrUnauthenticated):
			w.Header().Set("WWW-Authenticate", s.Challenge(r, registry, need))
			http.Error(w, err.Error(), http.StatusUnauthorized)
		case errors.Is(err, ErrDenied):
			http.Error(w, err.Error(), http.StatusForbidden)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			fmt.Fprintf(w, "%s|%s|%s", id.Name, id.Kind, id.RunID)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// needOf maps a /v2/ request the way the registry handler does.
func needOf(r *http.Request) []Access {
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	switch {
	case p == "":
		return nil
	case p == "_catalog":
		return catalog
	case strings.HasSuffix(p, "/tags/list"):
		return tags(strings.TrimSuffix(p, "/tags/list"))
	}
	if i := strings.Index(p, "/manifests/"); i > 0 {
		switch r.Method {
		case http.MethodPut:
			return push(p[:i])
		case http.MethodDelete:
			return del(p[:i])
		}
		return pull(p[:i])
	}
	return nil
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// dockerClient follows the Docker token-authentication flow: try, read the
// Bearer challenge, fetch a token with Basic credentials, retry.
type dockerClient struct {
	t          *testing.T
	user, pass string
	token      string
}

func (c *dockerClient) do(method, target string) *http.Response {
	c.t.Helper()
	send := func() *http.Response {
		req, _ := http.NewRequest(method, target, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		return resp
	}
	resp := send()
	if resp.StatusCode != http.StatusUnauthorized {
		return resp
	}
	ch := resp.Header.Get("WWW-Authenticate")
	resp.Body.Close()
	if !strings.HasPrefix(ch, "Bearer ") {
		c.t.Fatalf("challenge %q", ch)
	}
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(ch, -1) {
		params[m[1]] = m[2]
	}
	q := url.Values{"service": {params["service"]}}
	if params["scope"] != "" {
		q["scope"] = strings.Fields(params["scope"])
	}
	req, _ := http.NewRequest("GET", params["realm"]+"?"+q.Encode(), nil)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	tr, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer tr.Body.Close()
	if tr.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(tr.Body)
		return &http.Response{StatusCode: tr.StatusCode, Body: io.NopCloser(strings.NewReader(string(b))), Header: tr.Header}
	}
	var body tokenResponse
	if err := json.NewDecoder(tr.Body).Decode(&body); err != nil {
		c.t.Fatal(err)
	}
	c.token = body.Token
	return send()
}

func status(t *testing.T, resp *http.Response) int {
	t.Helper()
	resp.Body.Close()
	return resp.StatusCode
}

func TestTokenEndpointEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s
	srv := registryServer(t, s, "reg1")
	host := strings.TrimPrefix(srv.URL, "http://")
	if _, err := s.EnsureAdmin(ctx, "admin-pass-123", e.dir); err != nil {
		t.Fatal(err)
	}

	// The challenge points at the token endpoint of the same host.
	resp, err := http.Get(srv.URL + "/v2/app/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := `Bearer realm="http://` + host + `/oauth2/token",service="` + host + `",scope="repository:app:pull"`
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != want {
		t.Fatalf("challenge = %d %q, want %q", resp.StatusCode, got, want)
	}

	// Admin: the whole flow, including the base check.
	admin := &dockerClient{t: t, user: "admin", pass: "admin-pass-123"}
	for _, step := range []struct{ method, path string }{
		{"GET", "/v2/"}, {"GET", "/v2/app/manifests/latest"}, {"PUT", "/v2/app/manifests/latest"},
		{"DELETE", "/v2/app/manifests/latest"}, {"GET", "/v2/_catalog"},
	} {
		if code := status(t, admin.do(step.method, srv.URL+step.path)); code != 200 {
			t.Fatalf("admin %s %s: %d", step.method, step.path, code)
		}
	}

	// A pull token asking for pull,push gets pull only (granted ∩ requested).
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "puller", ScopeMap: ScopeMapPull})
	w := tokenGet(s, "reg1", basic("puller", tok.Passwords[0].Value), nil, "repository:app:pull,push", "repository:lib/x:push", "registry:catalog:*")
	if w.Code != 200 {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"token", "access_token", "expires_in", "issued_at"} {
		if _, ok := body[k]; !ok {
			t.Fatalf("response lacks %q: %s", k, w.Body)
		}
	}
	if body["expires_in"].(float64) != 300 {
		t.Fatalf("expires_in = %v", body["expires_in"])
	}
	if _, err := time.Parse(time.RFC3339, body["issued_at"].(string)); err != nil {
		t.Fatalf("issued_at: %v", err)
	}
	if _, ok := body["refresh_token"]; ok {
		t.Fatalf("refresh token without offline_token")
	}
	c := tokenClaims(t, s, "reg1", body["token"].(string))
	if len(c.Access) != 1 || c.Access[0].Type != "repository" || c.Access[0].Name != "app" || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("granted access = %+v", c.Access)
	}
	if c.Subject != tok.ID || c.Registry != "reg1" {
		t.Fatalf("claims = %+v", c)
	}

	// Through the flow: pull works, push is refused (403).
	puller := &dockerClient{t: t, user: "puller", pass: tok.Passwords[0].Value}
	if code := status(t, puller.do("GET", srv.URL+"/v2/app/manifests/latest")); code != 200 {
		t.Fatalf("puller pull: %d", code)
	}
	if code := status(t, puller.do("PUT", srv.URL+"/v2/app/manifests/latest")); code != 403 {
		t.Fatalf("puller push: %d", code)
	}
	if code := status(t, puller.do("GET", srv.URL+"/v2/_catalog")); code != 403 {
		t.Fatalf("puller catalog: %d", code)
	}
	// Wrong password: the token endpoint answers 401.
	bad := &dockerClient{t: t, user: "puller", pass: "nope"}
	if code := status(t, bad.do("GET", srv.URL+"/v2/app/manifests/latest")); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}

	// Expiry: the bearer token dies after its lifetime.
	tokStr := fetchToken(t, s, "reg1", basic("puller", tok.Passwords[0].Value), "repository:app:pull")
	check := func(step, tok string, want outcome) {
		t.Helper()
		r := request("GET", "/v2/app/manifests/latest")
		bearer(tok)(r)
		_, err := s.Authorize(r, "reg1", pull("app"))
		if got := classify(err); got != want {
			t.Fatalf("%s: %s (%v), want %s", step, got, err, want)
		}
	}
	check("fresh token", tokStr, allow)
	e.clock.Advance(299 * time.Second)
	check("token before expiry", tokStr, allow)
	e.clock.Advance(2 * time.Second)
	check("expired token", tokStr, unauth)

	// Tampered, foreign and refresh tokens are not access tokens for reg1.
	tokStr = fetchToken(t, s, "reg1", basic("puller", tok.Passwords[0].Value), "repository:app:pull")
	parts := strings.Split(tokStr, ".")
	check("tampered signature", parts[0]+"."+parts[1]+"."+strings.Repeat("A", len(parts[2])), unauth)
	check("garbage", "not-a-token", unauth)
	r := request("GET", "/v2/")
	bearer(tokStr)(r)
	if _, err := s.Authorize(r, "reg2", pull("app")); classify(err) != unauth {
		t.Fatalf("reg1 token on reg2: %v", err)
	}
	// Disabling the token kills its bearer tokens at once.
	disabled := TokenDisabled
	if _, err := s.UpdateToken(ctx, "reg1", "puller", TokenUpdate{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	check("token disabled", tokStr, unauth)
}

func TestTokenEndpointOAuth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s
	srv := registryServer(t, s, "reg1")
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "pusher", ScopeMap: ScopeMapPush})

	post := func(form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := http.PostForm(srv.URL+TokenPath, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	code, body := post(url.Values{"grant_type": {"password"}, "username": {"pusher"}, "password": {tok.Passwords[1].Value},
		"service": {"x"}, "scope": {"repository:app:pull,push repository:app:delete"}, "access_type": {"offline"}, "client_id": {"docker"}})
	if code != 200 {
		t.Fatalf("password grant: %d %v", code, body)
	}
	if body["scope"] != "repository:app:pull,push" || body["access_token"] == "" || body["refresh_token"] == nil {
		t.Fatalf("password grant body = %v", body)
	}
	refresh := body["refresh_token"].(string)

	code, body = post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "service": {"x"}, "scope": {"repository:app:pull"}})
	if code != 200 || body["scope"] != "repository:app:pull" || body["refresh_token"] != refresh {
		t.Fatalf("refresh grant: %d %v", code, body)
	}
	r := request("GET", "/v2/")
	bearer(body["access_token"].(string))(r)
	id, err := s.Authorize(r, "reg1", pull("app"))
	if err != nil || id.Name != "pusher" || id.Kind != KindToken || id.Principal != tok.ID {
		t.Fatalf("refreshed token: %+v %v", id, err)
	}

	// A refresh token is not an access token, and an access token is not a
	// refresh token.
	r = request("GET", "/v2/")
	bearer(refresh)(r)
	if _, err := s.Authorize(r, "reg1", pull("app")); classify(err) != unauth {
		t.Fatalf("refresh token as access token: %v", err)
	}
	if code, _ := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["access_token"].(string)}}); code != 401 {
		t.Fatalf("access token as refresh token: %d", code)
	}

	// GET with offline_token=true also returns a refresh token (docker login).
	w := tokenGet(s, "reg1", basic("pusher", tok.Passwords[0].Value), url.Values{"offline_token": {"true"}, "client_id": {"docker"}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"refresh_token"`) {
		t.Fatalf("offline GET: %d %s", w.Code, w.Body)
	}

	// Regenerating password2 revokes refresh tokens issued with it.
	if _, err := s.GeneratePassword(ctx, "reg1", "pusher", Password2, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if code, body := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); code != 401 {
		t.Fatalf("refresh after regeneration: %d %v", code, body)
	}

	// Protocol errors.
	for _, tc := range []struct {
		name string
		form url.Values
		want int
	}{
		{"bad grant", url.Values{"grant_type": {"client_credentials"}}, 400},
		{"wrong password", url.Values{"grant_type": {"password"}, "username": {"pusher"}, "password": {"x"}}, 401},
		{"malformed scope", url.Values{"grant_type": {"password"}, "username": {"pusher"}, "password": {tok.Passwords[0].Value}, "scope": {"repository"}}, 400},
	} {
		if code, body := post(tc.form); code != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, code, body, tc.want)
		}
	}
	req, _ := http.NewRequest("DELETE", srv.URL+TokenPath, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if status(t, resp) != 405 {
		t.Fatalf("DELETE token endpoint: %d", resp.StatusCode)
	}
}

func TestParseScopes(t *testing.T) {
	t.Parallel()
	got, err := parseScopes([]string{"repository:a/b:pull", "repository:a/b:push repository:c:pull,delete", "registry:catalog:*", "repository(plugin):p:pull"})
	if err != nil {
		t.Fatal(err)
	}
	want := "repository:a/b:pull,push repository:c:pull,delete registry:catalog:* repository:p:pull"
	if s := strings.Join(formatClaims(got), " "); s != want {
		t.Fatalf("parseScopes = %q, want %q", s, want)
	}
	for _, bad := range []string{"repository", "repository:x", ":x:pull"} {
		if _, err := parseScopes([]string{bad}); err == nil {
			t.Errorf("parseScopes(%q) succeeded", bad)
		}
	}
}

// TestEndpointFromConfiguration checks that the challenge's realm and
// service come from the listener's configured endpoint, never from the
// request's Host header, and that the token endpoint refuses to issue a
// token for another registry's service.
func TestEndpointFromConfiguration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.s
	if _, err := s.EnsureAdmin(context.Background(), "admin-pass-123", e.dir); err != nil {
		t.Fatal(err)
	}
	ep := Endpoint{URL: "https://contoso.gantry.test:8443", Service: "contoso.gantry.test:8443",
		Services: []string{"contoso.gantry.test:8443", "127.0.0.1:5001"}}
	mux := http.NewServeMux()
	mux.Handle(TokenPath, s.TokenHandler("reg1"))
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", s.Challenge(r, "reg1", []Access{{Type: TypeRepository, Name: "app", Actions: []string{ActionPull}}}))
		w.WriteHeader(http.StatusUnauthorized)
	})
	srv := httptest.NewServer(WithEndpoint(mux, ep))
	t.Cleanup(srv.Close)

	req, _ := http.NewRequest("GET", srv.URL+"/v2/app/manifests/1", nil)
	req.Host = "attacker.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := `Bearer realm="https://contoso.gantry.test:8443/oauth2/token",service="contoso.gantry.test:8443",scope="repository:app:pull"`
	if got := resp.Header.Get("WWW-Authenticate"); got != want {
		t.Errorf("challenge with Host attacker.example = %q, want %q", got, want)
	}

	for _, tt := range []struct {
		service string
		status  int
	}{
		{"contoso.gantry.test:8443", http.StatusOK},
		{"CONTOSO.gantry.test:8443", http.StatusOK},
		{"127.0.0.1:5001", http.StatusOK},
		{"", http.StatusOK}, // the listener's own service
		{"fabrikam.gantry.test:8443", http.StatusBadRequest},
		{"attacker.example", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest("GET", srv.URL+TokenPath+"?scope=repository:app:pull&service="+tt.service, nil)
		req.SetBasicAuth("admin", "admin-pass-123")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("token for service %q: %d %s, want %d", tt.service, resp.StatusCode, body, tt.status)
		}
		if tt.status == http.StatusBadRequest && !strings.Contains(string(body), "is not this registry") {
			t.Errorf("token for service %q: %s, want the refusal explained", tt.service, body)
		}
	}
}
