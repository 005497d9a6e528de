package docker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
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

// buildCacheDockerfile does some real work in each step: a cold build
// takes seconds, a build whose every step is cached does not.
const buildCacheDockerfile = `ARG BASE
FROM ${BASE} AS build
ARG BUST
RUN echo "$BUST" > /bust && dd if=/dev/urandom of=/blob bs=1M count=32 2>/dev/null && sha256sum /blob > /blob.sum
RUN --mount=type=cache,target=/cache sh -c 'for i in $(seq 1 200); do echo $i; done > /cache/list; cp /cache/list /list'
COPY . /src
RUN tar -cf /src.tar /src && gzip -9 /src.tar && for i in 1 2 3 4 5 6 7 8; do sha256sum /blob >/dev/null; done

FROM ${BASE}
COPY --from=build /blob.sum /list /src.tar.gz /out/
`

// BenchmarkBuildKitCache measures what BuildKit's layer cache gives a task
// that rebuilds an unchanged context: each iteration builds a fresh context
// (a new BUST value: every step runs) and then the same context again
// (every step cached), and reports the medians and their ratio.
//
//	go test -run '^$' -bench BuildKitCache -benchtime 5x ./internal/docker/
func BenchmarkBuildKitCache(b *testing.B) {
	c := dockertest.Engine(b)
	base := dockertest.BusyboxImage(b, c, "")
	ctx := context.Background()
	if builder, why := c.Builder(ctx); builder != docker.BuilderBuildKit {
		b.Skipf("no BuildKit: %s", why)
	}
	dir := b.TempDir()
	for i := range 64 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.txt", i)), bytes.Repeat([]byte(fmt.Sprintf("line %d\n", i)), 4096), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(buildCacheDockerfile), 0o644); err != nil {
		b.Fatal(err)
	}
	tag := dockertest.Name(b, "bkcache") + ":1"
	dockertest.RemoveImageOnCleanup(b, c, tag)
	build := func(bust string) time.Duration {
		start := time.Now()
		var out bytes.Buffer
		if _, err := c.Build(ctx, docker.BuildSource{Dir: dir}, docker.BuildOptions{
			Tags: []string{tag}, BuildArgs: map[string]*string{"BASE": &base, "BUST": &bust}, Labels: dockertest.Labels(b),
		}, &out); err != nil {
			b.Fatalf("build: %v\n%s", err, out.String())
		}
		return time.Since(start)
	}
	var first, second []time.Duration
	for i := 0; b.Loop(); i++ {
		bust := fmt.Sprintf("%d-%d", time.Now().UnixNano(), i)
		first = append(first, build(bust))
		second = append(second, build(bust))
	}
	testenv.ReportSpeedup(b, first, second, "first-ms", "second-ms",
		"%d pairs: first build median %s, second (unchanged context) %s: %.1fx faster")
}
