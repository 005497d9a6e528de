package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/server"
)

// startServer runs a real gantry server (no engine) in-process and points
// the CLI at it through the environment, as a user's shell would.
func startServer(t *testing.T) (controlURL string) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Data = filepath.Join(dir, "data")
	cfg.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{AdminPassword: "cli-test-admin", Ready: func(a string) { ready <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case addr := <-ready:
		controlURL = "http://" + addr
	case err := <-done:
		t.Fatalf("server: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not start")
	}
	t.Setenv("GANTRY_SERVER", controlURL)
	t.Setenv("GANTRY_CONFIG_DIR", filepath.Join(dir, "cli"))
	t.Setenv("GANTRY_USERNAME", "")
	t.Setenv("GANTRY_PASSWORD", "")
	t.Setenv("GANTRY_TOKEN", "")
	return controlURL
}

// gantry runs the real command line and returns its exit code and output.
func gantry(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Execute(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// must runs a command that must succeed and returns its stdout.
func must(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := gantry(t, "", args...)
	if code != 0 {
		t.Fatalf("gantry %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// pushImage pushes a one-layer image over the OCI API with Basic auth and
// returns the manifest digest.
func pushImage(t *testing.T, registry, repo, tag, layer string) string {
	t.Helper()
	put := func(url, ctype string, body []byte) *http.Response {
		req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
		req.SetBasicAuth("admin", "cli-test-admin")
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %s", url, resp.Status)
		}
		return resp
	}
	digestOf := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
	blob := func(b []byte) string { return uploadBlob(t, registry, repo, b) }
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(cfg), "size": len(cfg)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob([]byte(layer)), "size": len(layer)}},
	})
	put("http://"+registry+"/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", manifest)
	return digestOf(manifest)
}

