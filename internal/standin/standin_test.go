package standin_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/standin"
	"github.com/gantryhq/gantry/internal/testenv"
)

// buildSample builds a sample's Dockerfile unchanged FROM the stand-in,
// which is tagged <prefix>/node:15-alpine and passed as REGISTRY_FROM_URL.
func buildSample(t *testing.T, d *docker.Client, sample string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := dockertest.Name(t, "gantry-test-standin")
	base := prefix + "/node:15-alpine"
	if _, err := standin.NodeImage(ctx, d, base); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(t, d, base)
	var ctxTar bytes.Buffer
	if err := docker.TarBuildContext(&ctxTar, testenv.Samples(t, sample), "Dockerfile"); err != nil {
		t.Fatal(err)
	}
	tag := prefix + "/" + sample + ":test"
	var out bytes.Buffer
	dockertest.RemoveBuildOnCleanup(t, d, &out, tag)
	from := prefix + "/"
	if _, err := d.BuildImage(ctx, &ctxTar, docker.BuildOptions{
		Tags: []string{tag}, BuildArgs: map[string]*string{"REGISTRY_FROM_URL": &from}, NetworkMode: "host",
		Labels: dockertest.Labels(t),
	}, &out); err != nil {
		t.Fatalf("building %s: %v\n%s", sample, err, out.String())
	}
	return tag
}

func run(t *testing.T, d *docker.Client, image string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	cfg := docker.ContainerConfig{Image: image, Env: env, Labels: dockertest.Labels(t)}
	if len(args) > 0 {
		cfg.Cmd = args
	}
	_, code, err := d.RunContainer(ctx, "", cfg, docker.HostConfig{NetworkMode: "host", AutoRemove: true}, &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	return code, out.String()
}

func TestNodeRunsTheImportGate(t *testing.T) {
	t.Parallel()
	d := dockertest.Engine(t)
	img := buildSample(t, d, "import-baseimage-node")
	code, out := run(t, d, img, []string{"BACKGROUND_COLOR=DeepSkyBlue"})
	if code != 0 || !strings.Contains(out, "Validation Complete - No Known Errors") || !strings.Contains(out, "NODE_VERSION: "+standin.NodeVersion) {
		t.Errorf("valid color: exit %d\n%s", code, out)
	}
	code, out = run(t, d, img, []string{"BACKGROUND_COLOR=Red"})
	if code != 1 || !strings.Contains(out, "\x1b[31mERROR: Invalid Color:\x1b[0m Red") {
		t.Errorf("Red: exit %d\n%q", code, out)
	}
}

func TestNodeServesHelloWorld(t *testing.T) {
	t.Parallel()
	d := dockertest.Engine(t)
	img := buildSample(t, d, "hello-world")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := d.CreateContainer(ctx, "", docker.ContainerConfig{Image: img, Env: []string{"PORT=" + port, "BACKGROUND_COLOR=Orange"}, Labels: dockertest.Labels(t)},
		docker.HostConfig{NetworkMode: "host"})
	if err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveContainerOnCleanup(t, d, id)
	if err := d.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	var page string
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for page == "" {
		select {
		case <-ctx.Done():
			t.Fatal("the stand-in did not serve")
		case <-tick.C:
		}
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page = string(b)
	}
	for _, want := range []string{
		`<style type="text/css">body {background-color:Orange;}</style>`,
		`<h1>Azure Container Registry Tasks</h1>`,
		`<p><b>Version:</b> ` + standin.NodeVersion + `</p>`,
		`<p><b>Background Color:</b> Orange</p>`,
		`<p><b>HostName:</b> `,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
}

func TestNodeAndNpm(t *testing.T) {
	t.Parallel()
	d := dockertest.Engine(t)
	ctx := context.Background()
	tag := dockertest.Name(t, "gantry-test-standin") + ":1"
	if _, err := standin.NodeImage(ctx, d, tag); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(t, d, tag)
	if code, out := run(t, d, tag, nil, "node", "--version"); code != 0 || strings.TrimSpace(out) != "v"+standin.NodeVersion {
		t.Errorf("node --version: %d %q", code, out)
	}
	if code, out := run(t, d, tag, nil, "npm", "install"); code != 0 || !strings.Contains(out, "stand-in") {
		t.Errorf("npm install: %d %q", code, out)
	}
	if code, _ := run(t, d, tag, nil, "node", "/nope.js"); code == 0 {
		t.Error("node of a missing file succeeded")
	}
}

func TestPush(t *testing.T) {
	t.Parallel()
	d := dockertest.Engine(t)
	reg := dockertest.StartRegistry(t, true)
	ctx := context.Background()
	id, err := standin.NodeImage(ctx, d, "")
	if err != nil {
		t.Fatal(err)
	}
	dst := reg.Host + "/library/node:15-alpine"
	digest, err := standin.Push(ctx, d, id, dst, reg.Auth())
	if err != nil || !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("Push: %q, %v", digest, err)
	}
	if _, err := d.InspectImage(ctx, dst); err == nil {
		t.Errorf("Push left the tag %s on the engine", dst)
	}
	if _, err := d.InspectImage(ctx, id); err != nil {
		t.Errorf("Push removed the stand-in: %v", err)
	}
	if err := d.PullImage(ctx, dst, reg.Auth(), nil); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(t, d, dst)
}
