package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/cmd/gantry/cli"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

// gantryCLI runs the real gantry command line in-process. The server
// address and credentials come from the environment (GANTRY_SERVER,
// GANTRY_USERNAME, GANTRY_PASSWORD), as for a user.
func gantryCLI(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	code = cli.Execute(ctx, args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// secretForms returns the forms a secret value could be found in: itself,
// its base64 encodings and its hex encoding.
func secretForms(v string) []string {
	b := []byte(v)
	return []string{v,
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b)}
}

// leakChecker collects the known secrets and finds them in text.
type leakChecker struct {
	t       *testing.T
	secrets map[string]string // name -> value
}

func (l *leakChecker) add(name, value string) {
	l.t.Helper()
	if len(value) < 8 {
		l.t.Fatalf("secret %s %q is too short to search for", name, value)
	}
	l.secrets[name] = value
}

// find returns which secrets (in which form) text contains.
func (l *leakChecker) find(text []byte) []string {
	var found []string
	for name, v := range l.secrets {
		for i, form := range secretForms(v) {
			if bytes.Contains(text, []byte(form)) {
				kind := []string{"raw", "base64", "base64 (raw)", "base64url", "base64url (raw)", "hex"}[i]
				found = append(found, name+" ("+kind+")")
			}
		}
	}
	return found
}

// check fails the test if text contains a known secret.
func (l *leakChecker) check(where, text string) {
	l.t.Helper()
	if found := l.find([]byte(text)); len(found) > 0 {
		l.t.Errorf("%s leaks %s:\n%s", where, strings.Join(found, ", "), text)
	}
}

// gitHost is a git smart-HTTP server that refuses every repository and
// echoes the access token it was given in its refusal (as a careless or
// hostile host might), recording the Authorization headers it saw.
type gitHost struct {
	mu    sync.Mutex
	auths []string
}

func (g *gitHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	g.mu.Lock()
	g.auths = append(g.auths, auth)
	g.mu.Unlock()
	token := "(none)"
	if b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic ")); err == nil {
		_, token, _ = strings.Cut(string(b), ":")
	}
	pkt := func(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }
	w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
	fmt.Fprint(w, pkt("# service=git-upload-pack\n")+"0000"+pkt("ERR token "+token+" ("+auth+") may not read this repository\n"))
}

func (g *gitHost) sawAuthorization(want string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range g.auths {
		if a == want {
			return true
		}
	}
	return false
}

