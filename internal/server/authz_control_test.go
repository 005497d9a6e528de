package server_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/httpapi"
	"github.com/gantryhq/gantry/internal/importer"
	"github.com/gantryhq/gantry/internal/instance"
	"github.com/gantryhq/gantry/internal/scan"
	"github.com/gantryhq/gantry/internal/task"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/trigger"
)

// notServed is the outcome of a route the server does not serve (container
// instances without an engine) and of paths that name no route: the
// catch-all 404.
const notServed outcome = 'N'

// ctlRequest is one control API request.
type ctlRequest struct {
	path        string // with query; the method is the route's
	body        []byte
	contentType string
}

// ctlOp is a control API operation of the matrix: a route of the API mux
// and a way to call it.
type ctlOp struct {
	route  string // the mux pattern, "METHOD /v1/..."
	name   string // distinguishes several cases of one route
	status int    // the success status of an allowed caller
	// async: an allowed call queues a run; the server settles before the
	// next check.
	async bool
	// group names an optional group of routes: "containers" (served with a
	// container engine only) or "importer".
	group   string
	prepare func(t *testing.T, w *world) ctlRequest
	want    string // one outcome per subject, in the order of subjects
	// plainBody: denials are not api.Error bodies (the git-host webhook).
	plainBody bool
}

func (o ctlOp) method() string {
	if m, _, ok := strings.Cut(o.route, " "); ok {
		return m
	}
	return "GET" // a pattern without a method ("/v1/") matches every method
}

func (o ctlOp) label() string {
	if o.name != "" {
		return o.route + " (" + o.name + ")"
	}
	return o.route
}

// Rows of the control matrix. Columns: anonymous, admin, pull map, push
// map, admin map, repo token, wildcard, disabled, expired, wrong password,
// other registry, run of reg1, run acrpull, run owner, run without roles.
const (
	ctlPublic = "AAAAAAAAAAAAAAA"
	ctlWhoami = "UAAAAAAUUUAAAAA"
	// Admin only, the path names no registry: every valid credential
	// authenticates and is refused.
	ctlAdminTop = "UADDDDDUUUDDDDD"
	// Admin only, the path names a registry other than reg1: reg1's tokens
	// do not authenticate there.
	ctlAdminOtherRegistry = "UAUUUUUUUUUDDDD"
	// Admin only, on reg1: a registry setting its owner must not change
	// (its quota).
	ctlAdminRegistry = "UADDDDDUUUUDDDD"
	// OpRead/OpWrite on an object of reg1: the admin and the owner role.
	ctlRegistryObject = "UADDDDDUUUUDDAD"
	ctlCatalog        = "UADDDDDUUUUAAAD"
	ctlMetadataRead   = "UAAAADDUUUUAAAD"
	ctlMetadataWrite  = "UADAADDUUUUADAD"
	// A registry refresh token: any pull right on some repository of reg1.
	ctlAnyPull       = "UAAAAAAUUUUAAAD"
	ctlContentDelete = "UADDADDUUUUADAD"
	// Secret get: the admin and the identity with a get policy.
	ctlSecretGet = "UADDDDDUUUDADDD"
	// Role assignments at /registries/reg1: the admin and the owner there.
	ctlRoleAtReg1 = "UADDDDDUUUDDDAD"
	// Import into app from samples/web: content/write on app, content/read
	// on samples/web.
	ctlImport = "UADAADDUUUUADAD"
	// The git-host webhook authenticates by signature, never by credentials.
	ctlWebhook = "UUUUUUUUUUUUUUU"
	// Scanning reg1's app:v1, and reading its report: content/read on
	// app (the wildcard token covers samples/* only). POST /v1/scans
	// names no registry in its path, so other registries' tokens
	// authenticate there and are refused.
	ctlScan     = "UAAAAADUUUDAAAD"
	ctlScanShow = "UAAAAADUUUUAAAD"
	ctlNoRoute  = "NNNNNNNNNNNNNNN"
)

// taskFile is the file of the matrix's tasks (runs fail at once without an
// engine).
const taskFile = "version: v1.1.0\nsteps:\n  - cmd: busybox true\n"

// osvZip is a zip of one OSV advisory.
func osvZip() []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("osv/TEST-0001.json")
	_, _ = w.Write([]byte(`{"id": "TEST-0001", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "npm", "name": "left-pad"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.1.0"}]}]}]}`))
	_ = zw.Close()
	return b.Bytes()
}

