package engine_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/engine"
)

// TestBuildSecret: a build step's --secret feeds the task file's secret (a
// vault URI) to RUN --mount=type=secret, through the build session only:
// the build sees it, the run log masks it, and the pushed image has it in
// no layer and no history entry. On an engine without BuildKit the step
// fails with a message that says BuildKit is needed.
func TestBuildSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)
	const secret = "npm-token-s3cr3t-5a7e"
	sum := fmt.Sprintf("%x", md5.Sum([]byte(secret)))
	ws := t.TempDir()
	// BUST (the run ID) makes the RUN run on every test run: BuildKit
	// caches a RUN whatever secret it mounted.
	dockerfile := "ARG BASE\nFROM ${BASE}\nARG BUST\n" +
		"RUN --mount=type=secret,id=npm sh -c 'echo $BUST >/dev/null; test \"$(md5sum < /run/secrets/npm)\" = \"" + sum + "  -\" && echo the build saw the secret && cat /run/secrets/npm'\n" +
		"RUN echo done > /done\n"
	if err := os.WriteFile(filepath.Join(ws, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	file := `version: v1.1.0
secrets:
  - id: npmrc
    keyvault: https://contosovault.vault.azure.net/secrets/npm-token
steps:
  - id: build
    build: -t {{.Run.Registry}}/secret-app:{{.Run.ID}} --build-arg BASE=` + bb + ` --build-arg BUST={{.Run.ID}} --secret id=npm,src=npmrc .
  - push: ["{{.Run.Registry}}/secret-app:{{.Run.ID}}"]
`
	j, log := e.job("contoso", file, ws, nil)
	j.ResolveSecret = func(_ context.Context, id, uri string) (string, error) {
		if id == "npmrc" && uri == "https://contosovault.vault.azure.net/secrets/npm-token" {
			return secret, nil
		}
		return "", fmt.Errorf("no secret %s", uri)
	}
	_, err := e.execute(j)
	if dockertest.IsPodman(e.d) {
		if !errors.Is(err, engine.ErrStepFailed) || !strings.Contains(err.Error(), "need BuildKit") || strings.Contains(log.String(), secret) {
			t.Errorf("err = %v\n%s", err, log)
		}
		return
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	out := log.String()
	if !strings.Contains(out, "build | #") || !strings.Contains(out, "the build saw the secret") || !strings.Contains(out, "***") {
		t.Errorf("log:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the run log shows the secret:\n%s", out)
	}
	// The pushed image, pulled back: the secret is in none of its layers
	// (docker save writes them uncompressed) and not in its history.
	ref := e.hosts["contoso"] + "/secret-app:" + j.RunID
	if err := e.d.PullImage(context.Background(), ref, e.dockerAuth("contoso"), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.d.RemoveImage(context.Background(), ref, true) })
	for _, args := range [][]string{{"save", ref}, {"history", "--no-trunc", ref}} {
		if bytes.Contains(dockertest.CLI(t, args...), []byte(secret)) {
			t.Errorf("docker %s shows the secret", args[0])
		}
	}
}

// TestBuildSecretNotInVault: a build secret whose vault entry is missing
// fails the run before anything is built or pushed, naming the secret.
func TestBuildSecretNotInVault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	file := `version: v1.1.0
secrets:
  - id: npmrc
    keyvault: https://contosovault.vault.azure.net/secrets/missing
steps:
  - build: -t {{.Run.Registry}}/never:{{.Run.ID}} --secret id=npmrc .
  - push: ["{{.Run.Registry}}/never:{{.Run.ID}}"]
`
	j, log := e.job("contoso", file, t.TempDir(), nil)
	j.ResolveSecret = func(_ context.Context, id, uri string) (string, error) {
		return "", fmt.Errorf("secret %s: not found", uri)
	}
	res, err := e.execute(j)
	if err == nil || !strings.Contains(err.Error(), "https://contosovault.vault.azure.net/secrets/missing") {
		t.Fatalf("err = %v\n%s", err, log)
	}
	if len(res.Images) != 0 || strings.Contains(log.String(), "Pushing image") {
		t.Errorf("something was pushed: %+v\n%s", res.Images, log)
	}
	e.noLeftovers(t, "contoso", j.RunID)
}

// TestBuilderChoice: a build step says in the run log which builder ran,
// once: the classic builder when the step's env has DOCKER_BUILDKIT=0 (on
// any engine), and otherwise BuildKit where the engine offers it, or the
// classic builder with the reason where it does not (Podman).
func TestBuilderChoice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "Dockerfile"), []byte("ARG BASE\nFROM ${BASE}\nRUN echo built > /built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := `version: v1.1.0
steps:
  - id: classic
    build: -t {{.Run.Registry}}/builder-choice:classic-{{.Run.ID}} --build-arg BASE=` + bb + ` .
    env: [DOCKER_BUILDKIT=0]
  - id: chosen
    build: -t {{.Run.Registry}}/builder-choice:chosen-{{.Run.ID}} --build-arg BASE=` + bb + ` .
`
	j, log := e.job("contoso", file, ws, nil)
	if _, err := e.execute(j); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	for _, suffix := range []string{"classic-", "chosen-"} {
		ref := e.hosts["contoso"] + "/builder-choice:" + suffix + j.RunID
		t.Cleanup(func() { _ = e.d.RemoveImage(context.Background(), ref, true) })
	}
	chosen := `Step ID: chosen: building with BuildKit on `
	if dockertest.IsPodman(e.d) {
		chosen = `Step ID: chosen: building with the classic builder: `
	}
	out := log.String()
	for _, want := range []string{`Step ID: classic: building with the classic builder of `, `(DOCKER_BUILDKIT=0)`, chosen} {
		if strings.Count(out, want) != 1 {
			t.Errorf("the run log has %q %d times, want once:\n%s", want, strings.Count(out, want), out)
		}
	}
	if dockertest.IsPodman(e.d) && !strings.Contains(out, "offers no BuildKit") {
		t.Errorf("the run log does not say why the classic builder ran:\n%s", out)
	}
}

// TestBuildPullsPrivateBase: a build with --pull FROM a registry that
// refuses anonymous pulls resolves the base with the run's registry login
// (BuildKit asks through the build session's auth provider; the classic
// builder through the engine's pull), and the run records the base's
// digest.
func TestBuildPullsPrivateBase(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	ctx := context.Background()
	base := e.hosts["contoso"] + "/private-base:" + randomID()
	if err := e.d.TagImage(ctx, busybox(t, e.d), base); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.d.RemoveImage(context.Background(), base, true) })
	if _, err := e.d.PushImage(ctx, base, e.dockerAuth("contoso"), nil); err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "Dockerfile"), []byte("FROM "+base+"\nRUN echo built > /built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := `version: v1.1.0
steps:
  - id: build
    build: --pull -t {{.Run.Registry}}/pulled-base:{{.Run.ID}} .
`
	j, log := e.job("contoso", file, ws, nil)
	res, err := e.execute(j)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	t.Cleanup(func() { _ = e.d.RemoveImage(context.Background(), e.hosts["contoso"]+"/pulled-base:"+j.RunID, true) })
	if d := res.Dependencies; len(d) != 1 || d[0].Runtime.Reference() != base || d[0].Runtime.Digest == "" {
		t.Errorf("dependencies = %+v, want %s with its digest", d, base)
	}
	if !strings.Contains(log.String(), "Step ID: build marked as successful") {
		t.Errorf("log:\n%s", log)
	}
}
