package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

// buildGantry builds the gantry binary into a temporary directory with
// docker-credential-gantry beside it (a symlink, as users install it) and
// returns the directory.
func buildGantry(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "gantry")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gantryhq/gantry/cmd/gantry")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Symlink("gantry", filepath.Join(dir, CredentialHelperName)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// helperRun runs docker-credential-gantry ACTION with stdin and extra
// environment, as Docker runs it.
func helperRun(t *testing.T, env []string, action, stdin string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(CredentialHelperName, action)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %s: %v", CredentialHelperName, action, err)
	}
	return code, out.String(), errOut.String()
}

const notFound = "credentials not found in native keychain\n"

// TestRegistryLoginCredentialHelper configures Docker with gantry registry
// login and has the real docker CLI, crane, oras and skopeo push and pull
// through docker-credential-gantry, with nothing but the helper in the
// Docker config.
func TestRegistryLoginCredentialHelper(t *testing.T) {
	url := startServer(t)
	ctx := context.Background()
	if code, _, errOut := gantry(t, "cli-test-admin\n", "login", "-u", "admin", "--password-stdin"); code != 0 {
		t.Fatalf("login: %s", errOut)
	}
	addr := freeAddr(t)
	must(t, "registry", "create", "-n", "contoso", "--listen", addr)
	_, port, _ := strings.Cut(addr, ":")

	// Docker's config keeps its other entries; a password saved for the
	// registry earlier goes (the helper supersedes it).
	cfgDir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfgDir)
	cfgPath := filepath.Join(cfgDir, "config.json")
	if err := os.WriteFile(cfgPath, []byte(`{"auths":{"other.example.com":{"auth":"dTpw"},"`+addr+`":{"auth":"c3RhbGU6c3RhbGU="}},"psFormat":"table"}`), 0o644); err != nil {
		t.Fatal(err)
	}

	// Without the helper on PATH, login says how to install it.
	path := os.Getenv("PATH")
	if _, err := exec.LookPath(CredentialHelperName); err == nil {
		t.Fatalf("%s is on PATH already", CredentialHelperName)
	}
	code, _, errOut := gantry(t, "", "registry", "login", "-n", "contoso")
	if code != 1 || !strings.Contains(errOut, "ln -s") || !strings.Contains(errOut, "--store-password") {
		t.Fatalf("login without the helper: exit %d, %q", code, errOut)
	}

	t.Setenv("PATH", buildGantry(t)+string(os.PathListSeparator)+path)
	if out := must(t, "registry", "login", "-n", "contoso"); out != "Login Succeeded\n" {
		t.Fatalf("registry login: %q", out)
	}
	var cfg struct {
		Auths       map[string]map[string]string
		CredHelpers map[string]string
		PsFormat    string
	}
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.CredHelpers[addr] != "gantry" || cfg.Auths["other.example.com"]["auth"] != "dTpw" || cfg.Auths[addr] != nil || cfg.PsFormat != "table" {
		t.Fatalf("docker config after registry login:\n%s", b)
	}
	if fi, err := os.Stat(cfgPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("docker config mode: %v %v", fi.Mode(), err)
	}

	t.Run("helper", func(t *testing.T) {
		for _, server := range []string{addr, "http://" + addr, "https://" + addr + "/v2/", "localhost:" + port} {
			code, out, errOut := helperRun(t, nil, "get", server)
			var got struct{ ServerURL, Username, Secret string }
			if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
				t.Fatalf("get %s: exit %d, %v, %s", server, code, err, errOut)
			}
			if got.ServerURL != server || got.Username != "<token>" || strings.Count(got.Secret, ".") != 2 {
				t.Fatalf("get %s: ServerURL %q, Username %q, a secret of %d characters", server, got.ServerURL, got.Username, len(got.Secret))
			}
		}
		for _, server := range []string{"example.com:5000", "127.0.0.1:1", "https://index.docker.io/v1/", "contoso"} {
			if code, out, _ := helperRun(t, nil, "get", server); code != 1 || out != notFound {
				t.Fatalf("get %s: exit %d, %q; want credentials not found", server, code, out)
			}
		}
		// Not logged in: an error that says so, not "not found".
		code, out, _ := helperRun(t, []string{"GANTRY_CONFIG_DIR=" + t.TempDir()}, "get", addr)
		if code != 1 || !strings.Contains(out, "gantry login") {
			t.Fatalf("get without a login: exit %d, %q", code, out)
		}
		code, out, _ = helperRun(t, nil, "list", "")
		var servers map[string]string
		if err := json.Unmarshal([]byte(out), &servers); code != 0 || err != nil || servers[addr] != "<token>" {
			t.Fatalf("list: exit %d, %q (%v)", code, out, err)
		}
		for _, action := range []string{"store", "erase"} {
			in := addr
			if action == "store" {
				in = `{"ServerURL":"` + addr + `","Username":"u","Secret":"s"}`
			}
			if code, out, errOut := helperRun(t, nil, action, in); code != 0 {
				t.Fatalf("%s: exit %d, %q %q", action, code, out, errOut)
			}
		}
		if code, _, errOut := gantry(t, addr, "credential-helper", "get"); code != 0 {
			t.Fatalf("gantry credential-helper get: exit %d, %q", code, errOut)
		}
	})

	admin, err := client.New(url, client.WithBasicAuth("admin", "cli-test-admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("lifetime", func(t *testing.T) {
		tok, err := admin.RegistryToken(ctx, "contoso")
		if err != nil {
			t.Fatal(err)
		}
		if left := time.Until(tok.ExpiresOn); left > 3*time.Hour || left < 3*time.Hour-time.Minute || tok.LoginServer != addr {
			t.Fatalf("token for %s expires in %s, want 3h", tok.LoginServer, left)
		}
	})

	t.Run("no pull right", func(t *testing.T) {
		tk, err := admin.CreateToken(ctx, "contoso", api.CreateTokenRequest{Name: "writer",
			Repositories: []api.RepositoryActions{{Repository: "app", Actions: []string{"content/write"}}}})
		if err != nil {
			t.Fatal(err)
		}
		pw := tk.Credentials.Passwords[0].Value
		wc, err := client.New(url, client.WithBasicAuth("writer", pw))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wc.RegistryToken(ctx, "contoso"); !errors.Is(err, api.ErrDenied) {
			t.Fatalf("token for a writer without pull: %v, want denied", err)
		}
		code, out, errOut := helperRun(t, []string{"GANTRY_USERNAME=writer", "GANTRY_PASSWORD=" + pw}, "get", addr)
		if code != 1 || out != notFound || strings.Contains(out+errOut, pw) || !strings.Contains(errOut, "may not pull") {
			t.Fatalf("get as a writer: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("docker", func(t *testing.T) {
		engine := dockertest.Engine(t)
		image := dockertest.BusyboxImage(t, engine, addr+"/samples/busybox:v1")
		dockertest.CLI(t, "--config", cfgDir, "push", image)
		dockertest.CLI(t, "image", "rm", image)
		dockertest.CLI(t, "--config", cfgDir, "pull", image)
		if id := strings.TrimSpace(string(dockertest.CLI(t, "image", "inspect", "-f", "{{.Id}}", image))); id == "" {
			t.Fatal("pulled image not found")
		}
	})

	// The tools below find the image docker pushed; without the engine
	// they push one of their own first.
	src := addr + "/samples/busybox:v1"
	if _, err := admin.ListManifests(ctx, "contoso", "samples/busybox"); err != nil {
		pushImage(t, addr, "samples/busybox", "v1", "layer for the tools")
	}

	t.Run("crane", func(t *testing.T) {
		crane := testenv.Tool(t, "crane")
		testenv.Run(t, nil, crane, "copy", "--insecure", src, addr+"/samples/crane:v1")
		want := strings.TrimSpace(testenv.Run(t, nil, crane, "digest", "--insecure", src))
		if got := strings.TrimSpace(testenv.Run(t, nil, crane, "digest", "--insecure", addr+"/samples/crane:v1")); got != want {
			t.Fatalf("crane copy: digest %s, want %s", got, want)
		}
	})

	t.Run("oras", func(t *testing.T) {
		oras := testenv.Tool(t, "oras")
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from oras\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		push := exec.Command(oras, "push", "--plain-http", addr+"/samples/artifact:v1", "hello.txt")
		push.Dir = dir
		if out, err := push.CombinedOutput(); err != nil {
			t.Fatalf("oras push: %v\n%s", err, out)
		}
		out := filepath.Join(dir, "out")
		testenv.Run(t, nil, oras, "pull", "--plain-http", "-o", out, addr+"/samples/artifact:v1")
		if b, err := os.ReadFile(filepath.Join(out, "hello.txt")); err != nil || string(b) != "hello from oras\n" {
			t.Fatalf("oras pull: %q, %v", b, err)
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		skopeo := testenv.Tool(t, "skopeo")
		// containers/image reads credHelpers from the Docker config given
		// as its auth file.
		out := testenv.Run(t, nil, skopeo, "inspect", "--tls-verify=false", "--authfile", cfgPath, "docker://"+src)
		if !strings.Contains(out, `"Digest"`) {
			t.Fatalf("skopeo inspect:\n%s", out)
		}
		testenv.Run(t, nil, skopeo, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--authfile", cfgPath,
			"docker://"+src, "docker://"+addr+"/samples/skopeo:v1")
		if _, err := admin.ListManifests(ctx, "contoso", "samples/skopeo"); err != nil {
			t.Fatalf("skopeo copy: %v", err)
		}
	})

	// Nothing stored a credential for the registry on the way.
	if b, err := os.ReadFile(cfgPath); err != nil || strings.Contains(string(b), `"`+addr+`": {`) {
		t.Fatalf("docker config at the end (%v):\n%s", err, b)
	}
}

// TestRegistryLoginStorePassword saves the password as az acr login does,
// replacing the helper, and prints the token with --expose-token.
func TestRegistryLoginStorePassword(t *testing.T) {
	startServer(t)
	useServer(t, os.Getenv("GANTRY_SERVER"), "admin", "cli-test-admin")
	addr := freeAddr(t)
	must(t, "registry", "create", "-n", "contoso", "--listen", addr)
	cfgDir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfgDir)
	cfgPath := filepath.Join(cfgDir, "config.json")
	if err := os.WriteFile(cfgPath, []byte(`{"credHelpers":{"`+addr+`":"gantry"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := must(t, "registry", "login", "-n", addr, "--store-password"); out != "Login Succeeded\n" {
		t.Fatalf("registry login --store-password: %q", out)
	}
	b, _ := os.ReadFile(cfgPath)
	var cfg struct {
		Auths       map[string]map[string]string
		CredHelpers map[string]string
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Auths[addr]["auth"] == "" || cfg.CredHelpers != nil {
		t.Fatalf("docker config after --store-password (%v):\n%s", err, b)
	}
	out := must(t, "registry", "login", "-n", "contoso", "--expose-token")
	var tok struct{ AccessToken, LoginServer string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.LoginServer != addr || strings.Count(tok.AccessToken, ".") != 2 {
		t.Fatalf("--expose-token: login server %q, %v", tok.LoginServer, err)
	}
	// The exposed token is a refresh token of the registry's token endpoint.
	resp, err := http.PostForm("http://"+addr+"/oauth2/token", map[string][]string{
		"grant_type": {"refresh_token"}, "refresh_token": {tok.AccessToken}, "service": {addr},
		"scope": {"repository:app:pull"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"access_token"`) {
		t.Fatalf("refresh_token grant: %s", resp.Status)
	}
	if code, _, errOut := gantry(t, "", "registry", "login", "-n", "contoso", "--expose-token", "--store-password"); code != 2 {
		t.Fatalf("both flags: exit %d, %q", code, errOut)
	}
	if code, _, errOut := gantry(t, "", "registry", "login", "-n", "nosuch"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("unknown registry: exit %d, %q", code, errOut)
	}
}

// TestRegistryShowUsage checks show-usage's numbers exactly against what
// was pushed.
func TestRegistryShowUsage(t *testing.T) {
	url := startServer(t)
	useServer(t, url, "admin", "cli-test-admin")
	addr := freeAddr(t)
	must(t, "registry", "create", "-n", "contoso", "--listen", addr)

	usage := func() map[string]api.Usage {
		t.Helper()
		var u api.RegistryUsage
		if err := json.Unmarshal([]byte(must(t, "registry", "show-usage", "-n", "contoso")), &u); err != nil {
			t.Fatal(err)
		}
		out := map[string]api.Usage{}
		for _, v := range u.Value {
			if v.Limit != nil {
				t.Fatalf("%s has a limit", v.Name)
			}
			out[v.Name] = v
		}
		return out
	}
	check := func(size, repos, manifests int64) {
		t.Helper()
		u := usage()
		if u["Size"].CurrentValue != size || u["Size"].Unit != "Bytes" || u["Repositories"].CurrentValue != repos ||
			u["Manifests"].CurrentValue != manifests || u["Manifests"].Unit != "Count" {
			t.Fatalf("usage = %+v, want size %d, %d repositories, %d manifests", u, size, repos, manifests)
		}
	}
	check(0, 0, 0)

	manifestSize := func(repo, tag string) int64 {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/"+repo+"/manifests/"+tag, nil)
		req.SetBasicAuth("admin", "cli-test-admin")
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET manifest: %s", resp.Status)
		}
		return int64(len(b))
	}
	// pushImage's config is the same in every image.
	const cfgSize = int64(len(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	pushImage(t, addr, "a", "v1", "layer one")
	m1 := manifestSize("a", "v1")
	check(cfgSize+int64(len("layer one"))+m1, 1, 1)
	// The same image in a second repository: counted once in the size.
	pushImage(t, addr, "b", "v1", "layer one")
	check(cfgSize+int64(len("layer one"))+m1, 2, 2)
	pushImage(t, addr, "a", "v2", "layer two!")
	m2 := manifestSize("a", "v2")
	check(cfgSize+int64(len("layer one"))+int64(len("layer two!"))+m1+m2, 2, 3)

	out := must(t, "registry", "show-usage", "-n", "contoso", "-o", "table")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "LIMIT") ||
		!strings.Contains(lines[0], "CURRENT VALUE") || !strings.HasSuffix(lines[2], "Bytes") || !strings.HasPrefix(lines[3], "Repositories") {
		t.Fatalf("show-usage -o table:\n%s", out)
	}

	if code, _, errOut := gantry(t, "", "registry", "show-usage", "-n", "nosuch"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("unknown registry: exit %d, %q", code, errOut)
	}
}
