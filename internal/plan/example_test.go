package plan_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/dockerfile"
	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// Example goes from the bytes of a task file, run data, values and a secret
// resolver to a plan, walks it in order, and scans a build step's Dockerfile for
// its base images.
func Example() {
	src := []byte(`version: v1.1.0
secrets:
  - id: token
    keyvault: https://contosovault.vault.azure.net/secrets/token
steps:
  - id: build
    build: --build-arg REGISTRY_FROM_URL={{.Values.REGISTRY_FROM_URL}} -t $Registry/node:15-alpine-$ID .
  - id: test
    cmd: $Registry/node:15-alpine-$ID
    env: ['TOKEN={{.Secrets.token}}']
  - id: notify
    when: ['-']
    cmd: alpine echo started > /dev/null
  - push: ["$Registry/node:15-alpine-$ID"]
`)
	r, err := taskfile.Render(context.Background(), src, taskfile.Options{
		File: "acr-task.yaml",
		Run: taskfile.Run{
			ID: "ca1", Registry: "127.0.0.1:5001", RegistryName: "contosobaseartifacts",
			Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), OS: "linux", Architecture: "amd64",
		},
		Set: []string{"REGISTRY_FROM_URL=127.0.0.1:5000/"},
		ResolveSecret: func(ctx context.Context, id, uri string) (string, error) {
			return "t0ken", nil // the executor asks the vault with the task's identity
		},
	})
	if errors.Is(err, taskfile.ErrInvalid) {
		fmt.Println(err) // file:line:col: field: message, one line per problem
		return
	} else if err != nil {
		fmt.Println(err) // ErrValues, ErrSecret or ErrAliasSource
		return
	}
	for _, n := range r.Notices {
		fmt.Println(n)
	}
	p, err := plan.New(r)
	if err != nil {
		fmt.Println(err) // also a *taskfile.Error wrapping taskfile.ErrInvalid
		return
	}
	fmt.Println("start:", p.Roots())
	for _, id := range p.Order() {
		s, _ := p.Step(id)
		fmt.Printf("%s (%s) after %v, timeout %s, network %s\n", s.ID, s.Kind, s.Parents, s.Timeout, s.Network)
		switch {
		case s.Build != nil:
			fmt.Println("  docker build", s.Build.Tags, "context", s.Build.ContextPath, "dockerfile", s.Build.DockerfilePath)
			// The executor reads the Dockerfile from the workspace; here, the seed sample's.
			df := []byte("ARG REGISTRY_FROM_URL=\nFROM ${REGISTRY_FROM_URL}node:15-alpine\n")
			deps, err := dockerfile.Scan(df, s.Build.BuildArgMap(), s.Build.Target)
			if err != nil {
				fmt.Println(err)
				return
			}
			fmt.Println("  runtime dependency:", deps.Runtime)
		case s.Cmd != nil && s.Cmd.Docker != nil:
			fmt.Println("  engine command: docker", s.Cmd.Docker.Subcommand, s.Cmd.Docker.Operands)
		case s.Cmd != nil:
			fmt.Println("  run", s.Cmd.Image, s.Cmd.Args, "stdout:", s.Cmd.Stdout, "env:", r.Mask(fmt.Sprint(s.Env)))
		case s.Push != nil:
			fmt.Println("  push", s.Push.Images)
		}
	}
	// Output:
	// Alias support enabled for version >= 1.1.0, please see https://aka.ms/acr/tasks/task-aliases for more information.
	// start: [build notify]
	// build (build) after [], timeout 10m0s, network acb_default_network
	//   docker build [127.0.0.1:5001/node:15-alpine-ca1] context /workspace dockerfile /workspace/Dockerfile
	//   runtime dependency: 127.0.0.1:5000/node:15-alpine
	// test (cmd) after [build], timeout 10m0s, network acb_default_network
	//   run 127.0.0.1:5001/node:15-alpine-ca1 [] stdout: log env: [TOKEN=***]
	// notify (cmd) after [], timeout 10m0s, network acb_default_network
	//   run alpine [echo started] stdout: discard env: []
	// acb_step_3 (push) after [notify], timeout 10m0s, network acb_default_network
	//   push [127.0.0.1:5001/node:15-alpine-ca1]
}
