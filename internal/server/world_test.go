package server_test

// The world of the authorization matrices: one server with two registries
// and a principal of every kind the issue's acceptance names, each with the
// credentials it would present on a registry and on the control API.

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
)

// Subjects of the matrices, in the order of their columns.
const (
	sAnonymous  = "anonymous"
	sAdmin      = "admin"
	sPullMap    = "_repositories_pull token"
	sPushMap    = "_repositories_push token"
	sAdminMap   = "_repositories_admin token"
	sRepoToken  = "repository token (app content/read)"
	sWildcard   = "wildcard token (samples/* content/read,write)"
	sDisabled   = "disabled token"
	sExpired    = "expired password"
	sWrongPass  = "wrong password"
	sOtherReg   = "token of another registry"
	sRunOwn     = "run of reg1 (identity, no roles)"
	sRunPull    = "run of reg2 (identity, acrpull on reg1)"
	sRunOwner   = "run of reg2 (identity, owner on reg1)"
	sRunNoRoles = "run of reg2 (identity, no roles)"
)

var subjects = []string{sAnonymous, sAdmin, sPullMap, sPushMap, sAdminMap, sRepoToken, sWildcard, sDisabled,
	sExpired, sWrongPass, sOtherReg, sRunOwn, sRunPull, sRunOwner, sRunNoRoles}

// credentials is what a subject presents.
type credentials struct {
	// Registry requests: HTTP Basic (empty user: anonymous), also sent to
	// the token endpoint.
	user, pass string
	// Control API requests: HTTP Basic, or a Bearer run credential.
	apiUser, apiPass string
	apiBearer        string
}

// world is a server prepared for the matrices.
type world struct {
	srv   *testServer
	state *stateReader
	reg1  string // login server of reg1
	reg2  string
	creds map[string]credentials
	// principal IDs of the task identities
	identities map[string]string
	oci        *ociClient // admin on reg1
	appLayer   string     // a layer digest of app:v1
	appDigest  string     // manifest digest of app:v1
	runID      string     // a finished run of reg1's own-task (finishedRun)
}

// identity tasks: task name -> registry, role on reg1 ("" for none).
var identityTasks = []struct {
	subject, registry, task, role string
}{
	{sRunOwn, "reg1", "own-task", ""},
	{sRunPull, "reg2", "pull-task", "acrpull"},
	{sRunOwner, "reg2", "owner-task", "owner"},
	{sRunNoRoles, "reg2", "plain-task", ""},
}

