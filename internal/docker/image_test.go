package docker_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

func TestBuildImage(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	tag := dockertest.Name(t, "build") + ":v1"
	files := map[string]string{
		"Dockerfile": `ARG BASE
FROM ${BASE} AS builder
ARG GREETING=default
ARG UNSET
RUN echo "building with $GREETING" && mkdir /out && echo "$GREETING/${UNSET:-none}" > /out/greeting

FROM ${BASE} AS final
COPY --from=builder /out/greeting /greeting
COPY app.conf /etc/app.conf
ENV MODE=prod
WORKDIR /srv
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /greeting"]
EXPOSE 8080

FROM final AS debug
ENV MODE=debug
`,
		"app.conf": "port=8080\n",
	}
	var ctxTar bytes.Buffer
	if err := docker.TarFiles(&ctxTar, files); err != nil {
		t.Fatal(err)
	}
	greeting := "hello"
	var out bytes.Buffer
	dockertest.RemoveBuildOnCleanup(t, c, &out, tag, tag+"-alias")
	id, err := c.BuildImage(ctx, &ctxTar, docker.BuildOptions{
		Tags:        []string{tag, tag + "-alias"},
		BuildArgs:   map[string]*string{"BASE": &base, "GREETING": &greeting},
		Target:      "final",
		Labels:      mergeLabels(dockertest.Labels(t), map[string]string{"org.example.purpose": "test"}),
		NetworkMode: "host",
		Platform:    "linux/amd64",
	}, &out)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("id = %q", id)
	}
	t.Logf("build output:\n%s", out.String())
	wants := []string{"Step 1/", "building with hello", "Successfully tagged " + tag}
	if dockertest.IsPodman(c) {
		// Buildah's wording; a RUN step whose layer is cached prints nothing.
		wants = []string{"STEP 1/", "Successfully tagged "}
	}
	for _, want := range wants {
		if !strings.Contains(out.String(), want) {
			t.Errorf("build output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "debug") {
		t.Error("build went past the target stage")
	}

	img, err := c.InspectImage(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	// Podman lists tags in their full form (docker.io/library/...).
	hasTag := func(tag string) bool {
		return slices.Contains(img.RepoTags, tag) || slices.Contains(img.RepoTags, "docker.io/library/"+tag)
	}
	if img.ID != id || !hasTag(tag) || !hasTag(tag+"-alias") {
		t.Errorf("image = %+v", img)
	}
	cfg := img.Config
	if !slices.Contains(cfg.Env, "MODE=prod") || cfg.WorkingDir != "/srv" || strings.Join(cfg.Entrypoint, " ") != "/bin/sh -c" ||
		strings.Join(cfg.Cmd, " ") != "cat /greeting" || cfg.Labels["org.example.purpose"] != "test" ||
		strings.Join(cfg.ExposedPorts, ",") != "8080/tcp" {
		t.Errorf("config = %+v", cfg)
	}
	if img.Os != "linux" || img.Architecture != "amd64" || img.Size <= 0 {
		t.Errorf("os %q arch %q size %d", img.Os, img.Architecture, img.Size)
	}

	stdout, _, code := run(t, c, docker.ContainerConfig{Image: tag}, docker.HostConfig{})
	if code != 0 || stdout != "hello/none\n" {
		t.Errorf("running the image: code %d, stdout %q", code, stdout)
	}

	// The cache is used on a rebuild; NoCache runs the steps again.
	for _, noCache := range []bool{false, true} {
		ctxTar.Reset()
		_ = docker.TarFiles(&ctxTar, files)
		var out bytes.Buffer
		dockertest.RemoveBuildOnCleanup(t, c, &out)
		id2, err := c.BuildImage(ctx, &ctxTar, docker.BuildOptions{
			Tags:        []string{tag},
			BuildArgs:   map[string]*string{"BASE": &base, "GREETING": &greeting},
			Target:      "final",
			Labels:      mergeLabels(dockertest.Labels(t), map[string]string{"org.example.purpose": "test"}),
			NetworkMode: "host",
			NoCache:     noCache,
		}, &out)
		if err != nil {
			t.Fatal(err)
		}
		if cached := strings.Contains(out.String(), "Using cache"); cached == noCache {
			t.Errorf("NoCache=%v: output shows cache use %v:\n%s", noCache, cached, out.String())
		}
		if !noCache && id2 != id {
			t.Errorf("cached rebuild gave %s, want %s", id2, id)
		}
	}
}

func TestBuildImageFailure(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	before, err := c.ListContainers(ctx, docker.ListContainersOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	_ = docker.TarFiles(&ctxTar, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo about to fail && echo on stderr >&2 && exit 3\nRUN echo never\n"})
	var out bytes.Buffer
	tag := dockertest.Name(t, "fail")
	dockertest.RemoveBuildOnCleanup(t, c, &out, tag)
	_, err = c.BuildImage(ctx, &ctxTar, docker.BuildOptions{Tags: []string{tag}, NetworkMode: "host", Labels: dockertest.Labels(t)}, &out)
	if err == nil {
		t.Fatal("build succeeded")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "returned a non-zero code: 3") && !(dockertest.IsPodman(c) && strings.Contains(err.Error(), "exit status 3")) {
		t.Errorf("error = %v", err)
	}
	if !strings.Contains(out.String(), "about to fail") || strings.Contains(out.String(), "never") {
		t.Errorf("output:\n%s", out.String())
	}
	// The failed step's container was removed (forcerm).
	after, err := c.ListContainers(ctx, docker.ListContainersOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range after {
		if ct.Image == base && !containsID(before, ct.ID) && strings.Contains(ct.Command, "about to fail") {
			t.Errorf("intermediate container left behind: %+v", ct)
		}
	}

	// A Dockerfile that does not parse, and a missing base image.
	for name, df := range map[string]string{
		"syntax":       "FROM " + base + "\nNOTACOMMAND x\n",
		"missing base": "FROM gantry-test/does-not-exist:1\n",
	} {
		ctxTar.Reset()
		_ = docker.TarFiles(&ctxTar, map[string]string{"Dockerfile": df})
		var out bytes.Buffer
		dockertest.RemoveBuildOnCleanup(t, c, &out)
		_, err := c.BuildImage(ctx, &ctxTar, docker.BuildOptions{NetworkMode: "host"}, &out)
		if err == nil {
			t.Errorf("%s: build succeeded", name)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}

func containsID(list []docker.ContainerSummary, id string) bool {
	for _, c := range list {
		if c.ID == id {
			return true
		}
	}
	return false
}

func TestImageTagListRemove(t *testing.T) {
	t.Parallel()
	c, _ := engine(t)
	ctx := testCtx(t)
	repo := dockertest.Name(t, "img")
	id := dockertest.BuildImage(t, c, repo+":1", map[string]string{
		"Dockerfile": "FROM scratch\nCOPY f /f\nLABEL purpose=listing\n",
		"f":          "content\n",
	})
	if err := c.TagImage(ctx, repo+":1", repo+":2"); err != nil {
		t.Fatal(err)
	}
	if err := c.TagImage(ctx, id, repo); err != nil { // bare name: latest
		t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(t, c, repo+":2")
	dockertest.RemoveImageOnCleanup(t, c, repo+":latest")

	list, err := c.ListImages(ctx, docker.ListImagesOptions{Reference: repo})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != id || len(list[0].RepoTags) != 3 || list[0].Labels["purpose"] != "listing" {
		t.Fatalf("list by reference = %+v", list)
	}
	list, err = c.ListImages(ctx, docker.ListImagesOptions{Labels: []string{dockertest.Label + "=" + dockertest.LabelValue(t), "purpose=listing"}})
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("list by label = %+v, %v", list, err)
	}

	// Removing a name of an image with several names only untags it.
	if err := c.RemoveImage(ctx, repo+":2", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InspectImage(ctx, repo+":2"); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("inspect untagged name: %v, want ErrNotFound", err)
	}
	if _, err := c.InspectImage(ctx, id); err != nil {
		t.Errorf("image gone after untag: %v", err)
	}
	// By ID with several names it takes force.
	err = c.RemoveImage(ctx, id, false)
	if !errors.Is(err, docker.ErrConflict) {
		t.Errorf("remove by ID with two names: %v, want ErrConflict", err)
	}
	if err := c.RemoveImage(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InspectImage(ctx, id); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("inspect removed image: %v", err)
	}

	for name, err := range map[string]error{
		"inspect": func() error { _, err := c.InspectImage(ctx, "gantry-test/nope:1"); return err }(),
		"remove":  c.RemoveImage(ctx, "gantry-test/nope:1", false),
		"tag":     c.TagImage(ctx, "gantry-test/nope:1", "gantry-test/nope:2"),
	} {
		if !errors.Is(err, docker.ErrNotFound) || !strings.Contains(err.Error(), "gantry-test/nope:1") {
			t.Errorf("%s of a missing image: %v, want ErrNotFound naming it", name, err)
		}
	}
	if err := c.TagImage(ctx, "gantry-test/nope:1", "Bad Name"); !errors.Is(err, docker.ErrInvalid) && !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("tag with a bad name: %v", err)
	}
}

// TestBuildContextFromDir streams a directory (with a .dockerignore and a
// Dockerfile in a subdirectory) into a build through a pipe.
func TestBuildContextFromDir(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	for name, body := range map[string]string{
		".dockerignore":        "*.env\nnode_modules\n!node_modules/keep.js\n",
		"build/Dockerfile":     "FROM " + base + "\nCOPY . /ctx\nRUN cd /ctx && find . | sort && ./bin/tool\n",
		"secret.env":           "TOKEN=x\n",
		"node_modules/a.js":    "a\n",
		"node_modules/keep.js": "k\n",
		"bin/tool":             "#!/bin/sh\necho tool ran\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "bin/tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(docker.TarBuildContext(pw, dir, "build/Dockerfile")) }()
	defer pr.Close()
	var out bytes.Buffer
	tag := dockertest.Name(t, "ctx")
	dockertest.RemoveBuildOnCleanup(t, c, &out, tag)
	if _, err := c.BuildImage(ctx, pr, docker.BuildOptions{Tags: []string{tag}, Dockerfile: "build/Dockerfile", NetworkMode: "host", Labels: dockertest.Labels(t)}, &out); err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	for _, want := range []string{"./bin/tool", "./build/Dockerfile", "./node_modules/keep.js", "tool ran"} {
		if !hasLine(out.String(), want) {
			t.Errorf("build output lacks %q", want)
		}
	}
	for _, unwanted := range []string{"./secret.env", "./node_modules/a.js"} {
		if hasLine(out.String(), unwanted) {
			t.Errorf("build context has %q", unwanted)
		}
	}
	if t.Failed() {
		t.Log(out.String())
	}
}

// TestBuildCancel: cancelling ctx stops a build in the middle of a RUN, and
// the engine removes the step's container.
func TestBuildCancel(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	marker := dockertest.Name(t, "marker")
	var ctxTar bytes.Buffer
	_ = docker.TarFiles(&ctxTar, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo " + marker + " && sleep 60\n"})
	ctx, cancel := context.WithCancel(testCtx(t))
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() {
		_, err := c.BuildImage(ctx, &ctxTar, docker.BuildOptions{NetworkMode: "host", Labels: dockertest.Labels(t), NoCache: true}, out)
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), marker+"\n") {
		if time.Now().After(deadline) {
			t.Fatalf("RUN step not reached:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("build did not stop")
	}
	// The step's container goes away shortly after.
	for i := 0; ; i++ {
		list, err := c.ListContainers(testCtx(t), docker.ListContainersOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		left := false
		for _, ct := range list {
			left = left || strings.Contains(ct.Command, marker)
		}
		if !left {
			break
		}
		if i == 100 {
			t.Fatal("the cancelled step's container is still there")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
