package engine_test

import (
	"context"
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
		stamp+`Step ID: acb_step_0: building with (BuildKit on .+|the classic builder: .+)`,
		`acb_step_0 \| (#\d+ \[internal\] load build definition from Dockerfile|Step 1/4 : ARG REGISTRY_FROM_URL=)`,
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
	if left := e.leftovers("publicregistry", j.RunID); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
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
	if left := e.leftovers("contosobaseartifacts", j.RunID); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestHelloWorld runs the hello-world sample with its az steps replaced by
// gantry CLI steps (the CLI image gets GANTRY_SERVER and GANTRY_TOKEN) and
// the ACI deployment by a detached container of the built image that a
// later step reaches over localhost. The vault secrets are masked.
func TestHelloWorld(t *testing.T) {
	t.Parallel()
	dockertest.Engine(t) // skip before building the gantry binary
	e := newEnv(t, []string{"hub", "contoso"}, engine.WithGantryBinary(gantryBinary(t)), engine.WithCLIImage(testCLIImage))
	e.pushNodeBase("hub", "ENV NODE_VERSION 15-alpine\nENV BACKGROUND_COLOR DeepSkyBlue")
	bb := busybox(t, e.d)

	// The control API the gantry CLI talks to: it records the token.
	var mu sync.Mutex
	var gotAuth string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth = r.Header.Get("Authorization")
		mu.Unlock()
		io.WriteString(w, `{"version":"test-server"}`)
	}))
	t.Cleanup(api.Close)

	file := readFixture(t, "seed-samples/hello-world/acr-task.yaml")
	file = strings.Replace(file, "cmd: az login --identity > /dev/null", "cmd: gantry version -o tsv", 1)
	i := strings.Index(file, "  - id: deploy-aci")
	if i < 0 {
		t.Fatal("hello-world sample changed: no deploy-aci step")
	}
	file = file[:i] + `  - id: deploy-aci
    when: ['az-login', 'push-images']
    pull: true
    detach: true
    env: ['PORT={{.Values.PORT}}']
    cmd: "{{.Run.Registry}}/hello-world:{{.Run.ID}}"
  - id: browse
    retries: 10
    retryDelay: 1
    cmd: ` + bb + ` wget -qO- http://127.0.0.1:{{.Values.PORT}}/
  - id: show-secrets
    cmd: ` + bb + ` echo "user {{index .Secrets "registry-user"}} password {{index .Secrets "registry-password"}}"
`
	port := freePort(t)
	values := map[string]string{
		"REGISTRY_FROM_URL": e.hosts["hub"] + "/", "KEYVAULT": "contosovault", "ACI": "hello", "ACI_RG": "rg", "PORT": port,
	}
	j, log := e.job("contoso", file, workspace(t, "seed-samples/hello-world", nil), values)
	token := "gantryrun.secret-run-token-123"
	j.GantryEnv = map[string]string{"GANTRY_SERVER": api.URL, "GANTRY_TOKEN": token}
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
	checkLines(t, out,
		`az-login \| \S+\ttest-server`,
		stamp+`Step specified pull\. Performing an explicit pull\.\.\.`,
		`deploy-aci \| Status: Image is up to date for .*/hello-world:`+j.RunID,
		stamp+`Launching container with name: deploy-aci`,
		`browse \| <style type="text/css">body \{background-color:DeepSkyBlue;\}</style>.*<p><b>Version:</b> 15-alpine</p>.*`,
		`show-secrets \| user \*\*\* password \*\*\*`,
	)
	for _, secret := range []string{"contoso-user-x1", "s3cr3t-Passw0rd", token, j.Credentials[0].Password} {
		if strings.Contains(out, secret) {
			t.Errorf("the log shows the secret %q", secret)
		}
	}
	if gotAuth != "Bearer "+token {
		t.Errorf("the gantry CLI sent Authorization %q", gotAuth)
	}
	if want := "https://contosovault.vault.azure.net/secrets/registry-contoso-user"; len(uris) == 0 || uris[0] != want && (len(uris) < 2 || uris[1] != want) {
		t.Errorf("secrets resolved at %v", uris)
	}
	if len(res.Images) != 1 || res.Images[0].Repository != "hello-world" || res.Images[0].Tag != j.RunID {
		t.Errorf("pushed %+v", res.Images)
	}
	if left := e.leftovers("contoso", j.RunID); len(left) > 0 {
		t.Errorf("left behind (the detached container must go too): %v", left)
	}
	// The detached server is gone with the run.
	client := http.Client{Timeout: time.Second}
	if resp, err := client.Get("http://127.0.0.1:" + port + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("the detached container still serves on port %s", port)
	}
}
