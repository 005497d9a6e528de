package server_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

// pushTinyImage pushes a valid one-layer image (an uncompressed tar holding
// one file) to repo:tag.
func pushTinyImage(t *testing.T, c *ociClient, repo, tag string) digest.Digest {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	content := []byte("hello from " + repo + "\n")
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)})
	tw.Write(content)
	tw.Close()
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []digest.Digest{digest.FromBytes(layer.Bytes())}}})
	c.pushBlob(repo, cfg)
	c.pushBlob(repo, layer.Bytes())
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mtManifest,
		"config": blobDescriptor(mtConfig, cfg), "layers": []descriptor{blobDescriptor(mtLayer, layer.Bytes())}})
	return c.pushManifest(repo, tag, m)
}

// gantryOK runs a gantry command that must succeed and returns its trimmed
// output.
func gantryOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := gantryCLI(args...)
	if code != 0 {
		t.Fatalf("gantry %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return strings.TrimSpace(out)
}

// TestTutorialTokenFlow is the tutorial's token flow against a real server,
// driven by the gantry command line: a _repositories_pull token on the
// simulated public registry and a "--repository node content/read" token
// on the base-artifacts registry (passwords taken with --query
// credentials.passwords[0].value -o tsv), stored in a vault, then used
//
//   - by a registry client (skopeo, Docker token authentication): pulls are
//     allowed, pushes are denied and write nothing, and each token is
//     refused by the other registry;
//   - by a task run, as the tutorial's task credentials (vault URIs read by
//     the task's identity, which has a get policy on the vault): the run
//     pulls from both registries and its push to the base-artifacts
//     registry is denied (needs an engine).
//
// Not parallel: the command line reads its credentials from the
// environment.
func TestTutorialTokenFlow(t *testing.T) {
	engineHost := os.Getenv("DOCKER_HOST")
	srv := startServer(t, serverOptions{engine: engineHost})
	cliAsAdmin(t, srv)
	g := func(args ...string) string {
		t.Helper()
		return gantryOK(t, args...)
	}
	pub := srv.createRegistry("publicregistry", false)
	base := srv.createRegistry("contosobaseartifacts", false)
	srv.createRegistry("contoso", false)
	pushTinyImage(t, newOCIClient(t, pub, "admin", srv.adminPassword), "node", "15-alpine")
	pushTinyImage(t, newOCIClient(t, base, "admin", srv.adminPassword), "node", "15-alpine")

	// As in the tutorial.
	pubPassword := g("token", "create", "-r", "publicregistry", "-n", "registry-publicregistry-user", "--scope-map", "_repositories_pull",
		"--query", "credentials.passwords[0].value", "-o", "tsv")
	basePassword := g("token", "create", "-r", "contosobaseartifacts", "-n", "registry-contosobaseartifacts-user",
		"--repository", "node", "content/read", "--query", "credentials.passwords[0].value", "-o", "tsv")
	if pubPassword == "" || basePassword == "" || pubPassword == basePassword {
		t.Fatalf("token passwords %q and %q", pubPassword, basePassword)
	}
	if m := g("scope-map", "show", "-r", "contosobaseartifacts", "-n", "registry-contosobaseartifacts-user-scope-map", "--query", "actions", "-o", "tsv"); m != "repositories/node/content/read" {
		t.Errorf("the token's scope map grants %q", m)
	}
	g("keyvault", "create", "-n", "contoso-kv")
	for name, value := range map[string]string{
		"registry-publicregistry-user":           "registry-publicregistry-user",
		"registry-publicregistry-password":       pubPassword,
		"registry-contosobaseartifacts-user":     "registry-contosobaseartifacts-user",
		"registry-contosobaseartifacts-password": basePassword,
	} {
		g("keyvault", "secret", "set", "--vault-name", "contoso-kv", "-n", name, "--value", value, "-o", "none")
	}
	secret := func(name string) string {
		return gantryOK(t, "keyvault", "secret", "show", "--vault-name", "contoso-kv", "-n", name, "--query", "value", "-o", "tsv")
	}
	creds := map[string]string{
		pub:  secret("registry-publicregistry-user") + ":" + secret("registry-publicregistry-password"),
		base: secret("registry-contosobaseartifacts-user") + ":" + secret("registry-contosobaseartifacts-password"),
	}

	t.Run("registry client", func(t *testing.T) {
		skopeo := testenv.Tool(t, "skopeo")
		state := newStateReader(t, srv.cfg.Data)
		skopeoRun := func(args ...string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, skopeo, args...)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "REGISTRY_AUTH_FILE="+filepath.Join(t.TempDir(), "auth.json"))
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		for host, cred := range creds {
			other := pub
			if host == pub {
				other = base
			}
			dir := t.TempDir()
			if out, err := skopeoRun("copy", "--src-tls-verify=false", "--src-creds", cred, "docker://"+host+"/node:15-alpine", "oci:"+dir+":v1"); err != nil {
				t.Fatalf("pull from %s with its token: %v\n%s", host, err, out)
			}
			before := state.read(t)
			out, err := skopeoRun("copy", "--dest-tls-verify=false", "--dest-creds", cred, "oci:"+dir+":v1", "docker://"+host+"/node:pushed")
			t.Logf("push to %s with its read-only token: %s", host, strings.TrimSpace(out))
			if err == nil {
				t.Errorf("push to %s with a read-only token succeeded:\n%s", host, out)
			} else if !strings.Contains(out, "denied") && !strings.Contains(out, "unauthorized") && !strings.Contains(out, "authentication required") {
				t.Errorf("push to %s: want a denial, got: %v\n%s", host, err, out)
			}
			if d := before.diff(state.read(t)); d != "" {
				t.Errorf("the denied push to %s changed the persisted state: %s", host, d)
			}
			if out, err := skopeoRun("copy", "--src-tls-verify=false", "--src-creds", cred, "docker://"+other+"/node:15-alpine", "oci:"+t.TempDir()+":v1"); err == nil {
				t.Errorf("pull from %s with the token of another registry succeeded:\n%s", other, out)
			}
		}
		// The repository-scoped token reads node only.
		pushTinyImage(t, newOCIClient(t, base, "admin", srv.adminPassword), "other", "v1")
		if out, err := skopeoRun("copy", "--src-tls-verify=false", "--src-creds", creds[base], "docker://"+base+"/other:v1", "oci:"+t.TempDir()+":v1"); err == nil {
			t.Errorf("pull of another repository with the node token succeeded:\n%s", out)
		}
	})

	t.Run("task run", func(t *testing.T) {
		if !testenv.HasEngine() {
			t.Skip("no DOCKER_HOST")
		}
		dc := dockertest.Engine(t)
		dockertest.Sweep(t, dc)
		busybox := dockertest.BusyboxImage(t, dc, "")
		ctx := context.Background()
		// Replace the tiny images by runnable ones: push busybox as node
		// to both registries, then drop the local tags so that the run
		// must pull with its credentials.
		for _, host := range []string{pub, base} {
			ref := host + "/node:15-alpine"
			if err := dc.TagImage(ctx, busybox, ref); err != nil {
				t.Fatal(err)
			}
			if _, err := dc.PushImage(ctx, ref, &docker.AuthConfig{Username: "admin", Password: srv.adminPassword, ServerAddress: host}, io.Discard); err != nil {
				t.Fatal(err)
			}
			if err := dc.RemoveImage(ctx, ref, false); err != nil {
				t.Fatal(err)
			}
		}
		work := t.TempDir()
		if err := os.WriteFile(filepath.Join(work, "Dockerfile"), []byte("FROM "+base+"/node:15-alpine\nRUN echo built\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, "acr-task.yaml"), []byte(`version: v1.1.0
steps:
  - id: pull-public
    cmd: {{.Values.pub}}/node:15-alpine echo pulled from the public registry
  - id: pull-base
    cmd: {{.Values.base}}/node:15-alpine echo pulled from the base registry
  - id: build
    build: -t {{.Values.base}}/node:stolen -f Dockerfile .
  - id: push
    push: ["{{.Values.base}}/node:stolen"]
`), 0o644); err != nil {
			t.Fatal(err)
		}
		principal := gantryOK(t, "task", "create", "-r", "contoso", "-n", "hello-world", "-c", work, "-f", "acr-task.yaml",
			"--set", "pub="+pub, "--set", "base="+base, "--assign-identity", "--base-image-trigger-enabled", "false",
			"--query", "identity.principalId", "-o", "tsv")
		gantryOK(t, "keyvault", "set-policy", "-n", "contoso-kv", "--object-id", principal, "--secret-permissions", "get", "-o", "none")
		gantryOK(t, "task", "credential", "add", "-r", "contoso", "-n", "hello-world", "--login-server", pub,
			"-u", "https://contoso-kv.vault.azure.net/secrets/registry-publicregistry-user",
			"-p", "https://contoso-kv.vault.azure.net/secrets/registry-publicregistry-password", "--use-identity", "[system]", "-o", "none")
		gantryOK(t, "task", "credential", "add", "-r", "contoso", "-n", "hello-world", "--login-server", base,
			"-u", "vault://contoso-kv/secrets/registry-contosobaseartifacts-user",
			"-p", "vault://contoso-kv/secrets/registry-contosobaseartifacts-password", "--use-identity", "[system]", "-o", "none")

		out, errOut, code := gantryCLI("task", "run", "-r", "contoso", "-n", "hello-world")
		if code == 0 {
			t.Fatalf("the run that pushes with a read-only token succeeded:\n%s", out)
		}
		var run api.Run
		if err := json.Unmarshal([]byte(gantryOK(t, "task", "list-runs", "-r", "contoso", "-n", "hello-world", "--top", "1", "--query", "[0]")), &run); err != nil {
			t.Fatal(err)
		}
		steps := map[string]string{}
		for _, s := range run.Steps {
			steps[s.ID] = s.Status
		}
		if run.Status != "Failed" || steps["pull-public"] != "successful" || steps["pull-base"] != "successful" ||
			steps["build"] != "successful" || steps["push"] != "failed" {
			t.Fatalf("run %s: %s, steps %v; want the pulls and the build to succeed and the push to fail\n%s%s", run.RunID, run.Status, steps, out, errOut)
		}
		for _, want := range []string{"pulled from the public registry", "pulled from the base registry",
			`denied: token "registry-contosobaseartifacts-user" may not access repository:node:push`} {
			if !strings.Contains(out, want) {
				t.Errorf("the run log lacks %q:\n%s", want, out)
			}
		}
		adm := newOCIClient(t, base, "admin", srv.adminPassword)
		if adm.exists("/v2/node/manifests/stolen") {
			t.Errorf("the denied push created node:stolen")
		}
		for _, secret := range []string{pubPassword, basePassword} {
			if strings.Contains(out+errOut, secret) {
				t.Errorf("the run log shows a token password")
			}
		}
	})
}

// TestTutorialCommandsAsWritten runs the Azure CLI commands of the seeds'
// tutorial as written, with gantry in place of az
// (testdata/tutorial/consume-public-content.sh: gantry group create, gantry
// acr create --resource-group --sku, gantry acr task create|credential add|
// run|update|logs, gantry keyvault set-policy --resource-group, a role
// assignment on $(gantry group show --query id), ...), against a real server
// and engine with the samples byte for byte. The site hello-world deploys
// then answers, built from the vetted base.
func TestTutorialCommandsAsWritten(t *testing.T) {
	dc := dockertest.Engine(t)
	dockertest.Sweep(t, dc)
	bin := staticGantry(t)
	srv := startServer(t, serverOptions{engine: os.Getenv("DOCKER_HOST"), gantryBinary: bin})
	cliAsAdmin(t, srv)
	removeRegistryImagesOnCleanup(t, dc, srv, "contoso") // last: the images the container instance ran
	t.Cleanup(func() { gantryCLI("container", "delete", "-n", "hello-world-aci") })

	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "tutorial", "consume-public-content.sh"))
	if err != nil {
		t.Fatal(err)
	}
	samples, err := filepath.Abs(filepath.Join("..", "..", "testdata", "fixtures", "seed-samples"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Dir = t.TempDir() // the tutorial's unquoted [system] and [0] must match no file
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"), "SAMPLES="+samples)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	if hub, err := srv.admin().GetRegistry(context.Background(), "dockerhub"); err == nil {
		dockertest.RemoveImageOnCleanup(t, dc, hub.LoginServer+"/node:15-alpine")
	}
	if runErr != nil {
		t.Fatalf("the tutorial's commands: %v\n%s\nserver log:\n%s", runErr, out.String(), srv.log)
	}
	for _, want := range []string{
		"Step ID: build-hello-world marked as successful", // gantry acr task run -r $REGISTRY -n hello-world
		"Step ID: deploy-aci marked as successful",
		"Step ID: validate-base-image marked as successful", // the gate of base-import-node
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %q:\n%s", want, out.String())
		}
	}

	// hello-world now builds FROM the base-artifacts registry, and its site
	// answers.
	adm := srv.admin()
	runs, err := adm.ListRuns(context.Background(), "contoso", client.RunFilter{Task: "hello-world"})
	if err != nil || len(runs) < 2 {
		t.Fatalf("hello-world runs: %d, %v", len(runs), err)
	}
	vetted := srv.loginServer("contosobaseartifacts")
	if b := runs[0].BaseImages; len(b) == 0 || b[0].Registry != vetted || b[0].Repository != "node" {
		t.Errorf("the last hello-world run built from %+v, want %s/node", b, vetted)
	}
	url := gantryOK(t, "container", "show", "--resource-group", "hello-world-aci-rg", "--name", "hello-world-aci",
		"--query", "ipAddress.url", "--out", "tsv")
	if page, ok := waitForPage(url, "background-color:DeepSkyBlue;"); !ok {
		t.Errorf("the site at %s answers %q", url, page)
	}
}

// waitForPage fetches url until its body contains want, for up to 30 s, and
// returns the last body it got and whether it did.
func waitForPage(url, want string) (string, bool) {
	var page string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if page = string(b); strings.Contains(page, want) {
			return page, true
		}
	}
	return page, false
}

// removeRegistryImagesOnCleanup removes, in t's cleanup, the engine's images
// of srv's registry reg (such as those a container instance ran).
func removeRegistryImagesOnCleanup(t *testing.T, dc *docker.Client, srv *testServer, reg string) {
	t.Cleanup(func() {
		r, err := srv.admin().GetRegistry(context.Background(), reg)
		if err != nil {
			return
		}
		imgs, _ := dc.ListImages(context.Background(), docker.ListImagesOptions{Reference: r.LoginServer + "/*"})
		for _, img := range imgs {
			for _, tag := range img.RepoTags {
				_ = dc.RemoveImage(context.Background(), tag, true)
			}
		}
	})
}