// TestRegistryAndRepositoryCommands drives the registry and repository
// commands against a real server, in every output format.
func TestRegistryAndRepositoryCommands(t *testing.T) {
	startServer(t)

	// Without credentials the CLI says how to log in.
	code, _, errOut := gantry(t, "", "registry", "list")
	if code != 1 || !strings.Contains(errOut, "gantry login") {
		t.Fatalf("unauthenticated: exit %d, %q", code, errOut)
	}
	if code, _, errOut := gantry(t, "wrong\n", "login", "-u", "admin", "--password-stdin"); code != 1 || !strings.Contains(errOut, "ERROR:") {
		t.Fatalf("login with a wrong password: exit %d, %q", code, errOut)
	}
	if code, _, errOut := gantry(t, "cli-test-admin\n", "login", "-u", "admin", "--password-stdin"); code != 0 || !strings.Contains(errOut, "Login succeeded as admin") {
		t.Fatalf("login: exit %d, %q", code, errOut)
	}

	addr := freeAddr(t)
	out := must(t, "registry", "create", "-n", "contoso", "--listen", addr, "-o", "table")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME     LOGIN SERVER") || !strings.HasPrefix(lines[1], "-------") || !strings.Contains(lines[2], addr) {
		t.Fatalf("registry create -o table:\n%s", out)
	}
	if got := strings.TrimSpace(must(t, "registry", "show", "-n", "contoso", "--query", "loginServer", "-o", "tsv")); got != addr {
		t.Fatalf("--query loginServer -o tsv = %q, want %q", got, addr)
	}
	if out := must(t, "registry", "list", "-o", "yaml"); !strings.Contains(out, "name: contoso") {
		t.Fatalf("registry list -o yaml:\n%s", out)
	}
	code, _, errOut = gantry(t, "", "registry", "create", "-n", "contoso", "--listen", freeAddr(t))
	if code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("duplicate registry: exit %d, %q", code, errOut)
	}
	code, _, errOut = gantry(t, "", "registry", "create", "-n", "other", "--listen", "nohost")
	if code != 1 || !strings.Contains(errOut, "listen") {
		t.Fatalf("bad listen address: exit %d, %q", code, errOut)
	}

	d1 := pushImage(t, addr, "samples/hello", "v1", "layer one")
	d2 := pushImage(t, addr, "samples/hello", "v1", "layer two") // moves v1
	pushImage(t, addr, "samples/hello", "v2", "layer two")

	if out := must(t, "repository", "list", "-r", "contoso", "-o", "tsv"); strings.TrimSpace(out) != "samples/hello" {
		t.Fatalf("repository list -o tsv = %q", out)
	}
	if out := must(t, "repository", "show-tags", "-r", "contoso", "--repository", "samples/hello", "-o", "tsv"); out != "v1\nv2\n" {
		t.Fatalf("show-tags -o tsv = %q", out)
	}
	out = must(t, "repository", "show-tags", "-r", "contoso", "--repository", "samples/hello", "--detail", "-o", "json")
	var tags []struct{ Name, Digest string }
	if err := json.Unmarshal([]byte(out), &tags); err != nil || len(tags) != 2 || tags[0].Digest != d2 {
		t.Fatalf("show-tags --detail -o json = %s (%v)", out, err)
	}
	if out := must(t, "repository", "show-manifests", "-r", "contoso", "--repository", "samples/hello", "--query", "length(@)"); strings.TrimSpace(out) != "2" {
		t.Fatalf("show-manifests count = %q, want 2", out)
	}
	out = must(t, "repository", "show-tag-history", "-r", "contoso", "--image", "samples/hello:v1", "-o", "json")
	var history []struct {
		Digest, PreviousDigest, PushedByName string
	}
	if err := json.Unmarshal([]byte(out), &history); err != nil || len(history) != 2 ||
		history[1].Digest != d2 || history[1].PreviousDigest != d1 || history[1].PushedByName != "admin" {
		t.Fatalf("tag history = %s (%v)", out, err)
	}

	must(t, "repository", "untag", "-r", "contoso", "--image", "samples/hello:v1")
	if out := must(t, "repository", "show-tags", "-r", "contoso", "--repository", "samples/hello", "-o", "tsv"); out != "v2\n" {
		t.Fatalf("after untag: %q", out)
	}
	must(t, "repository", "delete", "-r", "contoso", "--image", "samples/hello@"+d1)
	if out := must(t, "repository", "show-manifests", "-r", "contoso", "--repository", "samples/hello", "--query", "[].digest", "-o", "tsv"); strings.TrimSpace(out) != d2 {
		t.Fatalf("after deleting %s: %q", d1, out)
	}
	must(t, "repository", "delete", "-r", "contoso", "--repository", "samples/hello")
	code, _, errOut = gantry(t, "", "repository", "show-tags", "-r", "contoso", "--repository", "samples/hello")
	if code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("show-tags of a deleted repository: exit %d, %q", code, errOut)
	}

	must(t, "logout")
	if code, _, _ := gantry(t, "", "registry", "list"); code != 1 {
		t.Fatal("still logged in after logout")
	}
}

