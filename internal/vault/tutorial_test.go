package vault

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestTutorialTokenFlow is the tutorial's credential flow at the library
// level: a _repositories_pull token on the public registry and a
// "--repository node content/read" token on the base-artifacts registry,
// stored in a vault; a task identity with a get policy resolves them through
// its run credential and uses them: pulls are allowed, pushes denied.
func TestTutorialTokenFlow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	a := e.auth
	testenv.CreateRegistries(t, testenv.Store(t, e.db, t.TempDir()), "publicregistry", "contosobaseartifacts", "contoso")
	// az acr token create ... -o tsv --query credentials.passwords[0].value
	public, err := a.CreateToken(ctx, auth.TokenSpec{Registry: "publicregistry", Name: "registry-publicregistry-user", ScopeMap: auth.ScopeMapPull})
	if err != nil {
		t.Fatal(err)
	}
	base, err := a.CreateToken(ctx, auth.TokenSpec{Registry: "contosobaseartifacts", Name: "registry-contosobaseartifacts-user",
		Repositories: []auth.RepositoryRule{{Repository: "node", Actions: []string{auth.ContentRead}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.CreateVault(ctx, e.admin, "contoso-kv"); err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{
		"registry-publicregistry-user":           public.Name,
		"registry-publicregistry-password":       public.Passwords[0].Value,
		"registry-contosobaseartifacts-user":     base.Name,
		"registry-contosobaseartifacts-password": base.Passwords[0].Value,
	} {
		if _, err := e.v.SetSecret(ctx, e.admin, "contoso-kv", name, value); err != nil {
			t.Fatal(err)
		}
	}
	// task create --assign-identity; keyvault set-policy --secret-permissions get
	ident, err := a.CreateIdentity(ctx, "task:contoso/hello-world")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.SetPolicy(ctx, e.admin, "contoso-kv", ident.ID, []Permission{PermGet}); err != nil {
		t.Fatal(err)
	}

	// The run authenticates with its credential and resolves the task's
	// custom-registry credentials.
	runSecret, err := a.IssueRunCredential(ctx, auth.RunGrant{Registry: "contoso", RunID: "cf1", Principal: ident.ID, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v1/secrets", nil)
	r.Header.Set("Authorization", "Bearer "+runSecret)
	runID, err := a.Authenticate(r, "")
	if err != nil {
		t.Fatal(err)
	}
	resolve := func(uri string) string {
		t.Helper()
		v, err := e.v.Resolve(ctx, runID, uri)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	creds := map[string][2]string{
		"publicregistry": {resolve("https://contoso-kv.vault.azure.net/secrets/registry-publicregistry-user"),
			resolve("https://contoso-kv.vault.azure.net/secrets/registry-publicregistry-password")},
		"contosobaseartifacts": {resolve("vault://contoso-kv/secrets/registry-contosobaseartifacts-user"),
			resolve("vault://contoso-kv/secrets/registry-contosobaseartifacts-password")},
	}

	for _, tc := range []struct {
		registry string
		repo     string
		action   string
		want     error
	}{
		{"publicregistry", "node", auth.ActionPull, nil},
		{"publicregistry", "anything/else", auth.ActionPull, nil},
		{"publicregistry", "node", auth.ActionPush, auth.ErrDenied},
		{"contosobaseartifacts", "node", auth.ActionPull, nil},
		{"contosobaseartifacts", "node", auth.ActionPush, auth.ErrDenied},
		{"contosobaseartifacts", "hello-world", auth.ActionPull, auth.ErrDenied},
	} {
		c := creds[tc.registry]
		req := httptest.NewRequest(http.MethodGet, "/v2/"+tc.repo+"/manifests/15-alpine", nil)
		req.SetBasicAuth(c[0], c[1])
		_, err := a.Authorize(req, tc.registry, []auth.Access{{Type: auth.TypeRepository, Name: tc.repo, Actions: []string{tc.action}}})
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s %s %s: %v, want %v", tc.registry, tc.action, tc.repo, err, tc.want)
		}
		// Neither token works on another registry.
		req = httptest.NewRequest(http.MethodGet, "/v2/node/manifests/15-alpine", nil)
		req.SetBasicAuth(c[0], c[1])
		if _, err := a.Authorize(req, "contoso", []auth.Access{{Type: auth.TypeRepository, Name: "node", Actions: []string{auth.ActionPull}}}); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s token on contoso: %v", tc.registry, err)
		}
	}

	// A run of a task without the policy cannot read the secrets.
	other, err := a.IssueRunCredential(ctx, auth.RunGrant{Registry: "contoso", RunID: "cf2", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r = httptest.NewRequest("GET", "/v1/secrets", nil)
	r.Header.Set("Authorization", "Bearer "+other)
	otherID, err := a.Authenticate(r, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.v.Resolve(ctx, otherID, "https://contoso-kv.vault.azure.net/secrets/registry-publicregistry-password")
	if !errors.Is(err, auth.ErrDenied) || strings.Contains(err.Error(), public.Passwords[0].Value) {
		t.Fatalf("run without policy: %v", err)
	}
	// After the run is revoked its credential no longer authenticates.
	if err := a.RevokeRun(ctx, "contoso", "cf1"); err != nil {
		t.Fatal(err)
	}
	r = httptest.NewRequest("GET", "/v1/secrets", nil)
	r.Header.Set("Authorization", "Bearer "+runSecret)
	if _, err := a.Authenticate(r, ""); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("revoked run: %v", err)
	}
}
