package docker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

// testCtx returns a context bounded by the test's deadline (at most 2
// minutes).
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// engine returns the client and a cached busybox image for t.
func engine(t *testing.T) (*docker.Client, string) {
	t.Helper()
	c := dockertest.Engine(t)
	return c, dockertest.BusyboxImage(t, c, "")
}

// start creates a container named prefix-<random> from cfg (with t's
// labels) and host, removes it when t ends, and starts it.
func start(ctx context.Context, t *testing.T, c *docker.Client, prefix string, cfg docker.ContainerConfig, host docker.HostConfig) string {
	t.Helper()
	cfg.Labels = dockertest.Labels(t)
	id, err := c.CreateContainer(ctx, dockertest.Name(t, prefix), cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveContainerOnCleanup(t, c, id)
	if err := c.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}

// run runs a container on the host network to completion and returns its
// output and exit code; the container is removed when t ends.
func run(t *testing.T, c *docker.Client, cfg docker.ContainerConfig, host docker.HostConfig) (stdout, stderr string, code int) {
	t.Helper()
	if host.NetworkMode == "" {
		host.NetworkMode = "host"
	}
	cfg.Labels = mergeLabels(cfg.Labels, dockertest.Labels(t))
	var so, se testenv.Buffer
	id, code, err := c.RunContainer(testCtx(t), dockertest.Name(t, "run"), cfg, host, &so, &se)
	if id != "" {
		dockertest.RemoveContainerOnCleanup(t, c, id)
	}
	if err != nil {
		t.Fatalf("running %v: %v", cfg.Cmd, err)
	}
	return so.String(), se.String(), code
}

func mergeLabels(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func TestEngineVersion(t *testing.T) {
	t.Parallel()
	c := dockertest.Engine(t)
	ctx := testCtx(t)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := c.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.APIVersion == "" || v.Version == "" || v.Os != "linux" || v.Name == "" || v.NegotiatedAPIVersion == "" {
		t.Errorf("version = %+v", v)
	}
	t.Logf("%s %s, API %s (min %s, negotiated %s), %s/%s", v.Name, v.Version, v.APIVersion, v.MinAPIVersion, v.NegotiatedAPIVersion, v.Os, v.Arch)
}

// ignoreNotFound is for clean-up calls racing with AutoRemove.
func ignoreNotFound(err error) error {
	if errors.Is(err, docker.ErrNotFound) {
		return nil
	}
	return err
}

func hasLine(out, line string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}
