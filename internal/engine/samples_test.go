package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/engine"
)

// checkLines fails t for every expected line (regular expressions matched
// against whole log lines) missing from log.
func checkLines(t *testing.T, log string, want ...string) {
	t.Helper()
	for _, w := range want {
		re := regexp.MustCompile(`(?m)^` + w + `$`)
		if !re.MatchString(log) {
			t.Errorf("log has no line matching %q", w)
		}
	}
}

// stamp is the runner-line prefix.
const stamp = `\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `

func statuses(res engine.Result) map[string]string {
	m := map[string]string{}
	for _, s := range res.Steps {
		m[s.ID] = s.Status
	}
	return m
}

// TestBaseImageTask runs the base-image-node sample unchanged: it builds
// FROM the node stand-in (in a registry playing Docker Hub) and pushes both
// tags, recording the stand-in as its runtime dependency with its digest.
func TestBaseImageTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"hub", "publicregistry"})
	standinDigest := e.pushNodeBase("hub", "")

	ws := workspace(t, "seed-samples/base-image-node", nil)
	j, log := e.job("publicregistry", readFixture(t, "seed-samples/base-image-node/acr-task.yaml"), ws,
		map[string]string{"REGISTRY_FROM_URL": e.hosts["hub"] + "/"})
	res, err := e.execute(j)
	if err != nil {
		t.Fatalf("Execute: %v\n%s", err, log)
	}
	builder := `BuildKit on .+`
	if dockertest.IsPodman(e.d) {
		builder = `the classic builder: .+ offers no BuildKit.*`
	}
	host := e.hosts["publicregistry"]
	checkLines(t, log.String(),
		stamp+`Alias support enabled for version >= 1\.1\.0, .*`,
		stamp+`Setting up Docker configuration\.\.\.`,
		stamp+`Successfully set up Docker configuration`,
		stamp+`Logging in to registry: `+regexp.QuoteMeta(host),
		stamp+`Successfully logged into `+regexp.QuoteMeta(host),
		stamp+`Executing step ID: acb_step_0\. Timeout\(sec\): 600, Working directory: '/workspace', Network: 'host'`,
		stamp+`Scanning for dependencies\.\.\.`,
		stamp+`Successfully scanned dependencies`,
		stamp+`Step ID: acb_step_0: building with `+builder,
		`acb_step_0 \| (#\d+ \[internal\] load build definition from Dockerfile|STEP 1/\d: FROM .*)`,
		stamp+`Pushing image: `+regexp.QuoteMeta(host)+`/node:15-alpine-`+j.RunID+`, attempt 1`,
		stamp+`Successfully pushed image: `+regexp.QuoteMeta(host)+`/node:15-alpine`,
		stamp+`Step ID: acb_step_0 marked as successful \(elapsed time in seconds: \d+\.\d{6}\)`,
		stamp+`Step ID: acb_step_1 marked as successful \(elapsed time in seconds: \d+\.\d{6}\)`,
		stamp+`Populating digests for step ID: acb_step_0\.\.\.`,
		stamp+`The following dependencies were found:`,
		`  runtime-dependency:`,
		`    digest: `+standinDigest,
	)
	if len(res.Images) != 2 {
		t.Fatalf("pushed %v, want 2 images", res.Images)
	}
	for _, im := range res.Images {
		if im.Registry != host || im.Repository != "node" || !strings.HasPrefix(im.Digest, "sha256:") {
			t.Errorf("pushed image %+v", im)
		}
		if got := e.manifestDigest("publicregistry", "node", im.Tag); got != im.Digest {
			t.Errorf("registry has %s:%s at %q, run reported %q", im.Repository, im.Tag, got, im.Digest)
		}
	}
	if len(res.Dependencies) != 1 {
		t.Fatalf("dependencies %+v", res.Dependencies)
	}
	dep := res.Dependencies[0]
	want := engine.Image{Registry: e.hosts["hub"], Repository: "node", Tag: "15-alpine", Digest: standinDigest}
	if dep.Step != "acb_step_0" || dep.Runtime != want || len(dep.Buildtime) != 0 || len(dep.Images) != 2 {
		t.Errorf("dependency %+v, want runtime %+v", dep, want)
	}
	e.noLeftovers(t, "publicregistry", j.RunID)
	for _, im := range res.Images {
		if _, err := e.d.InspectImage(context.Background(), im.Reference()); err == nil {
			t.Errorf("tag %s created by the run is still on the engine", im.Reference())
		}
	}
}

