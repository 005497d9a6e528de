package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/api"
)

// TestControlAPIRefusesCrossSiteBodies (issue 12, S9): a browser led by
// another site can send POSTs with text/plain, form or multipart bodies
// and no preflight. The control API answers such state changes 415 with a
// JSON error naming the type it takes, before anything is written; its
// 401s carry no Basic challenge (which would make a browser prompt for,
// then keep sending, a password). The registries keep their Bearer
// challenges, which Docker needs, and the gantry command line still works.
// Not parallel: the command line reads its credentials from the
// environment.
func TestControlAPIRefusesCrossSiteBodies(t *testing.T) {
	srv, _ := startEngineServer(t, serverOptions{})
	reg := srv.createRegistry("reg1", false)
	state := newStateReader(t, srv.cfg.Data)
	before := state.read(t)
	admin := httpFrom(freshSource())

	send := func(method, path, contentType, body string) response {
		t.Helper()
		req := newRequest(t, method, srv.url(path), []byte(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		req.SetBasicAuth("admin", srv.adminPassword)
		return do(t, admin, req)
	}
	check415 := func(label string, r response, want string) {
		t.Helper()
		var eb api.ErrorBody
		if r.status != http.StatusUnsupportedMediaType || json.Unmarshal(r.body, &eb) != nil || eb.Error == nil ||
			eb.Error.Field != "Content-Type" || !strings.Contains(eb.Error.Message, want) {
			t.Errorf("%s: %s, want 415 naming %s", label, r, want)
		}
	}
	for _, ct := range []string{"text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		check415("POST /v1/keyvaults as "+ct, send("POST", "/v1/keyvaults", ct, `{"name":"x"}`), "application/json")
	}
	check415("POST /v1/registries as text/plain", send("POST", "/v1/registries", "text/plain", `{"name":"evil"}`), "application/json")
	check415("PUT a secret as text/plain", send("PUT", "/v1/keyvaults/kv/secrets/s", "text/plain", `{"value":"x"}`), "application/json")
	check415("POST a token as a form", send("POST", "/v1/registries/reg1/tokens", "application/x-www-form-urlencoded", `name=t&scopeMap=_repositories_admin`),
		"application/json")
	check415("a quick run as JSON", send("POST", "/v1/registries/reg1/runs", "application/json", `{}`), "multipart/form-data")
	if d := before.diff(state.read(t)); d != "" {
		t.Errorf("refused requests changed the persisted state: %s", d)
	}

	// 401 on the control API: no Basic challenge, with or without wrong
	// credentials; the registry still challenges Docker clients.
	for _, user := range []string{"", "admin"} {
		req := newRequest(t, "GET", srv.url("/v1/keyvaults"), nil)
		if user != "" {
			req.SetBasicAuth(user, "wrong-password")
		}
		r := do(t, httpFrom(freshSource()), req)
		c := r.header.Get("WWW-Authenticate")
		if r.status != http.StatusUnauthorized || strings.Contains(strings.ToLower(c), "basic") {
			t.Errorf("401 of the control API (user %q): %s, challenge %q", user, r, c)
		}
	}
	r := do(t, httpFrom(freshSource()), newRequest(t, "GET", "http://"+reg+"/v2/", nil))
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer realm=") {
		t.Errorf("the registry's 401: %s, challenge %q; want a Bearer challenge", r, r.header.Get("WWW-Authenticate"))
	}

	// A JSON body with a charset passes.
	if r := send("POST", "/v1/keyvaults", "application/json; charset=utf-8", `{"name":"kv-json"}`); r.status != http.StatusCreated {
		t.Errorf("JSON with a charset: %s", r)
	}

	// The gantry command line, which declares the type of every body,
	// still creates, updates and deletes: JSON bodies, bodiless DELETEs, a
	// streamed import and multipart quick runs.
	cliAsAdmin(t, srv)
	g := func(args ...string) string {
		t.Helper()
		return gantryOK(t, args...)
	}

	g("keyvault", "create", "-n", "kv-cli")
	g("keyvault", "secret", "set", "--vault-name", "kv-cli", "-n", "s1", "--value", "cli-s3cret-value")
	if out := g("keyvault", "secret", "show", "--vault-name", "kv-cli", "-n", "s1", "--query", "value", "-o", "tsv"); out != "cli-s3cret-value" {
		t.Errorf("secret show: %q", out)
	}
	g("keyvault", "secret", "delete", "--vault-name", "kv-cli", "-n", "s1")
	g("keyvault", "delete", "-n", "kv-cli")
	g("scope-map", "create", "-r", "reg1", "-n", "cli-map", "--repository", "app", "content/read")
	g("token", "create", "-r", "reg1", "-n", "cli-token", "--scope-map", "cli-map")
	g("token", "delete", "-r", "reg1", "-n", "cli-token")
	g("registry", "create", "-n", "cli-reg")
	g("registry", "delete", "-n", "cli-reg")

	newOCIClient(t, reg, "admin", srv.adminPassword).pushImage("src", "1")
	g("import", "-r", "reg1", "--source", "gantry://reg1/src:1", "--image", "copy:1")
	g("import", "-r", "reg1", "--source", "gantry://reg1/src:1", "--image", "copy:2", "--no-progress")

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "acr-task.yaml"), []byte("version: v1.1.0\nsteps:\n  - cmd: busybox true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := g("run", "-r", "reg1", "-f", "acr-task.yaml", dir, "--no-wait", "--query", "runId", "-o", "tsv"); out == "" {
		t.Error("quick run with a context: no run ID")
	}
	if out := g("run", "-r", "reg1", "-f", filepath.Join(dir, "acr-task.yaml"), "--no-wait", "--query", "runId", "-o", "tsv"); out == "" {
		t.Error("quick run without a context: no run ID")
	}
	if tags, err := srv.admin().ListTags(context.Background(), "reg1", "copy"); err != nil || len(tags) != 2 {
		t.Errorf("tags imported by the command line: %+v, %v", tags, err)
	}
}