// TestSecretsNeverLeak sets known secret values everywhere the issue names
// (a vault secret, a token password, a git access token of a task, a
// plain-text task credential password; also the admin password and a
// webhook secret), uses them (the git token against a git host that echoes
// it back, the vault secret in a run when an engine is available), and
// checks that none of them appears, raw or encoded, in: the server log, the
// -o json output of task show/list, task credential list/add, token
// show/list, keyvault secret list/set, runs and run logs, the error
// messages of failing requests, and, after the server stopped, any file of
// the data directory (database, WAL, logs, keys).
//
// Not parallel: the command line reads its credentials from the
// environment.
func TestSecretsNeverLeak(t *testing.T) {
	engineHost := os.Getenv("DOCKER_HOST")
	var busybox string
	if testenv.HasEngine() {
		dc := dockertest.Engine(t)
		dockertest.Sweep(t, dc)
		busybox = dockertest.BusyboxImage(t, dc, "")
	}
	srv := startServer(t, serverOptions{engine: engineHost})
	cliAsAdmin(t, srv)

	leaks := &leakChecker{t: t, secrets: map[string]string{}}
	vaultValue := "vault-value-" + testenv.RandomHex(12)
	gitToken := "ghp_" + testenv.RandomHex(16)
	credPassword := "cred-password-" + testenv.RandomHex(12)
	leaks.add("vault secret", vaultValue)
	leaks.add("git access token", gitToken)
	leaks.add("git Authorization header", "x-access-token:"+gitToken)
	leaks.add("task credential password", credPassword)
	leaks.add("admin password", srv.adminPassword)

	// ok runs a command that must succeed; its output is checked for leaks
	// unless it is one of the few that show a secret by design.
	ok := func(showsSecret bool, args ...string) string {
		t.Helper()
		out, errOut, code := gantryCLI(args...)
		if code != 0 {
			t.Fatalf("gantry %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		if !showsSecret {
			leaks.check("gantry "+strings.Join(args, " "), out+errOut)
		}
		return out
	}
	// fails runs a command that must fail; its messages are checked.
	fails := func(args ...string) string {
		t.Helper()
		out, errOut, code := gantryCLI(args...)
		if code == 0 {
			t.Fatalf("gantry %s succeeded, want a failure\n%s", strings.Join(args, " "), out)
		}
		leaks.check("failing gantry "+strings.Join(args, " "), out+errOut)
		return errOut
	}

	ok(false, "registry", "create", "-n", "secrets")
	ok(false, "keyvault", "create", "-n", "secret-kv")
	ok(false, "keyvault", "secret", "set", "--vault-name", "secret-kv", "-n", "db-password", "--value", vaultValue, "-o", "json")
	ok(false, "keyvault", "secret", "set", "--vault-name", "secret-kv", "-n", "db-user", "--value", "robot-user")
	ok(false, "keyvault", "secret", "list", "--vault-name", "secret-kv", "-o", "json")
	if out := ok(true, "keyvault", "secret", "show", "--vault-name", "secret-kv", "-n", "db-password", "--query", "value", "-o", "tsv"); strings.TrimSpace(out) != vaultValue {
		t.Fatalf("secret show = %q, want the value", out)
	}

	// Token passwords are shown once, by create.
	tokenPassword := strings.TrimSpace(ok(true, "token", "create", "-r", "secrets", "-n", "leak-token", "--scope-map", "_repositories_pull",
		"--query", "credentials.passwords[0].value", "-o", "tsv"))
	leaks.add("token password", tokenPassword)
	ok(false, "token", "show", "-r", "secrets", "-n", "leak-token", "-o", "json")
	ok(false, "token", "list", "-r", "secrets", "-o", "json")

	// A task with a git access token; its commit trigger polls the git host
	// with it at once.
	host := &gitHost{}
	git := httptest.NewServer(host)
	t.Cleanup(git.Close)
	ok(false, "task", "create", "-r", "secrets", "-n", "git-task", "-c", git.URL+"/repo.git#main", "-f", "acr-task.yaml",
		"--git-access-token", gitToken, "--assign-identity", "-o", "json")
	header := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+gitToken))
	testenv.WaitFor(t, 30*time.Second, "the commit trigger to use the git token", func() bool { return host.sawAuthorization(header) })
	var shown struct {
		Identity struct {
			PrincipalID string `json:"principalId"`
		} `json:"identity"`
		Step struct {
			HasToken bool `json:"hasContextAccessToken"`
		} `json:"step"`
		Trigger struct {
			Source struct {
				LastError string `json:"lastError"`
			} `json:"sourceTrigger"`
		} `json:"trigger"`
	}
	testenv.WaitFor(t, 30*time.Second, "the poll error to be recorded", func() bool {
		if err := json.Unmarshal([]byte(ok(false, "task", "show", "-r", "secrets", "-n", "git-task", "-o", "json")), &shown); err != nil {
			t.Fatal(err)
		}
		return shown.Trigger.Source.LastError != ""
	})
	t.Logf("commit trigger error: %s", shown.Trigger.Source.LastError)
	if !shown.Step.HasToken || !strings.Contains(shown.Trigger.Source.LastError, "***") {
		t.Errorf("task show: hasContextAccessToken %v, lastError %q (want the echoed token masked)", shown.Step.HasToken, shown.Trigger.Source.LastError)
	}
	webhook := strings.TrimSpace(ok(true, "task", "webhook", "show", "-r", "secrets", "-n", "git-task", "--query", "secret", "-o", "tsv"))
	leaks.add("webhook secret", webhook)

	// Task credentials: a plain-text password, and vault URIs shown as
	// given.
	ok(false, "task", "credential", "add", "-r", "secrets", "-n", "git-task", "--login-server", "127.0.0.1:5999",
		"-u", "robot", "-p", credPassword, "-o", "json")
	userURI, passURI := "vault://secret-kv/secrets/db-user", "https://secret-kv.vault.azure.net/secrets/db-password"
	ok(false, "task", "credential", "add", "-r", "secrets", "-n", "git-task", "--login-server", "127.0.0.1:5998",
		"-u", userURI, "-p", passURI, "--use-identity", "[system]", "-o", "json")
	var creds []struct {
		LoginServer string `json:"loginServer"`
		Username    string `json:"username"`
		Password    string `json:"password"`
	}
	if err := json.Unmarshal([]byte(ok(false, "task", "credential", "list", "-r", "secrets", "-n", "git-task", "-o", "json")), &creds); err != nil {
		t.Fatal(err)
	}
	for _, c := range creds {
		switch c.LoginServer {
		case "127.0.0.1:5999":
			if c.Password != "***" {
				t.Errorf("plain-text credential shown as %q, want ***", c.Password)
			}
		case "127.0.0.1:5998":
			if c.Username != userURI || c.Password != passURI {
				t.Errorf("vault credential shown as %q/%q, want the URIs", c.Username, c.Password)
			}
		}
	}
	if len(creds) != 2 {
		t.Errorf("task credential list: %+v", creds)
	}
	ok(false, "task", "show", "-r", "secrets", "-n", "git-task", "-o", "json")
	ok(false, "task", "list", "-r", "secrets", "-o", "json")
	ok(false, "task", "update", "-r", "secrets", "-n", "git-task", "--git-access-token", gitToken, "-o", "json")

	// A run of the git task fails to fetch its context: the error, echoing
	// the token, reaches the run log and the run record masked.
	fails("task", "run", "-r", "secrets", "-n", "git-task")
	ok(false, "task", "list-runs", "-r", "secrets", "-o", "json")
	runID := strings.TrimSpace(ok(false, "task", "list-runs", "-r", "secrets", "-n", "git-task", "--query", "[0].runId", "-o", "tsv"))
	ok(false, "task", "show-run", "-r", "secrets", "--run-id", runID, "-o", "json")
	logs := ok(false, "task", "logs", "-r", "secrets", "--run-id", runID)
	t.Logf("log of the git task's run:\n%s", logs)
	if !strings.Contains(logs, "***") {
		t.Errorf("the run log does not show the masked token:\n%s", logs)
	}

	// Failing requests that carry secrets.
	fails("keyvault", "secret", "set", "--vault-name", "no-such-kv", "-n", "x", "--value", vaultValue)
	fails("keyvault", "secret", "set", "--vault-name", "secret-kv", "-n", "not a name", "--value", vaultValue)
	fails("task", "credential", "add", "-r", "secrets", "-n", "no-such-task", "--login-server", "127.0.0.1:5997", "-u", "u", "-p", credPassword)
	fails("task", "credential", "add", "-r", "secrets", "-n", "git-task", "--login-server", "127.0.0.1:5999", "-u", "u", "-p", credPassword)
	fails("task", "create", "-r", "secrets", "-n", "bad name!", "-c", git.URL+"/repo.git#main", "--git-access-token", gitToken)
	fails("task", "update", "-r", "secrets", "-n", "no-such-task", "--git-access-token", gitToken)
	fails("token", "create", "-r", "no-such-registry", "-n", "leak-token")
	// Logging in with a secret as the password: every API answers 401
	// without echoing it.
	for _, pw := range []string{vaultValue, tokenPassword, gitToken} {
		t.Setenv("GANTRY_PASSWORD", pw)
		fails("registry", "list")
		t.Setenv("GANTRY_USERNAME", "secrets/leak-token")
		fails("keyvault", "list")
		t.Setenv("GANTRY_USERNAME", "admin")
	}
	t.Setenv("GANTRY_PASSWORD", srv.adminPassword)
	reg := srv.loginServer("secrets")
	for _, path := range []string{"/v2/", "/v2/app/manifests/v1", "/oauth2/token?service=" + reg + "&scope=repository:app:pull"} {
		for _, user := range []string{"leak-token", "admin", "nobody-token"} {
			req := newRequest(t, "GET", "http://"+reg+path, nil)
			req.SetBasicAuth(user, vaultValue)
			r := do(t, httpFrom(freshSource()), req)
			if r.status != http.StatusUnauthorized {
				t.Errorf("registry %s as %s with a wrong password: %s", path, user, r)
			}
			leaks.check("registry answer to "+path, string(r.body)+fmt.Sprint(r.header))
		}
	}

	// A run that uses the vault secret: the log shows *** for the value and
	// its base64 form, and a failing step that prints it fails with a
	// masked message.
	if busybox != "" {
		principal := strings.TrimSpace(ok(false, "task", "create", "-r", "secrets", "-n", "echo-task", "-f", writeFile(t, "echo.yaml",
			"version: v1.1.0\nsecrets:\n  - id: pw\n    keyvault: https://secret-kv.vault.azure.net/secrets/db-password\nsteps:\n"+
				"  - id: show\n    cmd: "+busybox+" echo value={{.Secrets.pw}} b64={{.Secrets.pw | b64enc}}\n"),
			"--assign-identity", "--query", "identity.principalId", "-o", "tsv"))
		ok(false, "keyvault", "set-policy", "-n", "secret-kv", "--object-id", principal, "--secret-permissions", "get")
		out := ok(false, "task", "run", "-r", "secrets", "-n", "echo-task")
		t.Logf("log of the run that echoes the secret:\n%s", out)
		if !strings.Contains(out, "value=*** b64=***") {
			t.Errorf("the run log does not show the masked secret:\n%s", out)
		}
		ok(false, "task", "update", "-r", "secrets", "-n", "echo-task", "-f", writeFile(t, "fail.yaml",
			"version: v1.1.0\nsecrets:\n  - id: pw\n    keyvault: vault://secret-kv/secrets/db-password\nsteps:\n"+
				"  - id: fail\n    cmd: "+busybox+" sh -c 'echo \"bad password {{.Secrets.pw}}\" >&2; exit 3'\n"))
		fails("task", "run", "-r", "secrets", "-n", "echo-task")
		failed := ok(false, "task", "list-runs", "-r", "secrets", "-n", "echo-task", "--top", "1", "-o", "json")
		if !strings.Contains(failed, "Failed") {
			t.Errorf("the failing run did not fail: %s", failed)
		}
		t.Logf("log of the failing run:\n%s", ok(false, "task", "logs", "-r", "secrets", "-n", "echo-task"))
	} else {
		t.Log("no DOCKER_HOST: the run log of a run that uses the vault secret is not checked")
	}

	// The server log, then every file of the data directory once the server
	// has stopped (the WAL checkpointed or not).
	leaks.check("the server log", srv.log.String())
	srv.stop()
	files := 0
	err := filepath.WalkDir(srv.cfg.Data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if found := leaks.find(b); len(found) > 0 {
			t.Errorf("%s contains %s", path, strings.Join(found, ", "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 5 {
		t.Fatalf("only %d files in the data directory", files)
	}
}

// writeFile writes a file in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGitTokenStaysWithItsHost checks that a task's stored git access token
// is only ever sent to the host it was given for: whoever may update the
// task (the admin, an owner of the registry) cannot move the context to a
// host of their own and have the commit trigger or a run hand the token
// over. Moving the context to another host needs the token again (or ""
// to drop it); moving within the host keeps it.
func TestGitTokenStaysWithItsHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startServer(t, serverOptions{})
	srv.createRegistry("gitreg", false)
	adm := srv.admin()
	a, b := &gitHost{}, &gitHost{}
	hostA, hostB := httptest.NewServer(a), httptest.NewServer(b)
	t.Cleanup(hostA.Close)
	t.Cleanup(hostB.Close)
	token := "ghp_" + testenv.RandomHex(16)
	header := func(tok string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+tok))
	}
	if _, err := adm.CreateTask(ctx, "gitreg", api.CreateTaskRequest{Name: "moving", Context: hostA.URL + "/repo.git#main",
		File: "acr-task.yaml", GitAccessToken: token}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the commit trigger to poll host A with the token", func() bool { return a.sawAuthorization(header(token)) })

	// To host B without the token: refused, and B never sees it.
	toB := hostB.URL + "/repo.git#main"
	_, err := adm.UpdateTask(ctx, "gitreg", "moving", api.UpdateTaskRequest{Context: &toB})
	if !errors.Is(err, api.ErrInvalid) {
		t.Errorf("moving the context to another host without the token: %v, want INVALID", err)
	}
	if _, err := adm.RunTask(ctx, "gitreg", "moving", api.RunTaskRequest{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // polls and the run
	if b.sawAuthorization(header(token)) {
		t.Fatalf("host B received the token given for host A")
	}
	// Within host A: the token stays.
	otherA := hostA.URL + "/other.git#main"
	if _, err := adm.UpdateTask(ctx, "gitreg", "moving", api.UpdateTaskRequest{Context: &otherA}); err != nil {
		t.Fatalf("moving the context within its host: %v", err)
	}
	// To host B with a token for B: B sees that one only.
	tokenB := "ghp_" + testenv.RandomHex(16)
	if _, err := adm.UpdateTask(ctx, "gitreg", "moving", api.UpdateTaskRequest{Context: &toB, GitAccessToken: &tokenB}); err != nil {
		t.Fatalf("moving the context with a new token: %v", err)
	}
	testenv.WaitFor(t, 30*time.Second, "the commit trigger to poll host B with its token", func() bool { return b.sawAuthorization(header(tokenB)) })
	if b.sawAuthorization(header(token)) {
		t.Fatalf("host B received the token given for host A")
	}
	// Back to host A, dropping the token explicitly.
	none := ""
	if _, err := adm.UpdateTask(ctx, "gitreg", "moving", api.UpdateTaskRequest{Context: &otherA, GitAccessToken: &none}); err != nil {
		t.Fatalf("moving the context and dropping the token: %v", err)
	}
	tk, err := adm.GetTask(ctx, "gitreg", "moving")
	if err != nil || tk.Step.HasContextAccessToken {
		t.Fatalf("after dropping the token: %+v, %v", tk, err)
	}
}