// newWorld starts a server and creates the principals. Tokens and tasks are
// made through the control API. Two things the API does not allow are made
// with the auth library on the server's data directory while the server is
// stopped: a token whose passwords expired (its clock set two days back, the
// token created with passwords valid for one hour), and run credentials for
// the task identities (what the task service issues to a running run).
func newWorld(t *testing.T, o serverOptions) *world {
	t.Helper()
	ctx := context.Background()
	srv := startServer(t, o)
	w := &world{srv: srv, creds: map[string]credentials{}, identities: map[string]string{}}
	adm := srv.admin()
	w.reg1 = srv.createRegistry("reg1", false)
	w.reg2 = srv.createRegistry("reg2", false)

	w.creds[sAnonymous] = credentials{}
	w.creds[sAdmin] = credentials{user: "admin", pass: srv.adminPassword, apiUser: "admin", apiPass: srv.adminPassword}
	token := func(subject, registry string, req api.CreateTokenRequest) string {
		t.Helper()
		tok, err := adm.CreateToken(ctx, registry, req)
		if err != nil {
			t.Fatalf("token %s: %v", req.Name, err)
		}
		pw := tok.Credentials.Passwords[0].Value
		if pw == "" {
			t.Fatalf("token %s: no password in the create answer", req.Name)
		}
		w.creds[subject] = credentials{user: req.Name, pass: pw, apiUser: registry + "/" + req.Name, apiPass: pw}
		return pw
	}
	token(sPullMap, "reg1", api.CreateTokenRequest{Name: "pull-token", ScopeMap: auth.ScopeMapPull})
	token(sPushMap, "reg1", api.CreateTokenRequest{Name: "push-token", ScopeMap: auth.ScopeMapPush})
	token(sAdminMap, "reg1", api.CreateTokenRequest{Name: "admin-token", ScopeMap: auth.ScopeMapAdmin})
	token(sRepoToken, "reg1", api.CreateTokenRequest{Name: "repo-token",
		Repositories: []api.RepositoryActions{{Repository: "app", Actions: []string{auth.ContentRead}}}})
	token(sWildcard, "reg1", api.CreateTokenRequest{Name: "wild-token",
		Repositories: []api.RepositoryActions{{Repository: "samples/*", Actions: []string{auth.ContentRead, auth.ContentWrite}}}})
	token(sDisabled, "reg1", api.CreateTokenRequest{Name: "disabled-token", ScopeMap: auth.ScopeMapAdmin, Status: "disabled"})
	good := token(sWrongPass, "reg1", api.CreateTokenRequest{Name: "wrong-token", ScopeMap: auth.ScopeMapAdmin})
	wrong := "x" + good[1:]
	if wrong == good {
		wrong = "y" + good[1:]
	}
	w.creds[sWrongPass] = credentials{user: "wrong-token", pass: wrong, apiUser: "reg1/wrong-token", apiPass: wrong}
	token(sOtherReg, "reg2", api.CreateTokenRequest{Name: "other-token", ScopeMap: auth.ScopeMapAdmin})
	// Presented to reg1 as a token of reg1 would be.
	oc := w.creds[sOtherReg]
	oc.user = "other-token"
	w.creds[sOtherReg] = oc

	for _, it := range identityTasks {
		tk, err := adm.CreateTask(ctx, it.registry, api.CreateTaskRequest{Name: it.task, AssignIdentity: true,
			FileContent: []byte("version: v1.1.0\nsteps:\n  - cmd: busybox true\n"), File: "acr-task.yaml"})
		if err != nil {
			t.Fatalf("task %s: %v", it.task, err)
		}
		if tk.Identity == nil || tk.Identity.PrincipalID == "" {
			t.Fatalf("task %s has no identity: %+v", it.task, tk.Identity)
		}
		w.identities[it.subject] = tk.Identity.PrincipalID
		if it.role != "" {
			if _, err := adm.CreateRoleAssignment(ctx, api.CreateRoleAssignmentRequest{
				Assignee: tk.Identity.PrincipalID, Role: it.role, Scope: "/registries/reg1"}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Content of reg1.
	w.oci = newOCIClient(t, w.reg1, "admin", srv.adminPassword)
	m, l := w.oci.pushImage("app", "v1")
	w.appDigest, w.appLayer = m.String(), l.String()
	w.oci.pushImage("samples/web", "v1")

	// The vault, readable by the run of reg1's identity.
	if _, err := adm.CreateKeyVault(ctx, "matrix-kv"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.SetSecret(ctx, "matrix-kv", "s1", "matrix-secret-value"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.SetPolicy(ctx, "matrix-kv", api.VaultPolicy{ObjectID: w.identities[sRunOwn], SecretPermissions: []string{"get"}}); err != nil {
		t.Fatal(err)
	}

	// Offline: the expired token and the run credentials.
	srv.stop()
	database, err := db.Open(ctx, filepath.Join(srv.cfg.Data, "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(srv.cfg.Data, "keys")
	past := time.Now().Add(-48 * time.Hour)
	then, err := auth.New(database, keys, auth.WithClock(func() time.Time { return past }))
	if err != nil {
		t.Fatal(err)
	}
	exp, err := then.CreateToken(ctx, auth.TokenSpec{Registry: "reg1", Name: "expired-token", ScopeMap: auth.ScopeMapAdmin,
		Expiry: past.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	pw := exp.Passwords[0].Value
	w.creds[sExpired] = credentials{user: "expired-token", pass: pw, apiUser: "reg1/expired-token", apiPass: pw}
	now, err := auth.New(database, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range identityTasks {
		secret, err := now.IssueRunCredential(ctx, auth.RunGrant{Registry: it.registry, RunID: "mx" + string(rune('a'+i)),
			Principal: w.identities[it.subject], Name: "task:" + it.registry + "/" + it.task, TTL: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		w.creds[it.subject] = credentials{user: auth.RunUsername, pass: secret, apiBearer: secret}
	}
	if err := database.Close(); err != nil {
		t.Fatal(err)
	}
	srv.start()
	w.state = newStateReader(t, srv.cfg.Data)
	if len(w.creds) != len(subjects) {
		t.Fatalf("%d subjects have credentials, want %d", len(w.creds), len(subjects))
	}
	return w
}

// checkLogClean fails the test if the server log contains a secret any
// subject presented (passwords, run credentials), raw or encoded.
func (w *world) checkLogClean(t *testing.T) {
	t.Helper()
	leaks := &leakChecker{t: t, secrets: map[string]string{}}
	for subject, c := range w.creds {
		for _, v := range []string{c.pass, c.apiPass, c.apiBearer} {
			if v != "" {
				leaks.add(subject, v)
			}
		}
	}
	leaks.check("the server log", w.srv.log.String())
}
