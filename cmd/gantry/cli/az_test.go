package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/httpapi"
	"github.com/gantryhq/gantry/internal/importer"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv/stack"
	"github.com/gantryhq/gantry/internal/vault"
)

// az runs gantry's az command line and checks its exit code.
func az(t *testing.T, wantCode int, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := ExecuteAz(context.Background(), args, strings.NewReader(""), &out, &errOut); code != wantCode {
		t.Fatalf("az %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// TestAzUsageErrors checks the command lines gantry's az refuses: exit code
// 2 and one error line, without the secrets given.
func TestAzUsageErrors(t *testing.T) {
	t.Parallel()
	const supported = "supported: az login|version, az acr import|login, az acr repository list|show-tags, " +
		"az container create|delete|list|logs|show, az keyvault secret show"
	for _, tc := range []struct {
		args []string
		want string
		code int // default 2
	}{
		{[]string{"group", "create", "--name", "rg", "--location", "westus"}, "ERROR: 'az group create' is not supported by gantry's az; " + supported, 0},
		{[]string{"acr", "build", "-r", "contoso", "-t", "hello:1", "."}, "'az acr build' is not supported", 0},
		{[]string{"-o", "json", "storage", "blob", "upload", "--file", "x"}, "'az storage blob upload' is not supported", 0},
		{[]string{"acr", "repository", "delete", "-n", "contoso", "--repository", "hello"}, "'az acr repository delete' is not supported", 0},
		{[]string{"keyvault", "secret", "set", "--vault-name", "kv", "-n", "s", "--value", "v"}, "'az keyvault secret set' is not supported", 0},
		{[]string{"container", "create", "-n", "web", "--image", "img", "--bogus-flag", "1"}, "az container create: unknown flag: --bogus-flag", 0},
		{[]string{"acr", "login", "-n", "contoso", "-x"}, "az acr login: unknown shorthand flag: 'x' in -x", 0},
		{[]string{"acr", "import", "-n", "contoso"}, `az acr import: required flag(s) "source" not set`, 0},
		{[]string{"login", "--identity", "-u", "client-id"}, "user-assigned identities", 0},
		{[]string{"keyvault", "secret", "show", "--vault-name", "kv"}, "give --id, or --vault-name and --name", 0},
		// Secrets never reach an error message.
		{[]string{"container", "create", "-n", "web", "--image", "img", "--registry-password", "pw-s3cret", "pw-s3cret"}, `unexpected argument "***"`, 0},
		{[]string{"container", "create", "-n", "web", "--image", "img", "--secure-environment-variables", "v4lue"}, `--secure-environment-variables "***": want KEY=VALUE`, 1},
		{[]string{"acr", "import", "-n", "contoso", "--source", "x", "-ppw-s3cret", "pw-s3cret"}, `unknown command "***"`, 0},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code := tc.code
			if code == 0 {
				code = 2
			}
			_, errOut := az(t, code, tc.args...)
			if !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "ERROR: ") {
				t.Errorf("stderr = %q, want one ERROR line with %q", errOut, tc.want)
			}
			if strings.Contains(errOut, "s3cret") || strings.Contains(errOut, "v4lue") {
				t.Errorf("a secret reached the error: %q", errOut)
			}
		})
	}

	// `gantry az` is the same command line.
	var out, errOut bytes.Buffer
	code := Execute(context.Background(), []string{"az", "group", "create", "-n", "rg"}, strings.NewReader(""), &out, &errOut)
	if code != 2 || !strings.HasPrefix(errOut.String(), "ERROR: 'az group create' is not supported by gantry's az; supported: az login") {
		t.Errorf("gantry az group create: exit %d, %q", code, errOut.String())
	}
	// A group alone prints its help, as az does.
	if out, _ := az(t, 0, "acr"); !strings.Contains(out, "repository") {
		t.Errorf("az acr:\n%s", out)
	}
}

// azServer is an in-process control API with the importer, and the
// registry contoso served on its own listener.
type azServer struct {
	au          *auth.Service
	vlt         *vault.Service
	st          *store.Store
	admin       auth.Identity
	loginServer string
}

