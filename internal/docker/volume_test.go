package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
)

// volume creates a labelled volume that is removed when t ends.
func volume(t *testing.T, c *docker.Client, labels map[string]string) docker.Volume {
	t.Helper()
	ctx := testCtx(t)
	v, err := c.CreateVolume(ctx, dockertest.Name(t, "vol"), mergeLabels(labels, dockertest.Labels(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ignoreNotFound(c.RemoveVolume(ctx, v.Name, true)); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return v
}

func TestVolumes(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	v := volume(t, c, map[string]string{"purpose": "shared"})
	if v.Driver != "local" || v.Mountpoint == "" || v.Labels["purpose"] != "shared" {
		t.Errorf("volume = %+v", v)
	}
	got, err := c.InspectVolume(ctx, v.Name)
	if err != nil || got.Name != v.Name {
		t.Errorf("inspect = %+v, %v", got, err)
	}
	list, err := c.ListVolumes(ctx, "purpose=shared", dockertest.Label+"="+dockertest.LabelValue(t))
	if err != nil || len(list) != 1 || list[0].Name != v.Name {
		t.Errorf("list by label = %+v, %v", list, err)
	}

	// One container writes, through a Mount; another reads, through a Bind.
	_, _, code := run(t, c, docker.ContainerConfig{Image: base, Cmd: []string{"sh", "-c", "echo shared > /workspace/f && mkdir /workspace/d"}},
		docker.HostConfig{AutoRemove: true, Mounts: []docker.Mount{{Type: "volume", Source: v.Name, Target: "/workspace"}}})
	if code != 0 {
		t.Fatalf("writer exited %d", code)
	}
	stdout, stderr, code := run(t, c, docker.ContainerConfig{Image: base, Cmd: []string{"sh", "-c", "cat /data/f; touch /data/x"}},
		docker.HostConfig{AutoRemove: true, Binds: []string{v.Name + ":/data:ro"}})
	if stdout != "shared\n" || code == 0 || !strings.Contains(stderr, "Read-only file system") {
		t.Errorf("reader: stdout %q stderr %q code %d", stdout, stderr, code)
	}

	// A volume in use cannot be removed, not even with force.
	id, err := c.CreateContainer(ctx, "", docker.ContainerConfig{Image: base, Labels: dockertest.Labels(t)},
		docker.HostConfig{NetworkMode: "host", Mounts: []docker.Mount{{Type: "volume", Source: v.Name, Target: "/w"}}})
	if err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveContainerOnCleanup(t, c, id)
	for _, force := range []bool{false, true} {
		if err := c.RemoveVolume(ctx, v.Name, force); !errors.Is(err, docker.ErrConflict) {
			t.Errorf("remove a volume in use (force %v): %v, want ErrConflict", force, err)
		}
	}
	if err := c.RemoveContainer(ctx, id, docker.RemoveContainerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveVolume(ctx, v.Name, false); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveVolume(ctx, v.Name, false); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("remove a removed volume: %v, want ErrNotFound", err)
	}
	if err := c.RemoveVolume(ctx, v.Name, true); err != nil {
		t.Errorf("force-remove a removed volume: %v", err)
	}
	if _, err := c.InspectVolume(ctx, v.Name); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("inspect a removed volume: %v, want ErrNotFound", err)
	}
}

// TestCopyIntoVolume is how the executor populates /workspace and the
// docker config home: a created (never started) container mounts the
// volumes and receives the archives.
func TestCopyIntoVolume(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	workspace := volume(t, c, nil)
	home := volume(t, c, nil)

	src := t.TempDir()
	for name, body := range map[string]string{"Dockerfile": "FROM scratch\n", "src/app.sh": "#!/bin/sh\necho app\n", "README": "readme\n"} {
		p := filepath.Join(src, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Chmod(filepath.Join(src, "src/app.sh"), 0o755)
	_ = os.Symlink("src/app.sh", filepath.Join(src, "run"))

	setup, err := c.CreateContainer(ctx, dockertest.Name(t, "setup"), docker.ContainerConfig{Image: base, Labels: dockertest.Labels(t)},
		docker.HostConfig{NetworkMode: "none", Mounts: []docker.Mount{
			{Type: "volume", Source: workspace.Name, Target: "/workspace"},
			{Type: "volume", Source: home.Name, Target: "/acb/home"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveContainerOnCleanup(t, c, setup)
	var ws bytes.Buffer
	if err := docker.TarDir(&ws, src); err != nil {
		t.Fatal(err)
	}
	if err := c.CopyToContainer(ctx, setup, "/workspace", &ws); err != nil {
		t.Fatal(err)
	}
	config := `{"experimental":"enabled","HttpHeaders":{"X-Meta-Source-Client":"gantry"}}`
	var cfgTar bytes.Buffer
	_ = docker.TarFiles(&cfgTar, map[string]string{".docker/config.json": config})
	if err := c.CopyToContainer(ctx, setup, "/acb/home", &cfgTar); err != nil {
		t.Fatal(err)
	}
	// dockerd refuses a missing target directory; Podman creates it.
	if err := c.CopyToContainer(ctx, setup, "/no/such/dir", bytes.NewReader(cfgTar.Bytes())); !errors.Is(err, docker.ErrNotFound) && !dockertest.IsPodman(c) {
		t.Errorf("copy into a missing directory: %v, want ErrNotFound", err)
	}

	stdout, stderr, code := run(t, c, docker.ContainerConfig{
		Image: base, WorkingDir: "/workspace", Env: []string{"HOME=/acb/home"},
		Cmd: []string{"sh", "-c", "./run && cat README && cat $HOME/.docker/config.json && stat -c '%a %U' src/app.sh && echo out > result.txt"},
	}, docker.HostConfig{Mounts: []docker.Mount{
		{Type: "volume", Source: workspace.Name, Target: "/workspace"},
		{Type: "volume", Source: home.Name, Target: "/acb/home", ReadOnly: true},
	}})
	if want := "app\nreadme\n" + config + "755 root\n"; stdout != want || code != 0 {
		t.Errorf("step: stdout %q stderr %q code %d, want %q", stdout, stderr, code, want)
	}

	// Copy a file out again (through the same never-started container).
	rc, st, err := c.CopyFromContainer(ctx, setup, "/workspace/result.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if st.Name != "result.txt" || st.Size != 4 || st.Mode.IsDir() {
		t.Errorf("stat = %+v", st)
	}
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(tr)
	if h.Name != "result.txt" || string(body) != "out\n" {
		t.Errorf("copied out %q: %q", h.Name, body)
	}
	rcd, st, err := c.CopyFromContainer(ctx, setup, "/workspace/src")
	if err != nil {
		t.Fatal(err)
	}
	defer rcd.Close()
	if !st.Mode.IsDir() {
		t.Errorf("dir stat = %+v", st)
	}
	var names []string
	tr = tar.NewReader(rcd)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, strings.TrimSuffix(h.Name, "/")) // Podman omits a directory's slash
	}
	if strings.Join(names, " ") != "src src/app.sh" {
		t.Errorf("copied dir entries %q", names)
	}
	if _, _, err := c.CopyFromContainer(ctx, setup, "/workspace/nope"); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("copy a missing path: %v, want ErrNotFound", err)
	}
}
