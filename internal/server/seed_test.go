package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/standin"
)

// staticGantry builds a static gantry binary for the CLI and az images.
func staticGantry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gantry")
	build := exec.Command("go", "build", "-o", bin, "github.com/gantryhq/gantry/cmd/gantry")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static gantry: %v\n%s", err, out)
	}
	return bin
}

// cliAsAdmin points gantryCLI at srv as its admin (not parallel-safe: it
// sets the environment).
func cliAsAdmin(t *testing.T, srv *testServer) {
	t.Helper()
	t.Setenv("GANTRY_CONFIG_DIR", t.TempDir())
	t.Setenv("GANTRY_SERVER", "http://"+srv.addr)
	t.Setenv("GANTRY_USERNAME", "admin")
	t.Setenv("GANTRY_PASSWORD", srv.adminPassword)
	t.Setenv("GANTRY_TOKEN", "")
}

// TestSeedHelloWorld follows the tutorial by hand with the seed's
// hello-world repository copied unchanged: a key vault holds the registry
// credentials, the task gets an identity with vault access and the owner
// role on /containers, and a manual run builds, pushes and deploys; its
// `az login --identity` and `az container create` steps run gantry's az
// image. The site then answers on the container instance's front port.
func TestSeedHelloWorld(t *testing.T) {
	dc := dockertest.Engine(t)
	dockertest.Sweep(t, dc)
	srv := startServer(t, serverOptions{engine: os.Getenv("DOCKER_HOST"), gantryBinary: staticGantry(t)})
	cliAsAdmin(t, srv)
	ctx := context.Background()
	ok := func(args ...string) string {
		t.Helper()
		out, errOut, code := gantryCLI(args...)
		if code != 0 {
			t.Fatalf("gantry %s: exit %d\n%s%s\nserver log:\n%s", strings.Join(args, " "), code, out, errOut, srv.log)
		}
		return strings.TrimSpace(out)
	}

	// The public base: node:15-alpine (the stand-in) in a registry playing
	// Docker Hub, with the base-image-node sample's environment.
	ok("registry", "create", "-n", "publicregistry", "--anonymous-pull")
	ok("registry", "create", "-n", "contoso")
	public := srv.loginServer("publicregistry")
	node, err := standin.NodeImage(ctx, dc, "")
	if err != nil {
		t.Fatal(err)
	}
	var files bytes.Buffer
	if err := docker.TarFiles(&files, map[string]string{"Dockerfile": "FROM " + node + "\nLABEL " + dockertest.Label + "-build=" + dockertest.LabelValue(t) + "\nENV NODE_VERSION 15-alpine\nENV BACKGROUND_COLOR DeepSkyBlue\n"}); err != nil {
		t.Fatal(err)
	}
	base := public + "/node:15-alpine"
	if _, err := dc.BuildImage(ctx, &files, docker.BuildOptions{Tags: []string{base}, Labels: dockertest.Labels(t)}, nil); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(t, dc, base)
	if _, err := dc.PushImage(ctx, base, &docker.AuthConfig{Username: "admin", Password: srv.adminPassword, ServerAddress: public}, nil); err != nil {
		t.Fatal(err)
	}

	// The vault with the credentials the deployment pulls with (a pull
	// token of contoso), named as the task file expects.
	ok("keyvault", "create", "-n", "acr-task-credentials")
	tokenPassword := ok("token", "create", "-r", "contoso", "-n", "aci-pull", "--scope-map", "_repositories_pull",
		"--query", "credentials.passwords[0].value", "-o", "tsv")
	ok("keyvault", "secret", "set", "--vault-name", "acr-task-credentials", "-n", "registry-contoso-user", "--value", "aci-pull")
	ok("keyvault", "secret", "set", "--vault-name", "acr-task-credentials", "-n", "registry-contoso-password", "--value", tokenPassword)

	// The task, from the seed's repository byte for byte.
	repo := filepath.Join("..", "..", "testdata", "fixtures", "seed-samples", "hello-world")
	abs, err := filepath.Abs(repo)
	if err != nil {
		t.Fatal(err)
	}
	principal := ok("task", "create", "-r", "contoso", "-n", "hello-world", "-c", abs, "-f", "acr-task.yaml",
		"--set", "REGISTRY_FROM_URL="+public+"/", "--set", "KEYVAULT=acr-task-credentials",
		"--set", "ACI=hello-world-aci", "--set", "ACI_RG=hello-world-aci-rg", "--assign-identity",
		"--commit-trigger-enabled", "false", "--base-image-trigger-enabled", "false",
		"--query", "identity.principalId", "-o", "tsv")
	ok("keyvault", "set-policy", "-n", "acr-task-credentials", "--object-id", principal, "--secret-permissions", "get")
	ok("role", "assignment", "create", "--assignee", principal, "--scope", "/containers", "--role", "owner")
	removeRegistryImagesOnCleanup(t, dc, srv, "contoso")
	t.Cleanup(func() { gantryCLI("container", "delete", "-n", "hello-world-aci") })

	for _, want := range []string{`msg="container engine"`, "api=1.41", "builder=BuildKit"} {
		if !strings.Contains(srv.log.String(), want) {
			t.Errorf("the server log lacks %s", want)
		}
	}
	out := ok("task", "run", "-r", "contoso", "-n", "hello-world")
	for _, want := range []string{
		"Launching container with name: az-login",
		"Launching container with name: deploy-aci",
		"Step ID: deploy-aci marked as successful",
		"Step ID: build-hello-world: building with BuildKit",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("run log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, tokenPassword) {
		t.Error("the run log shows the registry password")
	}

	url := ok("container", "show", "-n", "hello-world-aci", "--query", "ipAddress.url", "-o", "tsv")
	if page, ok := waitForPage(url, "background-color:DeepSkyBlue;"); !ok {
		t.Errorf("the site at %s answers %q", url, page)
	}
}

// TestEngineUnreachable: a server whose container engine does not answer,
// or answers with an API older than gantry supports (an engine of API 1.39
// at most, as Docker 18.09), starts all the same, says so in its log, and
// serves its registries; a run ends with status Error and a message naming
// the address it tried (and, for the old engine, its API version).
func TestEngineUnreachable(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "no-engine.sock")
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.39")
		switch strings.TrimPrefix(r.URL.Path, "/v1.39") {
		case "/_ping":
			io.WriteString(w, "OK")
		case "/version":
			io.WriteString(w, `{"Version":"18.09.9","ApiVersion":"1.39","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"message":"client version is too new. Maximum supported API version is 1.39"}`)
		}
	}))
	t.Cleanup(old.Close)
	oldHost := "tcp://" + strings.TrimPrefix(old.URL, "http://")
	for _, tc := range []struct {
		name, engine, log string
		errs              []string
	}{
		{"unreachable", "unix://" + sock, sock, []string{"unix://" + sock + " is unreachable"}},
		{"too old", oldHost, oldHost, []string{oldHost, "1.39"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, serverOptions{engine: tc.engine})
			if !strings.Contains(srv.log.String(), "container engine not available") || !strings.Contains(srv.log.String(), tc.log) {
				t.Errorf("the server log does not say the engine is unavailable:\n%s", srv.log)
			}
			host := srv.createRegistry("solo1", false)
			oci := newOCIClient(t, host, "admin", srv.adminPassword)
			pushTinyImage(t, oci, "app", "v1")

			adm := srv.admin()
			ctx := context.Background()
			if _, err := adm.CreateTask(ctx, "solo1", api.CreateTaskRequest{Name: "no-engine", File: "acr-task.yaml",
				FileContent: []byte("version: v1.1.0\nsteps:\n  - cmd: busybox true\n")}); err != nil {
				t.Fatal(err)
			}
			run, err := adm.RunTask(ctx, "solo1", "no-engine", api.RunTaskRequest{})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for run.Status == "Queued" || run.Status == "Running" {
				if time.Now().After(deadline) {
					t.Fatalf("run %s still %s", run.RunID, run.Status)
				}
				time.Sleep(100 * time.Millisecond)
				if run, err = adm.GetRun(ctx, "solo1", run.RunID); err != nil {
					t.Fatal(err)
				}
			}
			if run.Status != "Error" {
				t.Errorf("run = %s %q, want Error", run.Status, run.Error)
			}
			for _, want := range tc.errs {
				if !strings.Contains(run.Error, want) {
					t.Errorf("run error %q lacks %q", run.Error, want)
				}
			}
		})
	}
}

