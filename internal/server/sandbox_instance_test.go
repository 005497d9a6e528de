package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestInstanceReplaceNeedsPullCredentials reproduces issue 12's finding S8
// ("Steps are a sandbox") against a real server and the real engine, and
// checks its fix.
//
// Principal A (the identity of a task of registry alpha, owner on
// /containers) runs alpha-web from the private image alpha-private:1 with a
// pull credential it stores (a pull token of alpha). Principal B (the
// identity of a task of registry beta, also owner on /containers, with no
// rights on alpha) then runs the issue's command line, replacing alpha-web
// with the same private image and a command that serves /secret.txt,
// without credentials. Before the fix the stored credential of A pulled
// the image for B and B's command ran; now B is refused, naming the flags
// to give, and alpha-web keeps running unchanged. B gets through with pull
// credentials of its own, or once it has pull access itself (acrpull on the
// repository), in which case A's credential is not kept.
//
// Not parallel: the command line reads its credentials from the
// environment.
func TestInstanceReplaceNeedsPullCredentials(t *testing.T) {
	engineHost := testenv.DockerHost(t)
	dc := dockertest.Engine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv := startServer(t, serverOptions{engine: engineHost})
	adm := srv.admin()
	alpha := srv.createRegistry("alpha", false)
	srv.createRegistry("beta", false)

	// The private image: a page and a secret the page does not show.
	secret := "alpha-secret-" + testenv.RandomHex(8)
	base := dockertest.BusyboxImage(t, dc, "")
	local := dockertest.Name(t, "alpha-private") + ":1"
	dockertest.BuildImage(t, dc, local, map[string]string{
		"Dockerfile": "FROM " + base + "\nCOPY secret.txt /secret.txt\nCOPY index.html /www/index.html\n" +
			`CMD ["sh", "-c", "exec httpd -f -p \"${PORT:-80}\" -h /www"]` + "\n",
		"secret.txt": secret + "\n",
		"index.html": "hello from alpha\n",
	})
	image := alpha + "/alpha-private:1"
	if err := dc.TagImage(ctx, local, image); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(t, dc, image)
	if _, err := dc.PushImage(ctx, image, &docker.AuthConfig{Username: "admin", Password: srv.adminPassword, ServerAddress: alpha}, nil); err != nil {
		t.Fatal(err)
	}

	// A's pull token on alpha, and one B obtained legitimately.
	token := func(name string, req api.CreateTokenRequest) string {
		t.Helper()
		req.Name = name
		tok, err := adm.CreateToken(ctx, "alpha", req)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Credentials.Passwords[0].Value
	}
	aPassword := token("alpha-puller", api.CreateTokenRequest{ScopeMap: auth.ScopeMapPull})
	bPassword := token("beta-puller", api.CreateTokenRequest{
		Repositories: []api.RepositoryActions{{Repository: "alpha-private", Actions: []string{auth.ContentRead}}}})

	// The principals: task identities, owners on /containers, and their
	// runs' control-API credentials (issued offline, as the task service
	// would for a running run).
	identity := func(registry, task string) string {
		t.Helper()
		tk, err := adm.CreateTask(ctx, registry, api.CreateTaskRequest{Name: task, AssignIdentity: true,
			FileContent: []byte("version: v1.1.0\nsteps:\n  - cmd: busybox true\n"), File: "acr-task.yaml"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := adm.CreateRoleAssignment(ctx, api.CreateRoleAssignmentRequest{
			Assignee: tk.Identity.PrincipalID, Role: "owner", Scope: auth.ContainersScope}); err != nil {
			t.Fatal(err)
		}
		return tk.Identity.PrincipalID
	}
	aID, bID := identity("alpha", "deploy-a"), identity("beta", "deploy-b")
	srv.stop()
	database, err := db.Open(ctx, filepath.Join(srv.cfg.Data, "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	au, err := auth.New(database, filepath.Join(srv.cfg.Data, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	runCredential := func(registry, runID, principal, name string) string {
		t.Helper()
		s, err := au.IssueRunCredential(ctx, auth.RunGrant{Registry: registry, RunID: runID, Principal: principal, Name: name, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	aRun := runCredential("alpha", "s8a", aID, "task:alpha/deploy-a")
	bRun := runCredential("beta", "s8b", bID, "task:beta/deploy-b")
	if err := database.Close(); err != nil {
		t.Fatal(err)
	}
	srv.start()
	adm = srv.admin() // the control API has a new address
	asA, asB := srv.client(client.WithBearer(aRun)), srv.client(client.WithBearer(bRun))
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.admin().DeleteContainer(dctx, "alpha-web"); err != nil && !errors.Is(err, api.ErrNotFound) {
			t.Errorf("deleting alpha-web: %v", err)
		}
	})

	// A deploys with its stored credential.
	aReq := api.CreateContainerRequest{Image: image, RegistryUsername: "alpha-puller", RegistryPassword: aPassword}
	created, err := asA.CreateContainer(ctx, "alpha-web", aReq)
	if err != nil {
		t.Fatalf("A's create: %v\nserver log:\n%s", err, srv.log)
	}
	url := created.IPAddress.URL
	page := func() string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := page(); got != "hello from alpha" {
		t.Fatalf("alpha-web serves %q", got)
	}

	// The issue's reproduction, by B on the command line: refused.
	state := newStateReader(t, srv.cfg.Data)
	before := state.read(t)
	t.Setenv("GANTRY_CONFIG_DIR", t.TempDir())
	t.Setenv("GANTRY_SERVER", "http://"+srv.addr)
	t.Setenv("GANTRY_USERNAME", "")
	t.Setenv("GANTRY_PASSWORD", "")
	t.Setenv("GANTRY_TOKEN", bRun)
	steal := `sh -c 'cp /secret.txt /www/index.html && exec httpd -f -p "$PORT" -h /www'`
	out, errOut, code := gantryCLI("container", "create", "-n", "alpha-web", "--image", image, "--command-line", steal)
	if code == 0 {
		t.Fatalf("B replaced alpha-web with A's stored credential:\n%s%s", out, errOut)
	}
	msg := out + errOut
	t.Logf("B refused: %s", strings.TrimSpace(msg))
	for _, want := range []string{"alpha-web", "replacing image " + image + " needs pull credentials",
		"--registry-username", "--registry-password", "identity with pull access"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal lacks %q", want)
		}
	}
	// Nor with A's image and command unchanged.
	if _, err := asB.CreateContainer(ctx, "alpha-web", api.CreateContainerRequest{Image: image}); !errors.Is(err, api.ErrDenied) {
		t.Errorf("B re-applying A's spec without credentials: %v, want denied", err)
	}
	// Nothing changed: the same container serves the same page, and the
	// server stored nothing.
	if got := page(); got != "hello from alpha" {
		t.Errorf("after the refusals alpha-web serves %q", got)
	}
	cur, err := adm.GetContainer(ctx, "alpha-web")
	if err != nil {
		t.Fatal(err)
	}
	if cur.ContainerID != created.ContainerID || len(cur.Command) != 0 || cur.UpdatedBy != "task:alpha/deploy-a" ||
		len(cur.ImageRegistryCredentials) != 1 || cur.ImageRegistryCredentials[0].Username != "alpha-puller" {
		t.Errorf("after the refusals: %+v", cur)
	}
	if d := before.diff(state.read(t)); d != "" {
		t.Errorf("the refusals changed the persisted state: %s", d)
	}

	// B with pull credentials of its own: allowed (B may read the image).
	withOwn := api.CreateContainerRequest{Image: image, Command: []string{"sh", "-c", `cp /secret.txt /www/index.html && exec httpd -f -p "$PORT" -h /www`},
		RegistryUsername: "beta-puller", RegistryPassword: bPassword}
	replaced, err := asB.CreateContainer(ctx, "alpha-web", withOwn)
	if err != nil || replaced.Operation != api.ContainerReplaced {
		t.Fatalf("B with its own credentials: %v %+v", err, replaced)
	}
	if got := page(); got != secret {
		t.Errorf("after B's replace alpha-web serves %q", got)
	}
	if c := replaced.ImageRegistryCredentials; len(c) != 1 || c[0].Username != "beta-puller" {
		t.Errorf("credentials after B's replace: %+v", c)
	}

	// A deploys again (its credential stored again); B, granted acrpull on
	// the repository, replaces alpha-web without credentials: the engine
	// pulls with B's own access, and A's credential is dropped.
	if _, err := asA.CreateContainer(ctx, "alpha-web", aReq); err != nil {
		t.Fatal(err)
	}
	if got := page(); got != "hello from alpha" {
		t.Fatalf("after A's redeploy alpha-web serves %q", got)
	}
	withoutCreds := withOwn
	withoutCreds.RegistryUsername, withoutCreds.RegistryPassword = "", ""
	if _, err := asB.CreateContainer(ctx, "alpha-web", withoutCreds); !errors.Is(err, api.ErrDenied) {
		t.Fatalf("B without credentials after A's redeploy: %v, want denied", err)
	}
	if _, err := adm.CreateRoleAssignment(ctx, api.CreateRoleAssignmentRequest{
		Assignee: bID, Role: "acrpull", Scope: auth.RepositoryScope("alpha", "alpha-private")}); err != nil {
		t.Fatal(err)
	}
	replaced, err = asB.CreateContainer(ctx, "alpha-web", withoutCreds)
	if err != nil || replaced.Operation != api.ContainerReplaced {
		t.Fatalf("B with pull access: %v %+v\nserver log:\n%s", err, replaced, srv.log)
	}
	if got := page(); got != secret {
		t.Errorf("after B's replace with its own access alpha-web serves %q", got)
	}
	if len(replaced.ImageRegistryCredentials) != 0 || replaced.UpdatedBy != "task:beta/deploy-b" {
		t.Errorf("after B's replace with its own access: credentials %+v, by %q", replaced.ImageRegistryCredentials, replaced.UpdatedBy)
	}

	leaks := &leakChecker{t: t, secrets: map[string]string{}}
	for name, v := range map[string]string{"A's token password": aPassword, "B's token password": bPassword,
		"A's run credential": aRun, "B's run credential": bRun, "admin password": srv.adminPassword} {
		leaks.add(name, v)
	}
	leaks.check("the server log", srv.log.String())
}
