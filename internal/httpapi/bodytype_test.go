package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/httpapi"
	"github.com/gantryhq/gantry/internal/testenv/stack"
)

// TestBodyType: a state-changing request with a body must be
// application/json (415 naming the type otherwise, before anything
// changes); bodiless requests need no type; 401s never challenge for
// Basic.
func TestBodyType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newServices(t, "admin-password")
	srv := httptest.NewServer(httpapi.New(svc.Store, svc.Auth, svc.Vault, stack.NoRegistries{}))
	t.Cleanup(srv.Close)
	send := func(method, path, contentType, body string, authed bool) (int, http.Header, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, rd)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if authed {
			req.SetBasicAuth(auth.AdminUsername, "admin-password")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}

	for _, ct := range []string{"text/plain", "", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"} {
		status, _, body := send("POST", "/v1/keyvaults", ct, `{"name":"csrf-kv"}`, true)
		var eb api.ErrorBody
		if status != http.StatusUnsupportedMediaType || json.Unmarshal(body, &eb) != nil || eb.Error == nil ||
			eb.Error.Code != api.CodeInvalid || eb.Error.Field != "Content-Type" || !strings.Contains(eb.Error.Message, "application/json") {
			t.Errorf("POST /v1/keyvaults as %q: %d %s, want 415 naming application/json", ct, status, body)
		}
	}
	// Also unauthenticated: nothing reveals more than the type.
	if status, _, body := send("PUT", "/v1/keyvaults/kv/secrets/s", "text/plain", `{"value":"x"}`, false); status != http.StatusUnsupportedMediaType {
		t.Errorf("anonymous text/plain PUT: %d %s", status, body)
	}
	c, err := client.New(srv.URL, client.WithBasicAuth(auth.AdminUsername, "admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	if vaults, err := c.ListKeyVaults(ctx); err != nil || len(vaults) != 0 {
		t.Fatalf("refused requests created vaults: %+v %v", vaults, err)
	}

	// JSON with parameters is fine; so is a bodiless DELETE.
	if status, _, body := send("POST", "/v1/keyvaults", "Application/JSON; charset=utf-8", `{"name":"kv1"}`, true); status != http.StatusCreated {
		t.Fatalf("JSON with charset: %d %s", status, body)
	}
	if status, _, body := send("DELETE", "/v1/keyvaults/kv1", "", "", true); status != http.StatusNoContent {
		t.Fatalf("bodiless DELETE: %d %s", status, body)
	}
	// Unknown routes stay 404.
	if status, _, _ := send("POST", "/v1/nothing-here", "text/plain", "x", true); status != http.StatusNotFound {
		t.Errorf("unknown route: %d", status)
	}

	// 401: a JSON error and a challenge browsers do not prompt for.
	status, h, _ := send("GET", "/v1/keyvaults", "", "", false)
	if c := h.Get("WWW-Authenticate"); status != http.StatusUnauthorized || c == "" || strings.HasPrefix(strings.ToLower(c), "basic") {
		t.Errorf("401: %d, challenge %q", status, c)
	}
}