func jsonBody(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func controlOps() []ctlOp {
	ctx := context.Background()
	path := func(p string) func(*testing.T, *world) ctlRequest {
		return func(*testing.T, *world) ctlRequest { return ctlRequest{path: p} }
	}
	body := func(p string, v func() any) func(*testing.T, *world) ctlRequest {
		return func(*testing.T, *world) ctlRequest {
			return ctlRequest{path: p, body: jsonBody(v()), contentType: "application/json"}
		}
	}
	fresh := func(prefix string) string { return prefix + testenv.RandomHex(4) }
	freshTask := func(t *testing.T, w *world) string {
		t.Helper()
		name := fresh("task-")
		if _, err := w.srv.admin().CreateTask(ctx, "reg1", api.CreateTaskRequest{Name: name, File: "acr-task.yaml", FileContent: []byte(taskFile)}); err != nil {
			t.Fatal(err)
		}
		return name
	}
	addCredential := func(t *testing.T, w *world) string {
		t.Helper()
		server := fresh("host-") + ":5000"
		if _, err := w.srv.admin().AddTaskCredential(ctx, "reg1", "own-task", api.CredentialRequest{LoginServer: server, Username: "u", Password: "p"}); err != nil {
			t.Fatal(err)
		}
		return server
	}
	disabled := false
	never := "0 0 29 2 *" // would fire on 29 February; the timers are disabled anyway
	addTimer := func(t *testing.T, w *world) string {
		t.Helper()
		name := fresh("timer")
		if _, err := w.srv.admin().AddTimer(ctx, "reg1", "own-task", api.TimerRequest{Name: name, Schedule: &never, Enabled: &disabled}); err != nil {
			t.Fatal(err)
		}
		return name
	}
	freshIdentity := func(t *testing.T, w *world) string {
		t.Helper()
		tk, err := w.srv.admin().CreateTask(ctx, "reg2", api.CreateTaskRequest{Name: fresh("id-"), AssignIdentity: true,
			FileContent: []byte(taskFile), File: "acr-task.yaml"})
		if err != nil {
			t.Fatal(err)
		}
		return tk.Identity.PrincipalID
	}
	freshAssignment := func(t *testing.T, w *world) (id, principal string) {
		t.Helper()
		principal = freshIdentity(t, w)
		a, err := w.srv.admin().CreateRoleAssignment(ctx, api.CreateRoleAssignmentRequest{Assignee: principal, Role: "acrpull", Scope: "/registries/reg1"})
		if err != nil {
			t.Fatal(err)
		}
		return a.ID, principal
	}
	quickRun := func(t *testing.T, w *world) ctlRequest {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		part, _ := mw.CreateFormField("request")
		part.Write(jsonBody(api.QuickRunRequest{File: "acr-task.yaml", FileContent: []byte(taskFile)}))
		mw.Close()
		return ctlRequest{path: "/v1/registries/reg1/runs", body: b.Bytes(), contentType: mw.FormDataContentType()}
	}
	runPath := func(suffix string) func(*testing.T, *world) ctlRequest {
		return func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/runs/" + w.finishedRun(t) + suffix}
		}
	}

	return []ctlOp{
		{route: "GET /v1/version", status: 200, want: ctlPublic, prepare: path("/v1/version")},
		// Public; this server has no local CA, so it says so to everyone.
		{route: "GET /v1/ca.pem", status: 404, want: ctlPublic, prepare: path("/v1/ca.pem")},
		{route: "GET /v1/whoami", status: 200, want: ctlWhoami, prepare: path("/v1/whoami")},
		{route: "/v1/", name: "unknown path", status: 404, want: ctlNoRoute, prepare: path("/v1/no/such/endpoint")},

		// Registries.
		{route: "GET /v1/registries", status: 200, want: ctlAdminTop, prepare: path("/v1/registries")},
		{route: "POST /v1/registries", status: 201, want: ctlAdminTop,
			prepare: body("/v1/registries", func() any { return api.CreateRegistryRequest{Name: fresh("newreg")} })},
		{route: "POST /v1/fsck", status: 200, want: ctlAdminTop,
			prepare: body("/v1/fsck", func() any { return api.FsckRequest{Registry: "reg1"} })},
		{route: "GET /v1/registries/{reg}", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1")},
		{route: "PATCH /v1/registries/{reg}", status: 200, want: ctlAdminRegistry, prepare: func(t *testing.T, w *world) ctlRequest {
			quota := int64(0)
			return ctlRequest{path: "/v1/registries/reg1", body: jsonBody(api.UpdateRegistryRequest{QuotaBytes: &quota}), contentType: "application/json"}
		}},
		{route: "DELETE /v1/registries/{reg}", status: 204, want: ctlAdminOtherRegistry, prepare: func(t *testing.T, w *world) ctlRequest {
			name := fresh("oldreg")
			w.srv.createRegistry(name, false)
			return ctlRequest{path: "/v1/registries/" + name}
		}},
		{route: "POST /v1/registries/{reg}/token", status: 200, want: ctlAnyPull, prepare: path("/v1/registries/reg1/token")},
		{route: "GET /v1/registries/{reg}/usage", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/usage")},
		{route: "GET /v1/registries/{reg}/repositories", status: 200, want: ctlCatalog, prepare: path("/v1/registries/reg1/repositories")},
		{route: "GET /v1/registries/{reg}/repository", status: 200, want: ctlMetadataRead, prepare: path("/v1/registries/reg1/repository?repository=app")},
		{route: "DELETE /v1/registries/{reg}/repository", status: 204, want: ctlContentDelete, prepare: func(t *testing.T, w *world) ctlRequest {
			repo := fresh("junk/r")
			w.oci.pushImage(repo, "v1")
			return ctlRequest{path: "/v1/registries/reg1/repository?repository=" + url.QueryEscape(repo)}
		}},
		{route: "GET /v1/registries/{reg}/tags", status: 200, want: ctlMetadataRead, prepare: path("/v1/registries/reg1/tags?repository=app")},
		{route: "DELETE /v1/registries/{reg}/tags", status: 204, want: ctlMetadataWrite, prepare: func(t *testing.T, w *world) ctlRequest {
			repo, tag := "app", fresh("tag")
			w.oci.pushImage(repo, tag)
			return ctlRequest{path: "/v1/registries/reg1/tags?image=" + url.QueryEscape(repo+":"+tag)}
		}},
		{route: "GET /v1/registries/{reg}/tag-history", status: 200, want: ctlMetadataRead, prepare: path("/v1/registries/reg1/tag-history?repository=app&tag=v1")},
		{route: "GET /v1/registries/{reg}/manifests", status: 200, want: ctlMetadataRead, prepare: path("/v1/registries/reg1/manifests?repository=app")},
		{route: "DELETE /v1/registries/{reg}/manifest", status: 204, want: ctlContentDelete, prepare: func(t *testing.T, w *world) ctlRequest {
			m, _ := w.oci.pushImage("app", fresh("del"))
			return ctlRequest{path: "/v1/registries/reg1/manifest?image=" + url.QueryEscape("app@"+m.String())}
		}},

		// Scope maps and tokens.
		{route: "GET /v1/registries/{reg}/scope-maps", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/scope-maps")},
		{route: "POST /v1/registries/{reg}/scope-maps", status: 201, want: ctlRegistryObject,
			prepare: body("/v1/registries/reg1/scope-maps", func() any {
				return api.CreateScopeMapRequest{Name: fresh("map-"), Repositories: []api.RepositoryActions{{Repository: "app", Actions: []string{"content/read"}}}}
			})},
		{route: "GET /v1/registries/{reg}/scope-maps/{name}", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/scope-maps/_repositories_pull")},
		{route: "PATCH /v1/registries/{reg}/scope-maps/{name}", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			// The wildcard token's map: an allowed update changes what the
			// token may do, so it adds nothing new.
			return ctlRequest{path: "/v1/registries/reg1/scope-maps/wild-token-scope-map", contentType: "application/json",
				body: jsonBody(api.UpdateScopeMapRequest{Add: []api.RepositoryActions{{Repository: "samples/*", Actions: []string{"content/read"}}}})}
		}},
		{route: "DELETE /v1/registries/{reg}/scope-maps/{name}", status: 204, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			name := fresh("map-")
			if _, err := w.srv.admin().CreateScopeMap(ctx, "reg1", api.CreateScopeMapRequest{Name: name,
				Repositories: []api.RepositoryActions{{Repository: "app", Actions: []string{"content/read"}}}}); err != nil {
				t.Fatal(err)
			}
			return ctlRequest{path: "/v1/registries/reg1/scope-maps/" + name}
		}},
		{route: "GET /v1/registries/{reg}/tokens", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/tokens")},
		{route: "POST /v1/registries/{reg}/tokens", status: 201, want: ctlRegistryObject,
			prepare: body("/v1/registries/reg1/tokens", func() any { return api.CreateTokenRequest{Name: fresh("newtoken-"), ScopeMap: "_repositories_pull"} })},
		{route: "GET /v1/registries/{reg}/tokens/{name}", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/tokens/pull-token")},
		{route: "PATCH /v1/registries/{reg}/tokens/{name}", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			name := w.freshToken(t)
			st := "disabled"
			return ctlRequest{path: "/v1/registries/reg1/tokens/" + name, body: jsonBody(api.UpdateTokenRequest{Status: &st}), contentType: "application/json"}
		}},
		{route: "DELETE /v1/registries/{reg}/tokens/{name}", status: 204, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/tokens/" + w.freshToken(t)}
		}},
		{route: "POST /v1/registries/{reg}/tokens/{name}/credentials", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/tokens/" + w.freshToken(t) + "/credentials",
				body: jsonBody(api.GenerateCredentialRequest{Password1: true}), contentType: "application/json"}
		}},

		// Role assignments.
		{route: "GET /v1/role-assignments", status: 200, want: ctlAdminTop, prepare: path("/v1/role-assignments")},
		{route: "GET /v1/role-assignments", name: "at /registries/reg1", status: 200, want: ctlRoleAtReg1,
			prepare: path("/v1/role-assignments?scope=" + url.QueryEscape("/registries/reg1"))},
		{route: "POST /v1/role-assignments", status: 201, want: ctlRoleAtReg1, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/role-assignments", contentType: "application/json",
				body: jsonBody(api.CreateRoleAssignmentRequest{Assignee: freshIdentity(t, w), Role: "acrpull", Scope: "/registries/reg1"})}
		}},
		{route: "POST /v1/role-assignments", name: "at /registries/reg2", status: 201, want: ctlAdminTop, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/role-assignments", contentType: "application/json",
				body: jsonBody(api.CreateRoleAssignmentRequest{Assignee: freshIdentity(t, w), Role: "owner", Scope: "/registries/reg2"})}
		}},
		{route: "DELETE /v1/role-assignments", name: "by id", status: 200, want: ctlAdminTop, prepare: func(t *testing.T, w *world) ctlRequest {
			id, _ := freshAssignment(t, w)
			return ctlRequest{path: "/v1/role-assignments?id=" + id}
		}},
		{route: "DELETE /v1/role-assignments", name: "at /registries/reg1", status: 200, want: ctlRoleAtReg1, prepare: func(t *testing.T, w *world) ctlRequest {
			_, principal := freshAssignment(t, w)
			return ctlRequest{path: "/v1/role-assignments?assignee=" + principal + "&scope=" + url.QueryEscape("/registries/reg1")}
		}},

		// The scan gate. Scanning and reading a report take pull rights on
		// the repository; the database and the global allowlist are the
		// admin's; reading them takes any valid credential.
		{route: "POST /v1/scans", status: 400, want: ctlScan,
			prepare: body("/v1/scans", func() any { return api.ScanRequest{Registry: "reg1", Repository: "app", Reference: "v1"} })},
		{route: "GET /v1/registries/{reg}/scans", status: 404, want: ctlScanShow, prepare: path("/v1/registries/reg1/scans?repository=app&reference=v1")},
		{route: "GET /v1/vulndb", status: 200, want: ctlWhoami, prepare: path("/v1/vulndb")},
		{route: "POST /v1/vulndb/import", status: 200, want: ctlAdminTop, prepare: func(*testing.T, *world) ctlRequest {
			return ctlRequest{path: "/v1/vulndb/import", body: osvZip(), contentType: "application/zip"}
		}},
		{route: "POST /v1/vulndb/update", status: 404, want: ctlAdminTop, prepare: func(_ *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/vulndb/update", body: jsonBody(api.VulnDBUpdateRequest{Source: w.reg1 + "/no-such-db:1"}), contentType: "application/json"}
		}},
		{route: "GET /v1/scan-allowlist", status: 200, want: ctlWhoami, prepare: path("/v1/scan-allowlist")},
		{route: "GET /v1/scan-impact", status: 404, want: ctlAdminTop, prepare: path("/v1/scan-impact?id=NO-SUCH-ADVISORY")},
		{route: "GET /v1/registries/{reg}/scan-policy", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/scan-policy?repository=app")},
		{route: "PUT /v1/registries/{reg}/scan-policy", status: 200, want: ctlAdminRegistry, prepare: func(*testing.T, *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/scan-policy?repository=" + fresh("repo-"), body: jsonBody(api.ScanPolicy{ScanOnPush: false}), contentType: "application/json"}
		}},
		{route: "DELETE /v1/registries/{reg}/scan-policy", status: 204, want: ctlAdminRegistry, prepare: func(t *testing.T, w *world) ctlRequest {
			repo := fresh("repo-")
			if _, err := w.srv.admin().SetScanPolicy(ctx, api.ScanPolicy{Registry: "reg1", Repository: repo}); err != nil {
				t.Fatal(err)
			}
			return ctlRequest{path: "/v1/registries/reg1/scan-policy?repository=" + repo}
		}},
		{route: "POST /v1/scan-allowlist", status: 201, want: ctlAdminTop,
			prepare: body("/v1/scan-allowlist", func() any { return api.AllowlistEntry{ID: fresh("CVE-")} })},
		{route: "DELETE /v1/scan-allowlist/{id}", status: 204, want: ctlAdminTop, prepare: func(t *testing.T, w *world) ctlRequest {
			id := fresh("CVE-")
			if _, err := w.srv.admin().Allow(ctx, api.AllowlistEntry{ID: id}); err != nil {
				t.Fatal(err)
			}
			return ctlRequest{path: "/v1/scan-allowlist/" + id}
		}},

		// Key vaults.
		// A dry run of reg1 (the matrix checks the state is unchanged).
		{route: "POST /v1/gc", status: 200, want: ctlAdminTop,
			prepare: body("/v1/gc", func() any { return api.GCRequest{Registry: "reg1", DryRun: true} })},
		{route: "GET /v1/keyvaults", status: 200, want: ctlAdminTop, prepare: path("/v1/keyvaults")},
		{route: "POST /v1/keyvaults", status: 201, want: ctlAdminTop, prepare: body("/v1/keyvaults", func() any { return api.CreateKeyVaultRequest{Name: fresh("vault-")} })},
		{route: "GET /v1/keyvaults/{vault}", status: 200, want: ctlAdminTop, prepare: path("/v1/keyvaults/matrix-kv")},
		{route: "DELETE /v1/keyvaults/{vault}", status: 204, want: ctlAdminTop, prepare: func(t *testing.T, w *world) ctlRequest {
			name := fresh("vault-")
			if _, err := w.srv.admin().CreateKeyVault(ctx, name); err != nil {
				t.Fatal(err)
			}
			return ctlRequest{path: "/v1/keyvaults/" + name}
		}},
		{route: "GET /v1/keyvaults/{vault}/secrets", status: 200, want: ctlAdminTop, prepare: path("/v1/keyvaults/matrix-kv/secrets")},
		{route: "GET /v1/keyvaults/{vault}/secrets/{name}", status: 200, want: ctlSecretGet, prepare: path("/v1/keyvaults/matrix-kv/secrets/s1")},
		{route: "PUT /v1/keyvaults/{vault}/secrets/{name}", status: 200, want: ctlAdminTop,
			prepare: body("/v1/keyvaults/matrix-kv/secrets/s1", func() any { return api.SetSecretRequest{Value: "matrix-secret-value"} })},
		{route: "DELETE /v1/keyvaults/{vault}/secrets/{name}", status: 204, want: ctlAdminTop, prepare: func(t *testing.T, w *world) ctlRequest {
			name := fresh("gone-")
			if _, err := w.srv.admin().SetSecret(ctx, "matrix-kv", name, "to be deleted"); err != nil {
				t.Fatal(err)
			}
			return ctlRequest{path: "/v1/keyvaults/matrix-kv/secrets/" + name}
		}},
		{route: "GET /v1/keyvaults/{vault}/policies", status: 200, want: ctlAdminTop, prepare: path("/v1/keyvaults/matrix-kv/policies")},
		{route: "PUT /v1/keyvaults/{vault}/policies", status: 200, want: ctlAdminTop, prepare: func(t *testing.T, w *world) ctlRequest {
			// A fresh identity: an allowed call must not widen what a
			// subject of the matrix may do.
			return ctlRequest{path: "/v1/keyvaults/matrix-kv/policies", contentType: "application/json",
				body: jsonBody(api.VaultPolicy{ObjectID: freshIdentity(t, w), SecretPermissions: []string{"get", "list"}})}
		}},
		{route: "DELETE /v1/keyvaults/{vault}/policies/{object}", status: 204, want: ctlAdminTop, prepare: func(t *testing.T, w *world) ctlRequest {
			id := freshIdentity(t, w)
			if _, err := w.srv.admin().SetPolicy(ctx, "matrix-kv", api.VaultPolicy{ObjectID: id, SecretPermissions: []string{"get"}}); err != nil {
				t.Fatal(err)
			}
			return ctlRequest{path: "/v1/keyvaults/matrix-kv/policies/" + id}
		}},

		// Tasks.
		{route: "GET /v1/registries/{reg}/tasks", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/tasks")},
		{route: "POST /v1/registries/{reg}/tasks", status: 201, want: ctlRegistryObject, prepare: body("/v1/registries/reg1/tasks", func() any {
			return api.CreateTaskRequest{Name: fresh("task-"), File: "acr-task.yaml", FileContent: []byte(taskFile), AssignIdentity: true}
		})},
		{route: "GET /v1/registries/{reg}/tasks/{name}", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/tasks/own-task")},
		{route: "PATCH /v1/registries/{reg}/tasks/{name}", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			timeout := 600
			return ctlRequest{path: "/v1/registries/reg1/tasks/" + freshTask(t, w), contentType: "application/json",
				body: jsonBody(api.UpdateTaskRequest{TimeoutSeconds: &timeout})}
		}},
		{route: "DELETE /v1/registries/{reg}/tasks/{name}", status: 204, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/tasks/" + freshTask(t, w)}
		}},
		{route: "POST /v1/registries/{reg}/tasks/{name}/runs", status: 202, async: true, want: ctlRegistryObject,
			prepare: path("/v1/registries/reg1/tasks/own-task/runs")},
		{route: "POST /v1/registries/{reg}/tasks/{name}/credentials", status: 200, want: ctlRegistryObject,
			prepare: body("/v1/registries/reg1/tasks/own-task/credentials", func() any {
				return api.CredentialRequest{LoginServer: fresh("host-") + ":5000", Username: "u", Password: "plain-password"}
			})},
		{route: "PUT /v1/registries/{reg}/tasks/{name}/credentials", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/tasks/own-task/credentials", contentType: "application/json",
				body: jsonBody(api.CredentialRequest{LoginServer: addCredential(t, w), Username: "u2", Password: "p2"})}
		}},
		{route: "DELETE /v1/registries/{reg}/tasks/{name}/credentials", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/tasks/own-task/credentials?loginServer=" + url.QueryEscape(addCredential(t, w))}
		}},
		{route: "POST /v1/registries/{reg}/tasks/{name}/timers", status: 200, want: ctlRegistryObject,
			prepare: body("/v1/registries/reg1/tasks/own-task/timers", func() any {
				return api.TimerRequest{Name: fresh("timer"), Schedule: &never, Enabled: &disabled}
			})},
		{route: "PATCH /v1/registries/{reg}/tasks/{name}/timers/{timer}", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			other := "0 0 30 2 *" // 30 February: never
			return ctlRequest{path: "/v1/registries/reg1/tasks/own-task/timers/" + addTimer(t, w), contentType: "application/json",
				body: jsonBody(api.TimerRequest{Schedule: &other})}
		}},
		{route: "DELETE /v1/registries/{reg}/tasks/{name}/timers/{timer}", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/tasks/own-task/timers/" + addTimer(t, w)}
		}},
		{route: "GET /v1/registries/{reg}/tasks/{name}/webhook", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/tasks/" + w.gitTask(t) + "/webhook"}
		}},
		{route: "POST /v1/registries/{reg}/tasks/{name}/webhook/rotate", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/tasks/" + w.gitTask(t) + "/webhook/rotate"}
		}},
		{route: trigger.WebhookPattern, status: 202, want: ctlWebhook, plainBody: true, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: trigger.WebhookPath("reg1", w.gitTask(t)), contentType: "application/json",
				body: []byte(`{"ref":"refs/heads/main","after":"0123456789012345678901234567890123456789"}`)}
		}},

		// Runs.
		{route: "GET /v1/registries/{reg}/runs", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/runs")},
		{route: "POST /v1/registries/{reg}/runs", status: 202, async: true, want: ctlRegistryObject, prepare: quickRun},
		{route: "GET /v1/registries/{reg}/runs/{id}", status: 200, want: ctlRegistryObject, prepare: runPath("")},
		{route: "GET /v1/registries/{reg}/runs/{id}/logs", status: 200, want: ctlRegistryObject, prepare: runPath("/logs")},
		// Canceling a finished run is a conflict, after the check.
		{route: "POST /v1/registries/{reg}/runs/{id}/cancel", status: 409, want: ctlRegistryObject, prepare: runPath("/cancel")},

		// Import, cache rules and credential sets. An import needs
		// content/write on its targets and content/read on a source of this
		// server.
		{route: "POST /v1/registries/{reg}/import", group: "importer", status: 200, want: ctlImport, prepare: body("/v1/registries/reg1/import", func() any {
			return api.ImportRequest{Source: "gantry://reg1/samples/web:v1", TargetTags: []string{"app:" + fresh("imported")}}
		})},
		{route: "GET /v1/registries/{reg}/cache-rules", group: "importer", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/cache-rules")},
		{route: "POST /v1/registries/{reg}/cache-rules", group: "importer", status: 201, want: ctlRegistryObject, prepare: body("/v1/registries/reg1/cache-rules", func() any {
			return api.CreateCacheRuleRequest{Name: fresh("rule-"), SourceRepository: "docker.io/library/" + fresh("img"), TargetRepository: fresh("cached/r")}
		})},
		{route: "GET /v1/registries/{reg}/cache-rules/{name}", group: "importer", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/cache-rules/" + w.freshCacheRule(t)}
		}},
		{route: "PATCH /v1/registries/{reg}/cache-rules/{name}", group: "importer", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			none := ""
			return ctlRequest{path: "/v1/registries/reg1/cache-rules/" + w.freshCacheRule(t), contentType: "application/json",
				body: jsonBody(api.UpdateCacheRuleRequest{CredentialSet: &none})}
		}},
		{route: "DELETE /v1/registries/{reg}/cache-rules/{name}", group: "importer", status: 204, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/cache-rules/" + w.freshCacheRule(t)}
		}},
		{route: "GET /v1/registries/{reg}/credential-sets", group: "importer", status: 200, want: ctlRegistryObject, prepare: path("/v1/registries/reg1/credential-sets")},
		{route: "POST /v1/registries/{reg}/credential-sets", group: "importer", status: 201, want: ctlRegistryObject, prepare: body("/v1/registries/reg1/credential-sets", func() any {
			return api.CreateCredentialSetRequest{Name: fresh("creds-"), LoginServer: fresh("upstream-") + ".example:5000",
				UsernameSecretIdentifier: "vault://matrix-kv/secrets/s1", PasswordSecretIdentifier: "vault://matrix-kv/secrets/s1"}
		})},
		{route: "GET /v1/registries/{reg}/credential-sets/{name}", group: "importer", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/credential-sets/" + w.freshCredentialSet(t)}
		}},
		{route: "PATCH /v1/registries/{reg}/credential-sets/{name}", group: "importer", status: 200, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			uri := "https://matrix-kv.vault.azure.net/secrets/s1"
			return ctlRequest{path: "/v1/registries/reg1/credential-sets/" + w.freshCredentialSet(t), contentType: "application/json",
				body: jsonBody(api.UpdateCredentialSetRequest{UsernameSecretIdentifier: &uri})}
		}},
		{route: "DELETE /v1/registries/{reg}/credential-sets/{name}", group: "importer", status: 204, want: ctlRegistryObject, prepare: func(t *testing.T, w *world) ctlRequest {
			return ctlRequest{path: "/v1/registries/reg1/credential-sets/" + w.freshCredentialSet(t)}
		}},

		// Container instances (only with an engine). The allowed answers
		// come after the check: 404 for an instance that does not exist,
		// 400 for a create without an image.
		{route: "GET /v1/containers", status: 200, group: "containers", want: ctlAdminTop, prepare: path("/v1/containers")},
		{route: "PUT /v1/containers/{name}", status: 400, group: "containers", want: ctlAdminTop,
			prepare: body("/v1/containers/matrix-nothing", func() any { return api.CreateContainerRequest{} })},
		{route: "GET /v1/containers/{name}", status: 404, group: "containers", want: ctlAdminTop, prepare: path("/v1/containers/matrix-nothing")},
		{route: "DELETE /v1/containers/{name}", status: 404, group: "containers", want: ctlAdminTop, prepare: path("/v1/containers/matrix-nothing")},
		{route: "GET /v1/containers/{name}/logs", status: 404, group: "containers", want: ctlAdminTop, prepare: path("/v1/containers/matrix-nothing/logs")},
	}
}