// TestImportGate runs the import-baseimage-node sample unchanged against a
// public base: a valid color passes the gate and promotes both tags; Red
// fails at validate-base-image with acb's lines and promotes nothing.
func TestImportGate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"publicregistry", "contosobaseartifacts"})
	file := readFixture(t, "seed-samples/import-baseimage-node/acr-task.yaml")
	values := map[string]string{"REGISTRY_FROM_URL": e.hosts["publicregistry"] + "/"}
	host := regexp.QuoteMeta(e.hosts["contosobaseartifacts"])

	// Green: the base-image-node sample's own color.
	e.pushNodeBase("publicregistry", "ENV NODE_VERSION 15-alpine\nENV BACKGROUND_COLOR DeepSkyBlue")
	j, log := e.job("contosobaseartifacts", file, workspace(t, "seed-samples/import-baseimage-node", nil), values)
	res, err := e.execute(j)
	if err != nil {
		t.Fatalf("green run: %v\n%s", err, log)
	}
	checkLines(t, log.String(),
		stamp+`Launching container with name: validate-base-image`,
		`validate-base-image \| Validating Image`,
		`validate-base-image \| BACKGROUND_COLOR: DeepSkyBlue`,
		`validate-base-image \| Validation Complete - No Known Errors`,
		stamp+`Successfully executed container: validate-base-image`,
		stamp+`Launching container with name: retag-base-image`,
		stamp+`Successfully executed container: retag-base-image-unique-tag`,
		stamp+`Pushing image: `+host+`/node:15-alpine, attempt 1`,
		stamp+`Successfully pushed image: `+host+`/node:15-alpine-`+j.RunID,
		stamp+`Step ID: push-base-image marked as successful \(elapsed time in seconds: .*\)`,
	)
	if len(res.Images) != 2 || e.manifestDigest("contosobaseartifacts", "node", "15-alpine-"+j.RunID) == "" {
		t.Errorf("green run pushed %+v", res.Images)
	}
	green := e.manifestDigest("contosobaseartifacts", "node", "15-alpine")
	if public := e.manifestDigest("publicregistry", "node", "15-alpine"); green != public {
		t.Errorf("promoted digest %s, public base %s", green, public)
	}

	// Red: the gate fails, nothing is promoted.
	e.pushNodeBase("publicregistry", "ENV NODE_VERSION 15-alpine\nENV BACKGROUND_COLOR Red")
	j, log = e.job("contosobaseartifacts", file, workspace(t, "seed-samples/import-baseimage-node", nil), values)
	res, err = e.execute(j)
	if !errors.Is(err, engine.ErrStepFailed) || err.Error() != "failed to run step ID: validate-base-image: exit status 1" {
		t.Fatalf("red run: err = %v, want failed to run step ID: validate-base-image: exit status 1\n%s", err, log)
	}
	checkLines(t, log.String(),
		`validate-base-image \| BACKGROUND_COLOR: Red`,
		`validate-base-image \| ERROR: Invalid Color: Red`,
		stamp+`Container failed during run: validate-base-image\. No retries remaining\.`,
		stamp+`failed to run step ID: validate-base-image: exit status 1`,
	)
	if strings.Contains(log.String(), "Pushing image") || len(res.Images) != 0 {
		t.Errorf("red run pushed %+v", res.Images)
	}
	want := map[string]string{
		"build-test-base-image": engine.StepSuccessful, "validate-base-image": engine.StepFailed,
		"retag-base-image": engine.StepSkipped, "retag-base-image-unique-tag": engine.StepSkipped, "push-base-image": engine.StepSkipped,
	}
	if got := statuses(res); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	for _, s := range res.Steps {
		if s.ID == "validate-base-image" && (s.ExitCode != 1 || s.Error != "exit status 1") {
			t.Errorf("validate-base-image result %+v", s)
		}
	}
	if d := e.manifestDigest("contosobaseartifacts", "node", "15-alpine"); d != green {
		t.Errorf("the red run moved node:15-alpine to %s", d)
	}
	if d := e.manifestDigest("contosobaseartifacts", "node", "15-alpine-"+j.RunID); d != "" {
		t.Errorf("the red run pushed its unique tag")
	}
	e.noLeftovers(t, "contosobaseartifacts", j.RunID)
}

