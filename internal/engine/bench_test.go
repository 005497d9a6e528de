package engine_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

// BenchmarkEngine measures the engine's orchestration overhead: each
// iteration runs a task through Execute and the same engine operations
// through the docker CLI, in alternating order, and reports the median
// times and their ratio (gantry/docker). Run it with
//
//	go test -run '^$' -bench Engine ./internal/engine/
//	go test -run '^$' -bench Engine -benchtime 20x ./internal/engine/   (steadier)
//
// Each iteration takes about a second, so the default benchtime gives one
// sample per side; the machine is shared, so prefer 20x.
//
// The docker CLI side does what the run does, minus the bookkeeping: for
// the five cmd steps, five `docker run --rm --network host`; for the gated
// import task, login, pull of the public base (the run refreshes it), the
// build (with BuildKit on both sides), the test container, two tags, two
// pushes and removing what was created (the run leaves the engine as it
// found it).
func BenchmarkEngine(b *testing.B) {
	cli, err := exec.LookPath("docker")
	if err != nil {
		dockertest.Require(b, "the docker CLI is needed for the comparison")
	}
	b.Run("cmd5", func(b *testing.B) {
		e := newEnv(b, []string{"contoso"})
		bb := busybox(b, e.d)
		var file strings.Builder
		file.WriteString("version: v1.1.0\nsteps:\n")
		var calls [][]string
		for i := range 5 {
			args := []string{"true"}
			if i%2 == 1 {
				args = []string{"echo", "hello", fmt.Sprint(i)}
			}
			fmt.Fprintf(&file, "  - cmd: %s %s\n", bb, strings.Join(args, " "))
			calls = append(calls, append([]string{"run", "--rm", "--network", "host", bb}, args...))
		}
		compare(b, e, func() {
			j, log := e.job("contoso", file.String(), "", nil)
			j.Credentials = nil // the CLI side logs in nowhere either
			if _, err := e.execute(j); err != nil {
				b.Fatalf("%v\n%s", err, log)
			}
		}, func() {
			for _, c := range calls {
				dockerCLI(b, cli, "", nil, c...)
			}
		})
	})

	b.Run("import", func(b *testing.B) {
		e := newEnv(b, []string{"publicregistry", "contosobaseartifacts"})
		e.pushNodeBase("publicregistry", "ENV NODE_VERSION 15-alpine\nENV BACKGROUND_COLOR DeepSkyBlue")
		file := readFixture(b, "seed-samples/import-baseimage-node/acr-task.yaml")
		ws := workspace(b, "seed-samples/import-baseimage-node", nil)
		from := e.hosts["publicregistry"] + "/"
		host := e.hosts["contosobaseartifacts"]
		cfgDir := b.TempDir()
		n := 0
		// The build on the CLI side uses BuildKit too, as gantry's does:
		// Debian's docker 20.10 client builds with it natively
		// (DOCKER_BUILDKIT=1); a newer client needs the buildx plugin.
		buildCLI, buildEnv := cli, "DOCKER_BUILDKIT=1"
		if _, err := os.Stat("/usr/bin/docker"); err == nil {
			buildCLI = "/usr/bin/docker"
		} else if exec.Command(cli, "buildx", "version").Run() != nil {
			buildEnv = "DOCKER_BUILDKIT=0"
			b.Logf("no BuildKit-capable docker CLI: the CLI side builds with the classic builder")
		}
		compare(b, e, func() {
			j, log := e.job("contosobaseartifacts", file, ws, map[string]string{"REGISTRY_FROM_URL": from})
			if _, err := e.execute(j); err != nil {
				b.Fatalf("%v\n%s", err, log)
			}
		}, func() {
			n++
			id := fmt.Sprintf("cli%d", n)
			cred := e.credential("contosobaseartifacts", id)
			env := []string{"DOCKER_CONFIG=" + cfgDir, buildEnv}
			dockerCLI(b, cli, cred.Password, env, "login", host, "-u", cred.Username, "--password-stdin")
			dockerCLI(b, cli, "", env, "pull", "-q", from+"node:15-alpine")
			dockerCLI(b, buildCLI, "", env, "build", "-q", "--network", "host", "--build-arg", "REGISTRY_FROM_URL="+from,
				"-f", ws+"/Dockerfile", "-t", host+"/node-import:test", ws)
			dockerCLI(b, cli, "", env, "run", "--rm", "--network", "host", host+"/node-import:test")
			dockerCLI(b, cli, "", env, "tag", from+"node:15-alpine", host+"/node:15-alpine")
			dockerCLI(b, cli, "", env, "tag", from+"node:15-alpine", host+"/node:15-alpine-"+id)
			dockerCLI(b, cli, "", env, "push", "-q", host+"/node:15-alpine")
			dockerCLI(b, cli, "", env, "push", "-q", host+"/node:15-alpine-"+id)
			dockerCLI(b, cli, "", env, "rmi", host+"/node-import:test", host+"/node:15-alpine", host+"/node:15-alpine-"+id, from+"node:15-alpine")
		})
	})
}