// freshCacheRule creates a cache rule in reg1 (as the admin) and returns
// its name.
func (w *world) freshCacheRule(t *testing.T) string {
	t.Helper()
	name := "rule-" + testenv.RandomHex(4)
	if _, err := w.srv.admin().CreateCacheRule(context.Background(), "reg1", api.CreateCacheRuleRequest{Name: name,
		SourceRepository: "docker.io/library/" + name, TargetRepository: "cached/" + name}); err != nil {
		t.Fatal(err)
	}
	return name
}

// freshCredentialSet creates a credential set in reg1 (as the admin) and
// returns its name.
func (w *world) freshCredentialSet(t *testing.T) string {
	t.Helper()
	name := "creds-" + testenv.RandomHex(4)
	if _, err := w.srv.admin().CreateCredentialSet(context.Background(), "reg1", api.CreateCredentialSetRequest{Name: name,
		LoginServer: name + ".example:5000", UsernameSecretIdentifier: "vault://matrix-kv/secrets/s1",
		PasswordSecretIdentifier: "vault://matrix-kv/secrets/s1"}); err != nil {
		t.Fatal(err)
	}
	return name
}

// freshToken creates a token in reg1 (as the admin) and returns its name.
func (w *world) freshToken(t *testing.T) string {
	t.Helper()
	name := "tok-" + testenv.RandomHex(4)
	if _, err := w.srv.admin().CreateToken(context.Background(), "reg1", api.CreateTokenRequest{Name: name, ScopeMap: "_repositories_pull"}); err != nil {
		t.Fatal(err)
	}
	return name
}

