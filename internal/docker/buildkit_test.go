package docker_test

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

const secretValue = "s3cret-npm-token-7f3a"

// secretMD5 lets the Dockerfile check the secret without containing it.
var secretMD5 = fmt.Sprintf("%x", md5.Sum([]byte(secretValue)))

// buildKitDockerfile uses what BuildKit adds: a cache mount, a secret
// mount, stages and a target, on top of build args and .dockerignore.
var buildKitDockerfile = `ARG BASE
FROM ${BASE} AS build
ARG GREETING=default
ARG BUST=0
RUN --mount=type=cache,target=/cache sh -c 'echo "run $BUST" >> /cache/runs; wc -l < /cache/runs > /runs-seen'
RUN --mount=type=secret,id=npmrc sh -c 'test "$(md5sum < /run/secrets/npmrc)" = "` + secretMD5 + `  -" && echo secret-seen > /secret-check'
COPY . /ctx
RUN echo "$GREETING" > /greeting

FROM ${BASE} AS final
COPY --from=build /greeting /runs-seen /secret-check /out/
COPY --from=build /ctx /ctx
CMD ["sh", "-c", "cat /out/greeting /out/runs-seen /out/secret-check; ls /ctx"]

FROM final AS debug
RUN echo never-built
`

// TestBuildKit builds with BuildKit through the engine's session endpoint:
// cache and secret mounts, two stages with a target, build args, labels,
// .dockerignore and a Dockerfile outside the context. The secret is in no
// layer, no history entry and no log line; a rebuild of the same context
// comes from the cache; the cache mount survives between builds.
func TestBuildKit(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	if dockertest.IsPodman(c) {
		// No BuildKit: the automatic builder is the classic one, and a
		// build with secrets says it needs BuildKit.
		if b, why := c.Builder(ctx); b != docker.BuilderClassic || !strings.Contains(why, "Podman Engine") {
			t.Errorf("Builder = %s (%s), want classic", b, why)
		}
		_, err := c.Build(ctx, docker.BuildSource{Dir: testenv.WriteTree(t, map[string]string{"Dockerfile": "FROM scratch\n"})},
			docker.BuildOptions{Secrets: docker.Secrets{"npmrc": []byte(secretValue)}}, nil)
		if !errors.Is(err, docker.ErrNoBuildKit) || strings.Contains(err.Error(), secretValue) {
			t.Errorf("build with secrets: %v", err)
		}
		return
	}
	if b, why := c.Builder(ctx); b != docker.BuilderBuildKit {
		t.Fatalf("dockerd offers BuildKit, but Builder = %s (%s)", b, why)
	}
	dir := testenv.WriteTree(t, map[string]string{
		"app.txt":       "app\n",
		"secret.local":  "left out by .dockerignore\n",
		"logs/x.log":    "left out\n",
		".dockerignore": "*.local\nlogs\n",
	})
	dfDir := testenv.WriteTree(t, map[string]string{"Dockerfile.bk": buildKitDockerfile})
	tag := dockertest.Name(t, "buildkit") + ":v1"
	greeting := "hello-buildkit"
	build := func(bust string, out *bytes.Buffer) docker.BuildResult {
		t.Helper()
		dockertest.RemoveBuildOnCleanup(t, c, out, tag)
		res, err := c.Build(ctx, docker.BuildSource{Dir: dir, Dockerfile: filepath.Join(dfDir, "Dockerfile.bk")}, docker.BuildOptions{
			Tags:      []string{tag},
			BuildArgs: map[string]*string{"BASE": &base, "GREETING": &greeting, "BUST": &bust},
			Target:    "final",
			Labels:    dockertest.Labels(t),
			Platform:  "linux/amd64",
			Secrets:   docker.Secrets{"npmrc": []byte(secretValue)},
		}, out)
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out.String())
		}
		return res
	}
	var out bytes.Buffer
	res := build("1", &out)
	t.Logf("build output:\n%s", out.String())
	if res.Builder != docker.BuilderBuildKit || !strings.HasPrefix(res.ImageID, "sha256:") {
		t.Errorf("result = %+v", res)
	}
	if !strings.Contains(out.String(), "#1 ") || strings.Contains(out.String(), "never-built") {
		t.Errorf("output is not BuildKit's plain progress of the target stage:\n%s", out.String())
	}
	stdout, _, code := run(t, c, docker.ContainerConfig{Image: tag}, docker.HostConfig{})
	if code != 0 || stdout != "hello-buildkit\n1\nsecret-seen\napp.txt\n" {
		t.Errorf("running the image: code %d, stdout %q", code, stdout)
	}
	img, err := c.InspectImage(ctx, tag)
	if err != nil || img.ID != res.ImageID || img.Config.Labels[dockertest.Label] != dockertest.LabelValue(t) {
		t.Errorf("image = %+v, %v", img, err)
	}

	// The secret is in no layer (docker save writes every layer
	// uncompressed), no history entry and no output.
	if bytes.Contains(dockertest.CLI(t, "save", tag), []byte(secretValue)) {
		t.Error("the secret is in an image layer")
	}
	if bytes.Contains(dockertest.CLI(t, "history", "--no-trunc", tag), []byte(secretValue)) {
		t.Error("the secret is in the image history")
	}
	if strings.Contains(out.String(), secretValue) {
		t.Error("the secret is in the build output")
	}

	// Unchanged context: every step from the cache, the same image.
	var again bytes.Buffer
	res2 := build("1", &again)
	if res2.ImageID != res.ImageID || !strings.Contains(again.String(), "CACHED") {
		t.Errorf("rebuild: %s (want %s), output:\n%s", res2.ImageID, res.ImageID, again.String())
	}
	// A changed argument runs the RUN again; the cache mount kept what the
	// first run wrote.
	var third bytes.Buffer
	build("2", &third)
	stdout, _, _ = run(t, c, docker.ContainerConfig{Image: tag}, docker.HostConfig{})
	if !strings.HasPrefix(stdout, "hello-buildkit\n2\n") {
		t.Errorf("cache mount not kept between builds: stdout %q", stdout)
	}
}

