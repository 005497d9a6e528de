package plan_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// TestDockerfileTask plans the base-image-update tutorial's Dockerfile-app task:
// a build of the run's registry image and a push of its tags, without a network.
func TestDockerfileTask(t *testing.T) {
	t.Parallel()
	r, err := taskfile.RenderDockerfile(context.Background(), taskfile.DockerBuild{
		Dockerfile:      "Dockerfile-app",
		Tags:            []string{"helloworld:{{.Run.ID}}", "127.0.0.1:5002/helloworld:latest"},
		BuildArgs:       []string{"REGISTRY_NAME={{.Run.Registry}}", "GREETING=hello world"},
		SecretBuildArgs: []string{"TOKEN=s3cr3t"},
		Labels:          []string{"run={{.Run.ID}}"},
		Pull:            true,
	}, taskfile.Options{
		Run: taskfile.Run{ID: "da1", Registry: "127.0.0.1:5002", RegistryName: "contoso", Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.SecretValues(), "s3cr3t") {
		t.Errorf("SecretValues = %q", r.SecretValues())
	}
	p, err := plan.New(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `version: "v1.0.0"
steps:
- id: "build"
  kind: build
  parents: [root]
  children: ["push"]
  timeout: 8h0m0s
  workingDirectory: "/workspace"
  build:
    context: "."
    contextKind: local
    contextPath: "/workspace"
    dockerfile: "Dockerfile-app"
    dockerfilePath: "/workspace/Dockerfile-app"
    tags: ["127.0.0.1:5002/helloworld:da1", "127.0.0.1:5002/helloworld:latest"]
    buildArg: "REGISTRY_NAME=127.0.0.1:5002"
    buildArg: "GREETING=hello world"
    buildArg: "TOKEN=***"
    pull: true
    labels: ["run=da1"]
- id: "push"
  kind: push
  parents: ["build"]
  timeout: 30m0s
  workingDirectory: "/workspace"
  push:
    images: ["127.0.0.1:5002/helloworld:da1", "127.0.0.1:5002/helloworld:latest"]
`
	if got := p.String(); got != want {
		t.Errorf("plan =\n%s\nwant\n%s", got, want)
	}

	_, err = taskfile.RenderDockerfile(context.Background(), taskfile.DockerBuild{Tags: []string{"{{ .Run.ID"}}, taskfile.Options{})
	if !errors.Is(err, taskfile.ErrInvalid) || err.Error() != "Dockerfile:1: tags[0]: template: unclosed action" {
		t.Errorf("err = %v", err)
	}
	r, err = taskfile.RenderDockerfile(context.Background(), taskfile.DockerBuild{Tags: []string{"App"}, NoPush: true}, taskfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.New(r); err == nil || err.Error() != `Dockerfile: steps[0].build: tag: invalid image reference: "App": repository name must be lowercase` {
		t.Errorf("err = %v", err)
	}
}