// gitTask returns a reg1 task with a git context (commit trigger off), for
// the webhook routes.
func (w *world) gitTask(t *testing.T) string {
	t.Helper()
	const name = "git-task"
	if _, err := w.srv.admin().GetTask(context.Background(), "reg1", name); err == nil {
		return name
	}
	off := false
	if _, err := w.srv.admin().CreateTask(context.Background(), "reg1", api.CreateTaskRequest{Name: name,
		Context: "http://127.0.0.1:9/nothing.git#main", File: "acr-task.yaml", CommitTrigger: &off}); err != nil {
		t.Fatal(err)
	}
	return name
}

// finishedRun returns the ID of a finished run of reg1's own-task.
func (w *world) finishedRun(t *testing.T) string {
	t.Helper()
	if w.runID != "" {
		return w.runID
	}
	run, err := w.srv.admin().RunTask(context.Background(), "reg1", "own-task", api.RunTaskRequest{})
	if err != nil {
		t.Fatal(err)
	}
	w.settle(t)
	w.runID = run.RunID
	return w.runID
}

// settle waits until no run is queued or running and the persisted state
// has stopped changing.
func (w *world) settle(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, "runs to finish", func() bool {
		var n int
		if err := w.state.db.QueryRow(`SELECT count(*) FROM runs WHERE status IN (?, ?)`, task.RunQueued, task.RunRunning).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	prev := w.state.read(t)
	for range 100 {
		time.Sleep(100 * time.Millisecond)
		cur := w.state.read(t)
		if prev.diff(cur) == "" {
			return
		}
		prev = cur
	}
	t.Fatal("the persisted state keeps changing")
}

// allRoutes returns the routes of a control API with every optional group
// enabled (tasks, triggers, container instances, imports and caches).
func allRoutes(t *testing.T) []string {
	t.Helper()
	s := httpapi.New(nil, nil, nil, nil,
		httpapi.WithTasks(new(task.Service)),
		httpapi.WithScans(new(scan.Service)),
		httpapi.WithTriggers(noTriggers{}),
		httpapi.WithContainers(noContainers{}),
		httpapi.WithImporter(importer.New(nil, nil, nil, nil)))
	return s.Routes()
}

type noTriggers struct{}

func (noTriggers) Describe(context.Context, string, string) (trigger.Info, error) {
	return trigger.Info{}, nil
}
func (noTriggers) WebhookHandler() http.Handler                                  { return http.NotFoundHandler() }
func (noTriggers) WebhookSecret(context.Context, string, string) (string, error) { return "", nil }
func (noTriggers) RotateWebhookSecret(context.Context, string, string) (string, error) {
	return "", nil
}
func (noTriggers) RefreshRegistries(context.Context) error { return nil }

type noContainers struct{}

func (noContainers) Apply(context.Context, instance.Spec) (instance.Instance, instance.Outcome, error) {
	return instance.Instance{}, "", nil
}
func (noContainers) Get(context.Context, string) (instance.Instance, error) {
	return instance.Instance{}, nil
}
func (noContainers) List(context.Context) ([]instance.Instance, error) { return nil, nil }
func (noContainers) Logs(context.Context, string, instance.LogOptions, io.Writer, io.Writer) error {
	return nil
}
func (noContainers) Delete(context.Context, string) error { return nil }

// routeLiteral matches the route patterns written in the httpapi sources.
var routeLiteral = regexp.MustCompile(`"((?:GET|HEAD|POST|PUT|PATCH|DELETE) /v1/[^"]*)"`)

// TestControlRoutesCovered makes the matrix exhaustive: every route the
// control API registers must have at least one entry in controlOps, so a
// route added without one fails here ("no operation reachable without a
// check"). The route list comes from the API's mux with every optional
// group enabled; the route literals in internal/httpapi's sources are
// checked against it, so a group behind a new option that allRoutes does
// not enable is noticed too.
func TestControlRoutesCovered(t *testing.T) {
	t.Parallel()
	routes := allRoutes(t)
	covered := map[string]bool{}
	for _, op := range controlOps() {
		if !slices.Contains(routes, op.route) {
			t.Errorf("matrix entry %q names no route of the control API", op.label())
		}
		covered[op.route] = true
		if len(op.want) != len(subjects) {
			t.Errorf("%s: %d outcomes for %d subjects", op.label(), len(op.want), len(subjects))
		}
	}
	for _, r := range routes {
		if !covered[r] {
			t.Errorf("route %q has no entry in the authorization matrix (controlOps in authz_control_test.go): add one", r)
		}
	}
	files, err := filepath.Glob("../httpapi/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("reading the httpapi sources: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range routeLiteral.FindAllStringSubmatch(string(src), -1) {
			if !slices.Contains(routes, m[1]) {
				t.Errorf("%s registers %q, which allRoutes does not see: enable its option in allRoutes", filepath.Base(f), m[1])
			}
		}
	}
}

// TestControlAuthorizationMatrix calls every control API route as every
// subject on a real server whose container engine does not answer (the
// container rows need none: their checks fail before the engine is used)
// and checks the answer: the route's success status when allowed, else 401
// (with a Basic challenge) or 403 with an api.Error body that does not echo
// the credentials, and the persisted state unchanged.
func TestControlAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	w := newWorld(t, serverOptions{})
	w.controlMatrix(t, func(ctlOp) bool { return true })
	w.checkLogClean(t)
}