// BenchmarkBuildCacheAcrossRuns measures the layer cache between runs of
// a task: each iteration runs a build task on a fresh context (every step
// runs) and then runs it again on the same context, as the next run of the
// task would (every step cached), and reports the medians and their ratio.
//
//	go test -run '^$' -bench BuildCacheAcrossRuns -benchtime 5x ./internal/engine/
func BenchmarkBuildCacheAcrossRuns(b *testing.B) {
	e := newEnv(b, []string{"contoso"})
	bb := busybox(b, e.d)
	file := "version: v1.1.0\nsteps:\n  - build: -t {{.Run.Registry}}/cached:{{.Run.ID}} --build-arg BASE=" + bb + " .\n"
	dockerfile := `ARG BASE
FROM ${BASE}
COPY stamp /stamp
RUN dd if=/dev/urandom of=/blob bs=1M count=32 2>/dev/null && sha256sum /blob > /blob.sum
RUN --mount=type=cache,target=/cache sh -c 'seq 1 5000 > /cache/list && cp /cache/list /list'
RUN for i in 1 2 3 4 5 6 7 8; do sha256sum /blob >/dev/null; done
`
	run := func(ws string) time.Duration {
		j, log := e.job("contoso", file, ws, nil)
		start := time.Now()
		if _, err := e.execute(j); err != nil {
			b.Fatalf("%v\n%s", err, log)
		}
		return time.Since(start)
	}
	var first, second []time.Duration
	for i := 0; b.Loop(); i++ {
		ws := b.TempDir()
		for name, body := range map[string]string{"Dockerfile": dockerfile, "stamp": fmt.Sprint(time.Now().UnixNano(), i)} {
			if err := os.WriteFile(ws+"/"+name, []byte(body), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		first = append(first, run(ws))
		second = append(second, run(ws))
	}
	testenv.ReportSpeedup(b, first, second, "first-run-ms", "second-run-ms",
		"%d pairs: first run %s, next run of the unchanged context %s: %.1fx faster")
}

// compare times gantry and the docker CLI doing the same work, alternating
// which goes first, and reports the median of each and their ratio (the
// machine is shared: medians keep a load spike from deciding).
func compare(b *testing.B, e *env, gantry, cli func()) {
	b.Helper()
	// Warm up both (helper image, caches of the engine).
	gantry()
	cli()
	var tg, tc []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			tg = append(tg, timed(gantry))
			tc = append(tc, timed(cli))
		} else {
			tc = append(tc, timed(cli))
			tg = append(tg, timed(gantry))
		}
	}
	b.StopTimer()
	mg, mc := testenv.Median(tg), testenv.Median(tc)
	b.ReportMetric(float64(mg.Microseconds())/1000, "gantry-ms")
	b.ReportMetric(float64(mc.Microseconds())/1000, "docker-ms")
	ratio := float64(mg) / float64(mc)
	b.ReportMetric(ratio, "ratio")
	b.Logf("%s (%d runs): median gantry %s, docker CLI %s: ratio %.3f (overhead %+.1f%%)",
		b.Name(), b.N, mg.Round(time.Millisecond), mc.Round(time.Millisecond), ratio, (ratio-1)*100)
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// dockerCLI runs the docker CLI against DOCKER_HOST.
func dockerCLI(b *testing.B, cli, stdin string, env []string, args ...string) {
	b.Helper()
	cmd := exec.Command(cli, args...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}