// TestHelloWorld runs the hello-world sample unchanged: its az steps run
// gantry's az image with the run's identity (GANTRY_SERVER, GANTRY_TOKEN)
// against a control API that records what they ask for; the image they
// deploy serves the site. The vault secrets are masked.
func TestHelloWorld(t *testing.T) {
	t.Parallel()
	dockertest.Engine(t) // skip before building the gantry binary
	e := newEnv(t, []string{"hub", "contoso"}, engine.WithGantryBinary(gantryBinary(t)), engine.WithCLIImage(testCLIImage))
	e.pushNodeBase("hub", "ENV NODE_VERSION 15-alpine\nENV BACKGROUND_COLOR DeepSkyBlue")

	// The control API the az steps talk to: it records the calls.
	var mu sync.Mutex
	var calls []string
	var created api.CreateContainerRequest
	token := "gantryrun.secret-run-token-123"
	ctl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/whoami":
			io.WriteString(w, `{"name":"task/hello-world","kind":"run","principalId":"p-1"}`)
		case r.Method == http.MethodPut && r.URL.Path == "/v1/containers/hello":
			json.NewDecoder(r.Body).Decode(&created)
			io.WriteString(w, `{"name":"hello","image":"`+created.Image+`","state":"Running"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"NOT_FOUND","message":"no such endpoint"}}`)
		}
	}))
	t.Cleanup(ctl.Close)

	file := readFixture(t, "seed-samples/hello-world/acr-task.yaml")
	values := map[string]string{"REGISTRY_FROM_URL": e.hosts["hub"] + "/", "KEYVAULT": "contosovault", "ACI": "hello", "ACI_RG": "rg"}
	j, log := e.job("contoso", file, workspace(t, "seed-samples/hello-world", nil), values)
	j.GantryEnv = map[string]string{"GANTRY_SERVER": ctl.URL, "GANTRY_TOKEN": token}
	var uris []string
	j.ResolveSecret = func(ctx context.Context, id, uri string) (string, error) {
		mu.Lock()
		uris = append(uris, uri)
		mu.Unlock()
		return map[string]string{"registry-user": "contoso-user-x1", "registry-password": "s3cr3t-Passw0rd"}[id], nil
	}
	res, err := e.execute(j)
	if err != nil {
		t.Fatalf("Execute: %v\n%s", err, log)
	}
	out := log.String()
	image := e.hosts["contoso"] + "/hello-world:" + j.RunID
	checkLines(t, out,
		stamp+`Launching container with name: az-login`,
		stamp+`Launching container with name: deploy-aci`,
		`deploy-aci \| .*"state": "Running".*`,
	)
	mu.Lock()
	got := strings.Join(calls, "\n")
	mu.Unlock()
	if !strings.Contains(got, "GET /v1/whoami Bearer "+token) || !strings.Contains(got, "PUT /v1/containers/hello Bearer "+token) {
		t.Errorf("control API calls:\n%s", got)
	}
	if created.Image != image || created.RegistryUsername != "contoso-user-x1" || created.RegistryPassword != "s3cr3t-Passw0rd" ||
		len(created.Ports) != 1 || created.Ports[0].Port != 80 {
		t.Errorf("az container create asked for %+v", created)
	}
	for _, secret := range []string{"contoso-user-x1", "s3cr3t-Passw0rd", token, j.Credentials[0].Password} {
		if strings.Contains(out, secret) {
			t.Errorf("the log shows the secret %q", secret)
		}
	}
	if want := "https://contosovault.vault.azure.net/secrets/registry-contoso-user"; len(uris) == 0 || uris[0] != want && (len(uris) < 2 || uris[1] != want) {
		t.Errorf("secrets resolved at %v", uris)
	}
	if len(res.Images) != 1 || res.Images[0].Repository != "hello-world" || res.Images[0].Tag != j.RunID {
		t.Errorf("pushed %+v", res.Images)
	}

	// The pushed image serves the site on $PORT, as a container instance
	// runs it.
	port := freePort(t)
	ctx := context.Background()
	if err := e.d.PullImage(ctx, image, e.dockerAuth("contoso"), nil); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(t, e.d, image)
	id, err := e.d.CreateContainer(ctx, dockertest.Name(t, "site"), docker.ContainerConfig{Image: image, Env: []string{"PORT=" + port}, Labels: dockertest.Labels(t)},
		docker.HostConfig{NetworkMode: "host", Init: true})
	if err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveContainerOnCleanup(t, e.d, id)
	if err := e.d.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	page := ""
	for i := 0; i < 50 && !strings.Contains(page, "DeepSkyBlue"); i++ {
		if resp, err := http.Get("http://127.0.0.1:" + port + "/"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = string(b)
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !strings.Contains(page, "background-color:DeepSkyBlue;") || !strings.Contains(page, "<p><b>Version:</b> 15-alpine</p>") {
		t.Errorf("site: %q", page)
	}
	e.noLeftovers(t, "contoso", j.RunID)
}