// TestControlAuthorizationMatrixWithEngine runs the container-instance
// rows of the matrix on a server with a container engine.
func TestControlAuthorizationMatrixWithEngine(t *testing.T) {
	t.Parallel()
	host := testenv.DockerHost(t)
	w := newWorld(t, serverOptions{engine: host})
	if n := w.controlMatrix(t, func(op ctlOp) bool { return op.group == "containers" }); n == 0 {
		t.Fatal("no container route is served with an engine")
	}
	w.checkLogClean(t)
}

// controlMatrix checks the operations selected by include and returns how
// many it checked. A route of an optional group that this server does not
// serve is skipped (it is unreachable); other routes must be served.
func (w *world) controlMatrix(t *testing.T, include func(ctlOp) bool) int {
	t.Helper()
	served := map[string]bool{}
	n := 0
	for _, op := range controlOps() {
		if !include(op) {
			continue
		}
		if op.group != "" {
			ok, probed := served[op.group]
			if !probed {
				ok = !isCatchAll(w.sendControl(t, op, op.prepare(t, w), sAdmin))
				served[op.group] = ok
				if !ok {
					t.Logf("the %s routes are not served by this server: not checked", op.group)
				}
				if op.async {
					w.settle(t)
				}
			}
			if !ok {
				continue
			}
		}
		for i, subject := range subjects {
			w.checkControl(t, op, subject, outcome(op.want[i]))
		}
		n++
	}
	return n
}