// TestBuildCommandUsesBuildKit: `gantry build` (az acr build) builds with
// the engine's BuildKit, cache mounts included, and pushes the image.
func TestBuildCommandUsesBuildKit(t *testing.T) {
	dc := dockertest.Engine(t)
	dockertest.Sweep(t, dc)
	base := dockertest.BusyboxImage(t, dc, "")
	srv := startServer(t, serverOptions{engine: os.Getenv("DOCKER_HOST")})
	cliAsAdmin(t, srv)
	srv.createRegistry("builds", false)
	dir := t.TempDir()
	df := "FROM " + base + "\nRUN --mount=type=cache,target=/cache sh -c 'date > /cache/last; echo cache-mount-ok'\nCOPY app.txt /app.txt\n"
	for name, body := range map[string]string{"Dockerfile": df, "app.txt": "app\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := gantryCLI("build", "-r", "builds", "-t", "app:{{.Run.ID}}", dir)
	if code != 0 {
		t.Fatalf("gantry build: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "building with BuildKit") || !strings.Contains(out, "cache-mount-ok") {
		t.Errorf("build log:\n%s", out)
	}
	tags, errOut, code := gantryCLI("repository", "show-tags", "-r", "builds", "--repository", "app", "-o", "tsv")
	if code != 0 || strings.TrimSpace(tags) == "" {
		t.Errorf("show-tags: exit %d %q %s", code, tags, errOut)
	}
}