func startAzServer(t *testing.T) *azServer {
	t.Helper()
	ctx := t.Context()
	sk := stack.New(t, "")
	d := sk.DB
	s := &azServer{st: sk.Store, au: sk.Auth, vlt: sk.Vault, admin: sk.Admin(t, "admin-password")}
	log := slog.New(slog.DiscardHandler)
	im := importer.New(d, s.st, s.vlt, s.au, importer.WithLogger(log))
	ictx, stop := context.WithCancel(context.Background())
	if err := im.Start(ictx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); im.Wait() })
	ctl := httptest.NewServer(httpapi.New(s.st, s.au, s.vlt, stack.NoRegistries{}, httpapi.WithImporter(im), httpapi.WithLogger(log)))
	t.Cleanup(ctl.Close)
	reg := httptest.NewServer(registry.New("contoso", s.st, registry.WithAuthorizer(s.au)))
	t.Cleanup(reg.Close)
	s.loginServer = reg.Listener.Addr().String()
	if _, err := s.st.CreateRegistry(ctx, store.Registry{Name: "contoso", Listen: s.loginServer}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.st.CreateRegistry(ctx, store.Registry{Name: "publicregistry"}); err != nil {
		t.Fatal(err)
	}

	useServer(t, ctl.URL, auth.AdminUsername, "admin-password")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", "")
	return s
}

// dockerAuth returns the user and password config.json holds for server.
func dockerAuth(t *testing.T, server string) (user, password string) {
	t.Helper()
	p := filepath.Join(os.Getenv("HOME"), ".docker", "config.json")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(p)
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(cfg.Auths[server].Auth)
	if err != nil {
		t.Fatal(err)
	}
	user, password, _ = strings.Cut(string(raw), ":")
	return user, password
}