// isCatchAll reports whether r is the answer of the catch-all route.
func isCatchAll(r response) bool {
	return r.status == http.StatusNotFound && bytes.Contains(r.body, []byte("no such endpoint"))
}

// checkControl calls one route as one subject and checks the outcome.
func (w *world) checkControl(t *testing.T, op ctlOp, subject string, want outcome) {
	t.Helper()
	label := subject + " × " + op.label()
	req := op.prepare(t, w)
	before := w.state.read(t)
	r := w.sendControl(t, op, req, subject)
	got := classifyControl(r, op.status)
	if got != want {
		t.Errorf("%s = %s (%s), want %s", label, got, r, want)
		if got == allow && op.async {
			w.settle(t)
		}
		return
	}
	switch got {
	case allow:
		if op.async {
			w.settle(t)
		}
	case unauth, deny, notServed:
		w.checkControlDenial(t, label, op, r, got, subject)
		if after := w.state.read(t); before.diff(after) != "" {
			t.Errorf("%s: refused, but the persisted state changed: %s", label, before.diff(after))
		}
	}
}

func classifyControl(r response, success int) outcome {
	switch r.status {
	case success:
		if isCatchAll(r) {
			return notServed
		}
		return allow
	case http.StatusUnauthorized:
		return unauth
	case http.StatusForbidden:
		return deny
	case http.StatusNotFound:
		return notServed
	}
	return outcome('0' + r.status/100)
}

