package docker_test

import (
	"context"
	"os/exec"
	"testing"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
)

// BenchmarkContainerRun measures the overhead of running a trivial
// container (busybox true on the host network) through the client, against
// the docker CLI doing the same, in the same run:
//
//	api: CreateContainer + WaitContainer(next-exit) + StartContainer + wait + RemoveContainer
//	run: RunContainer with attached output and AutoRemove (what a step does)
//	cli: docker run --rm --network host <image> true
//
// Run with: go test -run '^$' -bench ContainerRun -benchtime 30x ./internal/docker/
func BenchmarkContainerRun(b *testing.B) {
	c := dockertest.Engine(b)
	image := dockertest.BusyboxImage(b, c, "")
	ctx := context.Background()
	labels := dockertest.Labels(b)
	dockertest.Sweep(b, c)

	b.Run("api", func(b *testing.B) {
		for b.Loop() {
			id, err := c.CreateContainer(ctx, "", docker.ContainerConfig{Image: image, Cmd: []string{"true"}, Labels: labels}, docker.HostConfig{NetworkMode: "host"})
			if err != nil {
				b.Fatal(err)
			}
			waited, err := c.WaitContainer(ctx, id, docker.WaitNextExit)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.StartContainer(ctx, id); err != nil {
				b.Fatal(err)
			}
			if r := <-waited; r.Err != nil || r.ExitCode != 0 {
				b.Fatalf("wait: %+v", r)
			}
			if err := c.RemoveContainer(ctx, id, docker.RemoveContainerOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("run", func(b *testing.B) {
		for b.Loop() {
			_, code, err := c.RunContainer(ctx, "", docker.ContainerConfig{Image: image, Cmd: []string{"true"}, Labels: labels},
				docker.HostConfig{NetworkMode: "host", AutoRemove: true}, nil, nil)
			if err != nil || code != 0 {
				b.Fatalf("run: %d, %v", code, err)
			}
		}
	})
	b.Run("cli", func(b *testing.B) {
		cli, err := exec.LookPath("docker")
		if err != nil {
			b.Skip("docker CLI not found")
		}
		for b.Loop() {
			cmd := exec.Command(cli, "run", "--rm", "--network", "host", "--label", dockertest.Label+"="+dockertest.LabelValue(b), image, "true")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("docker run: %v\n%s", err, out)
			}
		}
	})
}
