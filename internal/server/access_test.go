package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

// bearerToken asks reg's token endpoint for a token with Basic credentials;
// offline asks for a refresh token too.
func bearerToken(t *testing.T, reg, user, pass string, offline bool, scopes ...string) (token, refresh string, resp response) {
	t.Helper()
	q := url.Values{"service": {reg}, "scope": scopes}
	if offline {
		q.Set("offline_token", "true")
	}
	req := newRequest(t, "GET", "http://"+reg+"/oauth2/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, pass)
	resp = do(t, httpFrom(freshSource()), req)
	var body struct {
		Token        string `json:"token"`
		ExpiresIn    int    `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	if resp.status == http.StatusOK {
		if err := json.Unmarshal(resp.body, &body); err != nil || body.Token == "" {
			t.Fatalf("token endpoint: %s", resp)
		}
		if body.ExpiresIn <= 0 || body.ExpiresIn > 3600 {
			t.Errorf("token lifetime %ds, want short-lived", body.ExpiresIn)
		}
	}
	return body.Token, body.RefreshToken, resp
}

// TestTokenEndpointGrantsIntersection checks that the token endpoint hands
// out the requested scopes the caller holds, and nothing else: never the
// catalog to a token, never another repository's rights.
func TestTokenEndpointGrantsIntersection(t *testing.T) {
	t.Parallel()
	w := newWorld(t, serverOptions{})
	post := func(subject string, scopes ...string) string {
		c := w.creds[subject]
		form := url.Values{"grant_type": {"password"}, "username": {c.user}, "password": {c.pass}, "service": {w.reg1}, "scope": {strings.Join(scopes, " ")}}
		req := newRequest(t, "POST", "http://"+w.reg1+"/oauth2/token", []byte(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r := do(t, httpFrom(freshSource()), req)
		var body struct {
			Scope string `json:"scope"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &body) != nil {
			t.Fatalf("%s: token endpoint: %s", subject, r)
		}
		return body.Scope
	}
	all := []string{"repository:app:pull,push,delete", "repository:samples/web:pull,push,delete", "registry:catalog:*", "repository:../etc:pull"}
	for _, tc := range []struct{ subject, want string }{
		{sAdmin, "repository:app:pull,push,delete repository:samples/web:pull,push,delete registry:catalog:*"},
		{sPullMap, "repository:app:pull repository:samples/web:pull"},
		{sPushMap, "repository:app:pull,push repository:samples/web:pull,push"},
		{sAdminMap, "repository:app:pull,push,delete repository:samples/web:pull,push,delete"},
		{sRepoToken, "repository:app:pull"},
		{sWildcard, "repository:samples/web:pull,push"},
		{sRunOwn, "repository:app:pull,push,delete repository:samples/web:pull,push,delete registry:catalog:*"},
		{sRunPull, "repository:app:pull repository:samples/web:pull registry:catalog:*"},
		{sRunNoRoles, ""},
	} {
		if got := post(tc.subject, all...); got != tc.want {
			t.Errorf("%s: granted %q, want %q", tc.subject, got, tc.want)
		}
	}
}