// TestTokenAndVaultCommands checks the tutorial's shell idioms: a token's
// first password with --query ... -o tsv, and a secret's value.
func TestTokenAndVaultCommands(t *testing.T) {
	startServer(t)
	t.Setenv("GANTRY_USERNAME", "admin")
	t.Setenv("GANTRY_PASSWORD", "cli-test-admin")
	addr := freeAddr(t)
	must(t, "registry", "create", "-n", "publicregistry", "--listen", addr, "-o", "none")

	pw := strings.TrimSpace(must(t, "token", "create", "--name", "registry-publicregistry-user", "--registry", "publicregistry",
		"--repository", "node", "content/read", "metadata/read", "-o", "tsv", "--query", "credentials.passwords[0].value"))
	if len(pw) < 32 || strings.ContainsAny(pw, " \t\n\"") {
		t.Fatalf("token password from --query -o tsv: %q", pw)
	}
	if out := must(t, "scope-map", "show", "-r", "publicregistry", "-n", "registry-publicregistry-user-scope-map", "--query", "actions", "-o", "tsv"); out != "repositories/node/content/read\nrepositories/node/metadata/read\n" {
		t.Fatalf("the token's scope map: %q", out)
	}
	if out := must(t, "token", "show", "-r", "publicregistry", "-n", "registry-publicregistry-user"); strings.Contains(out, pw) {
		t.Fatal("token show prints the password")
	}
	out := must(t, "token", "list", "-r", "publicregistry", "-o", "table")
	if !strings.Contains(out, "PASSWORD1 EXPIRY") || !strings.Contains(out, "registry-publicregistry-user") {
		t.Fatalf("token list -o table:\n%s", out)
	}

	must(t, "keyvault", "create", "--name", "acr-task-credentials", "-o", "none")
	if out := must(t, "keyvault", "secret", "set", "--vault-name", "acr-task-credentials", "--name", "registry-publicregistry-password", "--value", pw); strings.Contains(out, pw) {
		t.Fatal("secret set echoes the value")
	}
	if got := strings.TrimSpace(must(t, "keyvault", "secret", "show", "--vault-name", "acr-task-credentials", "--name", "registry-publicregistry-password", "--query", "value", "-o", "tsv")); got != pw {
		t.Fatalf("secret show --query value = %q", got)
	}
	if out := must(t, "keyvault", "secret", "list", "--vault-name", "acr-task-credentials"); strings.Contains(out, pw) {
		t.Fatal("secret list prints a value")
	}

	// The token logs in to its registry and nowhere else.
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v2/", addr), nil)
	req.SetBasicAuth("registry-publicregistry-user", pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ with the token: %s", resp.Status)
	}
	code, _, errOut := gantry(t, "", "token", "create", "--name", "badtoken", "-r", "publicregistry", "--repository", "node/*/x", "content/read")
	if code != 1 || !strings.Contains(errOut, "node/*/x") {
		t.Fatalf("invalid wildcard: exit %d, %q", code, errOut)
	}
}