// TestBuildKitFailure: a failing RUN fails the build with the builder's
// message and tags nothing.
func TestBuildKitFailure(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	dir := testenv.WriteTree(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo about to fail && exit 3\n"})
	tag := dockertest.Name(t, "bkfail") + ":v1"
	var out bytes.Buffer
	dockertest.RemoveBuildOnCleanup(t, c, &out, tag)
	_, err := c.Build(ctx, docker.BuildSource{Dir: dir}, docker.BuildOptions{
		Tags: []string{tag}, BuildArgs: map[string]*string{"BASE": &base}, Builder: docker.BuilderBuildKit,
	}, &out)
	if dockertest.IsPodman(c) {
		if !errors.Is(err, docker.ErrNoBuildKit) {
			t.Errorf("BuildKit asked of Podman: %v, want ErrNoBuildKit", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "exit code: 3") || !strings.Contains(err.Error(), tag) {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "about to fail") {
		t.Errorf("output:\n%s", out.String())
	}
	if _, err := c.InspectImage(ctx, tag); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("a failed build tagged the image: %v", err)
	}
}

// TestClassicBuilderTakesNoSecrets: a build that needs secrets on the
// classic builder fails at once with ErrNoBuildKit naming them.
func TestClassicBuilderTakesNoSecrets(t *testing.T) {
	t.Parallel()
	c, _ := engine(t)
	dir := testenv.WriteTree(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	_, err := c.Build(testCtx(t), docker.BuildSource{Dir: dir}, docker.BuildOptions{
		Builder: docker.BuilderClassic, Secrets: docker.Secrets{"npmrc": []byte(secretValue)},
	}, nil)
	if !errors.Is(err, docker.ErrNoBuildKit) || !strings.Contains(err.Error(), "npmrc") || strings.Contains(err.Error(), secretValue) {
		t.Errorf("err = %v", err)
	}
}

// TestClassicBuildFromDir: the classic builder, chosen explicitly, builds a
// directory with a Dockerfile outside it, as the fallback on engines
// without BuildKit does.
func TestClassicBuildFromDir(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	dir := testenv.WriteTree(t, map[string]string{"app.txt": "app\n", "skip.local": "x", ".dockerignore": "*.local\n"})
	dfDir := testenv.WriteTree(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY . /ctx\nCMD [\"ls\", \"/ctx\"]\n"})
	tag := dockertest.Name(t, "classic") + ":v1"
	var out bytes.Buffer
	dockertest.RemoveBuildOnCleanup(t, c, &out, tag)
	res, err := c.Build(ctx, docker.BuildSource{Dir: dir, Dockerfile: filepath.Join(dfDir, "Dockerfile")}, docker.BuildOptions{
		Tags: []string{tag}, BuildArgs: map[string]*string{"BASE": &base}, Builder: docker.BuilderClassic,
		Labels: dockertest.Labels(t), NetworkMode: "host",
	}, &out)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	if res.Builder != docker.BuilderClassic || !strings.Contains(strings.ToLower(out.String()), "step 1/") {
		t.Errorf("result %+v, output:\n%s", res, out.String())
	}
	stdout, _, code := run(t, c, docker.ContainerConfig{Image: tag}, docker.HostConfig{})
	if code != 0 || stdout != "app.txt\n" {
		t.Errorf("running the image: code %d, stdout %q", code, stdout)
	}
}
