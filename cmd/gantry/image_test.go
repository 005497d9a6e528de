package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestImage builds the server image with scripts/image.sh on the engine of
// DOCKER_HOST and runs it as docs/deploy.md says: host network, the
// engine's socket mounted with its group added. The server must run as
// 65532 without a shell in the image, answer on its control API, and run
// a task whose steps use the gantry CLI and az images it builds from its
// own binary and the image's busybox.
func TestImage(t *testing.T) {
	c := dockertest.Engine(t)
	if _, err := exec.LookPath("docker"); err != nil {
		dockertest.Require(t, "the docker CLI is not installed")
	}
	sock, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://")
	if !ok {
		dockertest.Require(t, "DOCKER_HOST=%s is not a unix socket a container can mount", os.Getenv("DOCKER_HOST"))
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	sockGroup := strconv.FormatUint(uint64(fi.Sys().(*syscall.Stat_t).Gid), 10)
	bin := scriptBinary(t)
	_, fields := runVersion(t, bin)

	dockertest.Sweep(t, c)
	label := dockertest.Label + "=" + dockertest.LabelValue(t)
	tag := dockertest.Name(t, "gantry-image") + ":test"
	build := exec.Command(filepath.Join(root, "scripts", "image.sh"), tag, "--label", label)
	build.Env = append(os.Environ(), "GANTRY_BIN="+bin)
	var buildLog bytes.Buffer
	build.Stderr = &buildLog
	// The image and the classic builder's intermediate images.
	dockertest.RemoveBuildOnCleanup(t, c, &buildLog, tag)
	out, err := build.Output()
	if err != nil {
		t.Fatalf("scripts/image.sh: %v\n%s", err, buildLog.String())
	}
	if strings.TrimSpace(string(out)) != tag {
		t.Errorf("scripts/image.sh printed %q, want the tag %s", out, tag)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img, err := c.InspectImage(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: %.1f MB", tag, float64(img.Size)/1e6)
	if img.Config.User != "65532:65532" || !slices.Contains(img.Config.ExposedPorts, "7000/tcp") ||
		!slices.Equal(img.Config.Entrypoint, []string{"/usr/local/bin/gantry"}) ||
		!slices.Equal(img.Config.Cmd, []string{"server", "--data", "/data", "--listen", "0.0.0.0:7000"}) {
		t.Errorf("image config: %+v", img.Config)
	}
	// No shell: the start fails (the container is swept by its label).
	noShell := exec.Command("docker", "run", "--rm", "--label", label, "--entrypoint", "/bin/sh", tag, "-c", "true")
	if out, err := noShell.CombinedOutput(); err == nil || !strings.Contains(string(out), "/bin/sh") {
		t.Errorf("docker run --entrypoint /bin/sh: %v, %s; want no /bin/sh", err, out)
	}

	port := freePort(t)
	password := testenv.RandomHex(12)
	id := strings.TrimSpace(string(dockertest.CLI(t, "run", "-d", "--network", "host", "--label", label,
		"-v", sock+":/var/run/docker.sock", "--group-add", sockGroup,
		"-e", "GANTRY_ADMIN_PASSWORD="+password,
		tag, "server", "--listen", "127.0.0.1:"+port, "--data", "/data")))
	dockertest.RemoveContainerOnCleanup(t, c, id)
	serverLog := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var b bytes.Buffer
		if err := c.ContainerLogs(ctx, id, docker.LogsOptions{}, &b, &b); err != nil {
			return err.Error()
		}
		return b.String()
	}
	// Runs before the container's removal: the CLI images the server built
	// are named in its log.
	t.Cleanup(func() {
		removeBuiltImages(t, serverLog())
		if t.Failed() {
			t.Logf("server log:\n%s", serverLog())
		}
	})

	url := "http://127.0.0.1:" + port
	if !testenv.WaitHTTP(url+"/v1/version", nil, time.Minute) {
		t.Fatalf("the server in the container does not answer on %s", url)
	}
	if code, _ := testenv.Get(t, url+"/v1/registries"); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/registries without credentials: %d, want 401", code)
	}
	if code, body := testenv.Get(t, url+"/v1/version"); code != http.StatusOK || !strings.Contains(body, `"`+fields["client"]+`"`) {
		t.Errorf("GET /v1/version: %d %s, want version %s", code, body, fields["client"])
	}
	top := strings.Fields(string(dockertest.CLI(t, "top", id, "-o", "pid,uid,gid")))
	if len(top) < 6 || !slices.Equal(top[:3], []string{"PID", "UID", "GID"}) {
		t.Fatalf("docker top: %q", top)
	}
	for i := 3; i+2 < len(top); i += 3 {
		if top[i+1] != "65532" || top[i+2] != "65532" {
			t.Errorf("process %s runs as %s:%s, want 65532:65532", top[i], top[i+1], top[i+2])
		}
	}

	// A task whose steps run the gantry CLI and az: the server builds their
	// images through the mounted socket.
	env := append(withoutEnv(os.Environ(), "GANTRY_TOKEN"), "GANTRY_SERVER="+url,
		"GANTRY_USERNAME=admin", "GANTRY_PASSWORD="+password, "GANTRY_CONFIG_DIR="+t.TempDir())
	gantry := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gantry %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	taskFile := filepath.Join(t.TempDir(), "versions.yaml")
	if err := os.WriteFile(taskFile, []byte("version: v1.1.0\nsteps:\n  - cmd: gantry version -o tsv\n  - cmd: az version -o tsv\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gantry("registry", "create", "-n", "imagetest", "--listen", "127.0.0.1:"+freePort(t), "-o", "none")
	gantry("task", "create", "-r", "imagetest", "-n", "versions", "-f", taskFile, "-o", "none")
	runLog := gantry("task", "run", "-r", "imagetest", "-n", "versions")
	if n := strings.Count(runLog, "| "+fields["client"]+"\t"+fields["commit"]); n != 2 {
		t.Errorf("the steps printed the version %d times, want 2:\n%s", n, runLog)
	}
}

// builtImage matches the CLI and az images in a server log.
var builtImage = regexp.MustCompile(`msg="built the (?:gantry CLI|az) image" .*image=(\S+)`)

// removeBuiltImages removes the images the server log says it built, the
// last built first (the az image is built FROM the CLI image), with the
// docker CLI, which also removes the untagged images of their build steps.
func removeBuiltImages(t *testing.T, log string) {
	t.Helper()
	m := builtImage.FindAllStringSubmatch(log, -1)
	for i := len(m) - 1; i >= 0; i-- {
		out, err := exec.Command("docker", "image", "rm", m[i][1]).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such image") {
			t.Errorf("cleanup: docker image rm %s: %v\n%s", m[i][1], err, out)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}