// registryAccepts reports whether the registry at server answers GET /v2/
// with user and password, as docker login checks them.
func registryAccepts(t *testing.T, server, user, password string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+server+"/v2/", nil)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestAzCommands runs every az command but the container ones against an
// in-process server: first as admin, then with a run credential as a task
// step gets it in GANTRY_TOKEN.
func TestAzCommands(t *testing.T) {
	s := startAzServer(t)
	ctx := t.Context()
	digest := putImage(t, s.st, "publicregistry", "hello-world", "cb1", "hello")
	if _, err := s.vlt.CreateVault(ctx, s.admin, "contoso-kv"); err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{"registry-contoso-user": "deployer", "registry-contoso-password": "pa55-w0rd"} {
		if _, err := s.vlt.SetSecret(ctx, s.admin, "contoso-kv", name, value); err != nil {
			t.Fatal(err)
		}
	}

	// az login -u/-p logs in as gantry login does.
	out, _ := az(t, 0, "login", "-u", "admin", "-p", "admin-password")
	var accounts []azAccount
	if err := json.Unmarshal([]byte(out), &accounts); err != nil || len(accounts) != 1 ||
		accounts[0].User != (azUser{Name: "admin", Type: "user"}) || !accounts[0].IsDefault || accounts[0].State != "Enabled" {
		t.Errorf("az login -u -p:\n%s (%v)", out, err)
	}
	if saved, err := loadLogin(); err != nil || saved.Username != "admin" {
		t.Errorf("saved login %+v (%v)", saved, err)
	}
	if _, errOut := az(t, 1, "login", "-u", "admin", "-p", "wrong-password"); !strings.Contains(errOut, "ERROR:") || strings.Contains(errOut, "wrong-password") {
		t.Errorf("login with a wrong password: %q", errOut)
	}

	// az acr import, then the repository commands with az's -n.
	out, _ = az(t, 0, "acr", "import", "--name", "contoso", "-g", "rg", "--source", "gantry://publicregistry/hello-world:cb1",
		"--image", "hello-world:cb1", "--image", "hello-world:latest", "--query", "digest", "-o", "tsv")
	if strings.TrimSpace(out) != digest {
		t.Errorf("import digest %q, want %s", out, digest)
	}
	if out, _ := az(t, 0, "acr", "repository", "list", "-n", "contoso", "-o", "tsv"); out != "hello-world\n" {
		t.Errorf("repository list: %q", out)
	}
	if out, _ := az(t, 0, "acr", "repository", "show-tags", "-n", "contoso", "--repository", "hello-world", "-o", "tsv"); out != "cb1\nlatest\n" {
		t.Errorf("show-tags: %q", out)
	}
	out, _ = az(t, 0, "acr", "repository", "show-tags", "--name", "contoso", "--repository", "hello-world", "--orderby", "time_desc", "--top", "1")
	var tags []string
	if err := json.Unmarshal([]byte(out), &tags); err != nil || len(tags) != 1 {
		t.Errorf("show-tags --top 1 (az's default output is json): %s (%v)", out, err)
	}

	// az keyvault secret show in az's shape.
	if out, _ := az(t, 0, "keyvault", "secret", "show", "--vault-name", "contoso-kv", "-n", "registry-contoso-user", "--query", "value", "-o", "tsv"); out != "deployer\n" {
		t.Errorf("secret show --query value -o tsv: %q", out)
	}
	out, _ = az(t, 0, "keyvault", "secret", "show", "--id", "https://contoso-kv.vault.azure.net/secrets/registry-contoso-password")
	var sec azSecret
	if err := json.Unmarshal([]byte(out), &sec); err != nil || sec.Value != "pa55-w0rd" || sec.Name != "registry-contoso-password" ||
		!strings.HasPrefix(sec.ID, "https://contoso-kv.vault.azure.net/secrets/registry-contoso-password/") || !sec.Attributes.Enabled {
		t.Errorf("secret show --id:\n%s (%v)", out, err)
	}
	if _, errOut := az(t, 1, "keyvault", "secret", "show", "--vault-name", "contoso-kv", "-n", "missing"); !strings.Contains(errOut, "not found") {
		t.Errorf("missing secret: %q", errOut)
	}

	// az acr login saves the login for docker, next to what is there.
	cfgPath := filepath.Join(os.Getenv("HOME"), ".docker", "config.json")
	if err := os.MkdirAll(filepath.Dir(cfgPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(`{"auths":{"other.example:5000":{"auth":"b3RoZXI6eA=="}},"detachKeys":"ctrl-x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := az(t, 0, "acr", "login", "-n", "contoso"); out != "Login Succeeded\n" {
		t.Errorf("acr login: %q", out)
	}
	if user, pw := dockerAuth(t, s.loginServer); user != "admin" || !registryAccepts(t, s.loginServer, user, pw) {
		t.Errorf("the saved login (user %q) does not work on %s", user, s.loginServer)
	}
	b, _ := os.ReadFile(cfgPath)
	if !strings.Contains(string(b), `"other.example:5000"`) || !strings.Contains(string(b), `"detachKeys": "ctrl-x"`) {
		t.Errorf("config.json lost other settings:\n%s", b)
	}
	if _, errOut := az(t, 1, "acr", "login", "-n", "contoso", "--expose-token"); !strings.Contains(errOut, "GANTRY_TOKEN") || strings.Contains(errOut, "admin-password") {
		t.Errorf("--expose-token without a run identity: %q", errOut)
	}

	out, _ = az(t, 0, "version")
	var version map[string]string
	if err := json.Unmarshal([]byte(out), &version); err != nil || version["client"] == "" || version["server"] == "" {
		t.Errorf("az version: %s (%v)", out, err)
	}
	if out2, _ := az(t, 0, "--version"); out2 != out {
		t.Errorf("az --version = %q, az version = %q", out2, out)
	}

	// A task step: no login, a run credential of a task identity in
	// GANTRY_TOKEN, a vault policy for the identity.
	if _, errOut := az(t, 1, "login", "--identity"); !strings.Contains(errOut, "GANTRY_TOKEN") {
		t.Errorf("login --identity without GANTRY_TOKEN: %q", errOut)
	}
	ident, err := s.au.CreateIdentity(ctx, "task:contoso/hello-world")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.vlt.SetPolicy(ctx, s.admin, "contoso-kv", ident.ID, []vault.Permission{vault.PermGet}); err != nil {
		t.Fatal(err)
	}
	token, err := s.au.IssueRunCredential(ctx, auth.RunGrant{Registry: "contoso", RunID: "cb1", Principal: ident.ID,
		Name: "task:contoso/hello-world", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(os.Getenv("GANTRY_CONFIG_DIR"), "login.json")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GANTRY_USERNAME", "")
	t.Setenv("GANTRY_PASSWORD", "")
	t.Setenv("GANTRY_TOKEN", token)

	// The hello-world task file's steps.
	az(t, 0, "login", "--identity")
	out, _ = az(t, 0, "login", "--identity")
	if err := json.Unmarshal([]byte(out), &accounts); err != nil || len(accounts) != 1 ||
		accounts[0].User != (azUser{AssignedIdentityInfo: "MSI", Name: "systemAssignedIdentity", Type: "servicePrincipal"}) ||
		accounts[0].ID != ident.ID || accounts[0].Name != "task:contoso/hello-world" {
		t.Errorf("az login --identity:\n%s (%v)", out, err)
	}
	if out, _ := az(t, 0, "keyvault", "secret", "show", "--id", "https://contoso-kv.vault.azure.net/secrets/registry-contoso-user", "--query", "value", "-o", "tsv"); out != "deployer\n" {
		t.Errorf("secret show as the identity: %q", out)
	}
	if out, _ := az(t, 0, "acr", "repository", "show-tags", "-n", "contoso", "--repository", "hello-world", "-o", "tsv"); out != "cb1\nlatest\n" {
		t.Errorf("show-tags as the run: %q", out)
	}
	out, errOut := az(t, 0, "acr", "login", "-n", s.loginServer, "--expose-token")
	var exposed map[string]string
	if err := json.Unmarshal([]byte(out), &exposed); err != nil || exposed["accessToken"] != token || exposed["loginServer"] != s.loginServer ||
		!strings.Contains(errOut, "docker login loginServer -u 00000000-0000-0000-0000-000000000000 -p accessToken") {
		t.Errorf("--expose-token:\n%s%s (%v)", out, errOut, err)
	}
	if !registryAccepts(t, s.loginServer, azTokenUser, token) {
		t.Errorf("the registry refuses the exposed token with az's user name")
	}
	if out, _ := az(t, 0, "acr", "login", "-n", s.loginServer); out != "Login Succeeded\n" {
		t.Errorf("acr login as the run: %q", out)
	}
	if user, pw := dockerAuth(t, s.loginServer); user != azTokenUser || pw != token {
		t.Errorf("saved docker login for the run: user %q", user)
	}
	// Reading the registry by name needs the owner role.
	if _, errOut := az(t, 1, "acr", "login", "-n", "contoso"); !strings.Contains(errOut, "give the login server instead") || strings.Contains(errOut, token) {
		t.Errorf("acr login -n contoso as the run: %q", errOut)
	}

	// A revoked credential fails, and is not echoed.
	if err := s.au.RevokeRun(ctx, "contoso", "cb1"); err != nil {
		t.Fatal(err)
	}
	s.au.Invalidate()
	if _, errOut := az(t, 1, "login", "--identity"); !strings.Contains(errOut, "ERROR:") || strings.Contains(errOut, token) {
		t.Errorf("login --identity with a revoked credential: %q", errOut)
	}
}

// TestAzContainerCommands runs the hello-world task file's deploy step, as
// a shell splits it, and the other container commands on the engine.
func TestAzContainerCommands(t *testing.T) {
	image, reg, serverLog := startContainerServer(t)
	var all strings.Builder
	run := func(wantCode int, args ...string) string {
		t.Helper()
		out, errOut := az(t, wantCode, args...)
		all.WriteString(out + errOut)
		return out
	}

	// cmd: >
	//   az container create --resource-group "{{.Values.ACI_RG}}" --name "{{.Values.ACI}}"
	//   --image "{{.Run.Registry}}/hello-world:{{.Run.ID}}" --registry-username "{{index .Secrets "registry-user"}}"
	//   --registry-password "{{index .Secrets "registry-password"}}" --ip-address public --ports 80
	out := run(0, "container", "create", "--resource-group", "hello-world-rg", "--name", "hello-world", "--image", image,
		"--registry-username", reg.Username, "--registry-password", reg.Password, "--ip-address", "public", "--ports", "80")
	var created struct{ Operation, State string }
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Operation != "Created" || created.State != "Running" {
		t.Fatalf("az container create:\n%s (%v)", out, err)
	}
	// az's space-separated environment variables.
	run(0, "container", "create", "-g", "rg", "-n", "hello-world", "--image", image, "-e", "MSG=hello", "OTHER=x", "-o", "none")
	url := strings.TrimSpace(run(0, "container", "show", "-g", "rg", "-n", "hello-world", "--query", "ipAddress.url", "-o", "tsv"))
	if got := fetch(t, url); got != "hello" {
		t.Errorf("GET %s = %q", url, got)
	}
	if out := run(0, "container", "logs", "-g", "rg", "-n", "hello-world"); !strings.Contains(out, "serving on") {
		t.Errorf("az container logs: %q", out)
	}
	run(0, "container", "delete", "-g", "rg", "-n", "hello-world", "--yes")
	if _, errOut := az(t, 1, "container", "show", "-n", "hello-world"); !strings.Contains(errOut, "not found") {
		t.Errorf("show after delete: %q", errOut)
	}
	if strings.Contains(all.String(), reg.Password) || strings.Contains(serverLog.String(), reg.Password) {
		t.Errorf("the registry password reached the output or the server log")
	}
}