// TestTaskCommands creates a task from a local file (no context) and manages
// its timers and credentials; no run is started, so no engine is needed.
func TestTaskCommands(t *testing.T) {
	startServer(t)
	t.Setenv("GANTRY_USERNAME", "admin")
	t.Setenv("GANTRY_PASSWORD", "cli-test-admin")
	must(t, "registry", "create", "-n", "contoso", "--listen", freeAddr(t), "-o", "none")
	file := filepath.Join(t.TempDir(), "nightly.yaml")
	if err := os.WriteFile(file, []byte("version: v1.1.0\nsteps:\n  - cmd: gantry version\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "task", "create", "-r", "contoso", "-n", "nightly", "-f", file, "--schedule", "0 21 * * *", "--assign-identity", "-o", "none")
	out := must(t, "task", "show", "-r", "contoso", "-n", "nightly", "-o", "table")
	if !strings.Contains(out, "nightly") || !strings.Contains(out, "BASE_IMAGE, TIMER") {
		t.Fatalf("task show -o table:\n%s", out)
	}
	if id := strings.TrimSpace(must(t, "task", "show", "-r", "contoso", "-n", "nightly", "--query", "identity.principalId", "-o", "tsv")); len(id) != 36 {
		t.Fatalf("identity.principalId = %q", id)
	}
	if out := must(t, "task", "show", "-r", "contoso", "-n", "nightly", "--query", "step.baseImageDependenciesStatus", "-o", "tsv"); !strings.Contains(out, "none yet") {
		t.Fatalf("a task that never ran must say it tracks no base images yet: %q", out)
	}

	must(t, "task", "timer", "add", "-r", "contoso", "-n", "nightly", "--timer-name", "morning", "--schedule", "30 9 * Jan Mon", "-o", "none")
	must(t, "task", "timer", "update", "-r", "contoso", "-n", "nightly", "--timer-name", "t1", "--enabled", "false", "-o", "none")
	out = must(t, "task", "timer", "list", "-r", "contoso", "-n", "nightly", "--query", "[].[name,schedule,status]", "-o", "tsv")
	if out != "morning\t30 9 * Jan Mon\tEnabled\nt1\t0 21 * * *\tDisabled\n" {
		t.Fatalf("timer list = %q", out)
	}
	code, _, errOut := gantry(t, "", "task", "timer", "add", "-r", "contoso", "-n", "nightly", "--timer-name", "bad", "--schedule", "* * *")
	if code != 1 || !strings.Contains(errOut, "5 (minute hour day month weekday, UTC)") {
		t.Fatalf("bad schedule: exit %d, %q", code, errOut)
	}
	must(t, "task", "timer", "remove", "-r", "contoso", "-n", "nightly", "--timer-name", "morning", "-o", "none")

	must(t, "task", "credential", "add", "-r", "contoso", "-n", "nightly", "--login-server", "127.0.0.1:5999",
		"-u", "vault://mykv/secrets/user", "-p", "plain-text-password", "-o", "none")
	out = must(t, "task", "credential", "list", "-r", "contoso", "-n", "nightly", "-o", "json")
	if strings.Contains(out, "plain-text-password") || !strings.Contains(out, "vault://mykv/secrets/user") || !strings.Contains(out, "***") {
		t.Fatalf("credential list must show the URI and hide the password:\n%s", out)
	}
	must(t, "task", "credential", "add", "-r", "contoso", "-n", "nightly", "--login-server", "127.0.0.1:5998", "--use-identity", "[system]", "-o", "none")
	if out := must(t, "task", "credential", "list", "-r", "contoso", "-n", "nightly", "--query", "[?loginServer=='127.0.0.1:5998'].identity", "-o", "tsv"); strings.TrimSpace(out) != "system" {
		t.Fatalf("--use-identity [system]: %q", out)
	}
	if out := must(t, "task", "list-runs", "-r", "contoso", "-o", "table"); out != "" && !strings.HasPrefix(out, "RUN ID") {
		t.Fatalf("list-runs -o table:\n%s", out)
	}
	must(t, "task", "delete", "-r", "contoso", "-n", "nightly")
	if code, _, _ := gantry(t, "", "task", "show", "-r", "contoso", "-n", "nightly"); code != 1 {
		t.Fatal("task still there after delete")
	}
}

// TestExitCodes: 0 success, 1 a failed operation, 2 a usage error (an
// unknown command, subcommand or flag, a missing argument or required
// flag), with one message that does not repeat itself.
func TestExitCodes(t *testing.T) {
	startServer(t)
	t.Setenv("GANTRY_USERNAME", "admin")
	t.Setenv("GANTRY_PASSWORD", "cli-test-admin")
	must(t, "registry", "create", "-n", "contoso", "--listen", freeAddr(t), "-o", "none")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"version"}, 0, ""},
		{[]string{"task", "show", "-r", "contoso", "-n", "nopetask"}, 1, `ERROR: task "nopetask" in registry "contoso": not found`},
		{[]string{"task", "logs", "-r", "contoso", "--run-id", "zz1"}, 1, `ERROR: run "zz1" in registry "contoso": not found`},
		{[]string{"repository", "show-tags", "-r", "contoso", "--repository", "nope"}, 1, `ERROR: repository "nope" in registry "contoso": not found`},
		{[]string{"task"}, 0, ""},
		{[]string{"nosuch"}, 2, `ERROR: unknown command "nosuch" for "gantry"`},
		{[]string{"task", "nosuch"}, 2, `ERROR: unknown command "nosuch" for "gantry task"`},
		{[]string{"registry", "list", "--bogus"}, 2, "ERROR: gantry registry list: unknown flag: --bogus"},
		{[]string{"task", "show", "-n", "x"}, 2, `ERROR: gantry task show: required flag(s) "registry" not set`},
		{[]string{"login", "extra"}, 2, `ERROR: unknown command "extra" for "gantry login"`},
		{[]string{"task", "list", "-r", "nope"}, 1, "ERROR: registry nope not found"},
		{[]string{"registry", "show", "-n", "nope"}, 1, "ERROR: registry nope not found"},
		{[]string{"import", "-r", "contoso", "--source", "127.0.0.1:1/x:1", "-t", "x:1"}, 1, ""},
	} {
		code, _, errOut := gantry(t, "", tc.args...)
		if code != tc.code || !strings.HasPrefix(errOut, tc.msg) {
			t.Errorf("gantry %s: exit %d %q, want %d %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.msg)
		}
		if strings.Count(errOut, "not found") > 1 || strings.Count(errOut, "127.0.0.1:1/v2") > 1 {
			t.Errorf("gantry %s: repeated words: %q", strings.Join(tc.args, " "), errOut)
		}
	}
}