// checkControlDenial checks a refusal's body and headers, and that it does
// not echo the secret the subject presented.
func (w *world) checkControlDenial(t *testing.T, label string, op ctlOp, r response, got outcome, subject string) {
	t.Helper()
	c := w.creds[subject]
	for _, secret := range []string{c.apiPass, c.apiBearer} {
		if secret != "" && (bytes.Contains(r.body, []byte(secret)) || strings.Contains(r.header.Get("WWW-Authenticate"), secret)) {
			t.Errorf("%s: the refusal echoes the presented secret: %s", label, r)
		}
	}
	if op.plainBody {
		return
	}
	var body api.ErrorBody
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error == nil || body.Error.Message == "" {
		t.Errorf("%s: not an api.Error body: %s", label, r)
		return
	}
	want := map[outcome]api.Code{unauth: api.CodeUnauthenticated, deny: api.CodeDenied, notServed: api.CodeNotFound}[got]
	if body.Error.Code != want {
		t.Errorf("%s: code %s, want %s", label, body.Error.Code, want)
	}
	if c := r.header.Get("WWW-Authenticate"); got == unauth && (c == "" || strings.HasPrefix(strings.ToLower(c), "basic")) {
		t.Errorf("%s: 401 with challenge %q, want a non-Basic one (browsers prompt for Basic)", label, c)
	}
}

// sendControl sends a control API request as subject from a fresh source
// address.
func (w *world) sendControl(t *testing.T, op ctlOp, req ctlRequest, subject string) response {
	t.Helper()
	hr := newRequest(t, op.method(), w.srv.url(req.path), req.body)
	if req.contentType != "" {
		hr.Header.Set("Content-Type", req.contentType)
	}
	c := w.creds[subject]
	switch {
	case c.apiBearer != "":
		hr.Header.Set("Authorization", "Bearer "+c.apiBearer)
	case c.apiUser != "":
		hr.SetBasicAuth(c.apiUser, c.apiPass)
	}
	return do(t, httpFrom(freshSource()), hr)
}