// TestRevocationAppliesAtOnce checks that taking rights away works on the
// next request, also for bearer and refresh tokens issued before: a scope
// map losing an action, a regenerated password, a disabled or deleted
// token, a removed role assignment.
func TestRevocationAppliesAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, serverOptions{})
	adm := w.srv.admin()
	send := func(method, path, bearer, user, pass string) int {
		t.Helper()
		req := newRequest(t, method, "http://"+w.reg1+path, nil)
		req.Header.Set("Accept", mtManifest)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		} else {
			req.SetBasicAuth(user, pass)
		}
		return do(t, httpFrom(freshSource()), req).status
	}
	expect := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %d, want %d", what, got, want)
		}
	}
	wild := w.creds[sWildcard]
	tok, refresh, r := bearerToken(t, w.reg1, wild.user, wild.pass, true, "repository:samples/web:pull,push")
	if tok == "" || refresh == "" {
		t.Fatalf("token endpoint: %s", r)
	}
	expect("push with the bearer token", send("POST", "/v2/samples/web/blobs/uploads/", tok, "", ""), 202)

	// The scope map loses content/write: the token issued before loses it.
	if _, err := adm.UpdateScopeMap(ctx, "reg1", "wild-token-scope-map", api.UpdateScopeMapRequest{
		Remove: []api.RepositoryActions{{Repository: "samples/*", Actions: []string{"content/write"}}}}); err != nil {
		t.Fatal(err)
	}
	expect("push after the scope map lost content/write", send("POST", "/v2/samples/web/blobs/uploads/", tok, "", ""), 403)
	expect("pull after the scope map lost content/write", send("GET", "/v2/samples/web/manifests/v1", tok, "", ""), 200)

	// A regenerated password: the old one and the tokens issued with it
	// stop working, refresh tokens included.
	regen, err := adm.GenerateCredential(ctx, "reg1", "wild-token", api.GenerateCredentialRequest{Password1: true})
	if err != nil {
		t.Fatal(err)
	}
	expect("bearer token of the replaced password", send("GET", "/v2/samples/web/manifests/v1", tok, "", ""), 401)
	expect("Basic with the replaced password", send("GET", "/v2/samples/web/manifests/v1", "", wild.user, wild.pass), 401)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "service": {w.reg1}, "scope": {"repository:samples/web:pull"}}
	rreq := newRequest(t, "POST", "http://"+w.reg1+"/oauth2/token", []byte(form.Encode()))
	rreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	expect("refresh token of the replaced password", do(t, httpFrom(freshSource()), rreq).status, 401)
	newPass := ""
	for _, p := range regen.Credentials.Passwords {
		if p.Name == "password1" {
			newPass = p.Value
		}
	}
	expect("Basic with the new password", send("GET", "/v2/samples/web/manifests/v1", "", wild.user, newPass), 200)

	// Disabled, then enabled, then deleted.
	tok, _, _ = bearerToken(t, w.reg1, wild.user, newPass, false, "repository:samples/web:pull")
	disabled, enabled := "disabled", "enabled"
	if _, err := adm.UpdateToken(ctx, "reg1", "wild-token", api.UpdateTokenRequest{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	expect("bearer token of a disabled token", send("GET", "/v2/samples/web/manifests/v1", tok, "", ""), 401)
	expect("Basic of a disabled token", send("GET", "/v2/samples/web/manifests/v1", "", wild.user, newPass), 401)
	if _, err := w.srv.client(client.WithBasicAuth("reg1/wild-token", newPass)).Whoami(ctx); err == nil {
		t.Errorf("a disabled token logs in to the control API")
	}
	if _, err := adm.UpdateToken(ctx, "reg1", "wild-token", api.UpdateTokenRequest{Status: &enabled}); err != nil {
		t.Fatal(err)
	}
	expect("bearer token of a re-enabled token", send("GET", "/v2/samples/web/manifests/v1", tok, "", ""), 200)
	if err := adm.DeleteToken(ctx, "reg1", "wild-token"); err != nil {
		t.Fatal(err)
	}
	expect("bearer token of a deleted token", send("GET", "/v2/samples/web/manifests/v1", tok, "", ""), 401)
	expect("Basic of a deleted token", send("GET", "/v2/samples/web/manifests/v1", "", wild.user, newPass), 401)

	// A run's identity loses its role.
	run := w.creds[sRunPull]
	expect("run with acrpull", send("GET", "/v2/app/manifests/v1", "", run.user, run.pass), 200)
	if _, err := adm.DeleteRoleAssignments(ctx, client.RoleFilter{Assignee: w.identities[sRunPull]}); err != nil {
		t.Fatal(err)
	}
	expect("run after its role was removed", send("GET", "/v2/app/manifests/v1", "", run.user, run.pass), 403)
}

// TestAdminFirstStart checks the admin account of a server started without
// GANTRY_ADMIN_PASSWORD: a random password written once to a 0600 file in
// the data directory, whose path the server prints; it logs in, and a
// restart neither changes it nor rewrites the file.
func TestAdminFirstStart(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{adminPassword: "unused"})
	srv.stop()
	// A fresh data directory, no password given.
	srv.cfg.Data = t.TempDir()
	srv.adminPassword = ""
	srv.start()
	file := filepath.Join(srv.cfg.Data, "admin-password")
	if !strings.Contains(srv.stdout.String(), file) {
		t.Fatalf("the server did not say where the password is:\n%s", srv.stdout)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", file, fi.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pw := strings.TrimSpace(string(b))
	if len(pw) < 16 {
		t.Fatalf("admin password %q is too short", pw)
	}
	if strings.Contains(srv.log.String(), pw) || strings.Contains(srv.stdout.String(), pw) {
		t.Errorf("the admin password is printed")
	}
	whoami := func(pass string) error {
		_, err := srv.client(client.WithBasicAuth("admin", pass)).Whoami(context.Background())
		return err
	}
	if err := whoami(pw); err != nil {
		t.Fatalf("admin login with the password from the file: %v", err)
	}
	if err := whoami("unused"); err == nil {
		t.Fatalf("admin login with another password succeeded")
	}
	srv.restart()
	if err := whoami(pw); err != nil {
		t.Fatalf("admin login after a restart: %v", err)
	}
	fi2, err := os.Stat(file)
	if err != nil || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Errorf("the password file was rewritten on restart")
	}
}
