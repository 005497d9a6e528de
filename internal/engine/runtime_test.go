package engine_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/standin"
	"github.com/gantryhq/gantry/internal/taskfile"
)

func stepResult(t *testing.T, res engine.Result, id string) engine.StepResult {
	t.Helper()
	for _, s := range res.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no result for step %s in %+v", id, res.Steps)
	return engine.StepResult{}
}

// runningContainers lists the run's running containers by label.
func (e *env) runningContainers(registry, runID string) []docker.ContainerSummary {
	e.t.Helper()
	cs, err := e.d.ListContainers(context.Background(), docker.ListContainersOptions{Labels: []string{engine.LabelRun + "=" + registry + "/" + runID}})
	if err != nil {
		e.t.Fatal(err)
	}
	return cs
}

// TestParallelAndFailFast: steps with when: ['-'] run at the same time
// (their recorded times overlap); when one fails, the run stops at once and
// the other running containers are removed.
func TestParallelAndFailFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)

	t.Run("parallel", func(t *testing.T) {
		j, log := e.job("contoso", `version: v1.1.0
steps:
  - {id: left, when: ['-'], cmd: `+bb+` sleep 1}
  - {id: right, when: ['-'], cmd: `+bb+` sleep 1}
  - {id: joined, when: [left, right], cmd: `+bb+` true}
`, "", nil)
		res, err := e.execute(j)
		if err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
		l, r, joined := stepResult(t, res, "left"), stepResult(t, res, "right"), stepResult(t, res, "joined")
		if !l.StartedAt.Before(r.FinishedAt) || !r.StartedAt.Before(l.FinishedAt) {
			t.Errorf("left %s-%s and right %s-%s did not overlap", l.StartedAt, l.FinishedAt, r.StartedAt, r.FinishedAt)
		}
		if joined.StartedAt.Before(l.FinishedAt) || joined.StartedAt.Before(r.FinishedAt) {
			t.Errorf("joined started before both parents finished")
		}
		// Each sleeps 1s: overlapping by most of that second is running
		// in parallel, not just starting together.
		end, start := l.FinishedAt, l.StartedAt
		if r.FinishedAt.Before(end) {
			end = r.FinishedAt
		}
		if r.StartedAt.After(start) {
			start = r.StartedAt
		}
		if overlap := end.Sub(start); overlap < 700*time.Millisecond {
			t.Errorf("left and right overlapped for only %s", overlap)
		}
	})

	t.Run("fail fast", func(t *testing.T) {
		j, log := e.job("contoso", `version: v1.1.0
steps:
  - {id: slow, when: ['-'], cmd: `+bb+` sleep 60}
  - {id: after-slow, cmd: `+bb+` true}
  - {id: service, when: ['-'], detach: true, cmd: `+bb+` sleep 60}
  - {id: boom, when: ['-'], cmd: `+bb+` sh -c 'sleep 4; exit 3'}
`, "", nil)
		type out struct {
			res engine.Result
			err error
		}
		done := make(chan out, 1)
		go func() {
			res, err := e.execute(j)
			done <- out{res, err}
		}()
		// While boom sleeps, the others run: visible by label.
		if !log.waitFor("Launching container with name: slow", 20*time.Second) || !log.waitFor("Successfully executed container: service", 20*time.Second) {
			t.Fatalf("steps did not start:\n%s", log)
		}
		seen := 0
		for deadline := time.Now().Add(3 * time.Second); seen < 2 && time.Now().Before(deadline); <-time.After(20 * time.Millisecond) {
			seen = len(e.runningContainers("contoso", j.RunID))
		}
		if seen < 2 {
			t.Errorf("%d running containers carry the run label, want at least 2", seen)
		}
		var o out
		select {
		case o = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the run did not stop")
		}
		failedAt := time.Now()
		if !errors.Is(o.err, engine.ErrStepFailed) || o.err.Error() != "failed to run step ID: boom: exit status 3" {
			t.Fatalf("err = %v\n%s", o.err, log)
		}
		e.noLeftovers(t, "contoso", j.RunID)
		b := stepResult(t, o.res, "boom")
		if failedAt.Sub(b.FinishedAt) > 10*time.Second {
			t.Errorf("stopping the other steps took %s", failedAt.Sub(b.FinishedAt))
		}
		want := map[string]string{"slow": engine.StepFailed, "after-slow": engine.StepSkipped, "service": engine.StepSuccessful, "boom": engine.StepFailed}
		for id, st := range want {
			if got := stepResult(t, o.res, id).Status; got != st {
				t.Errorf("step %s: %s, want %s", id, got, st)
			}
		}
		if s := stepResult(t, o.res, "slow"); !strings.HasPrefix(s.Error, "stopped: failed to run step ID: boom") {
			t.Errorf("slow: %+v", s)
		}
	})
}

// TestTimeouts: a step timeout fails the step (and the run) after the
// step's timeout; the run timeout ends the run with DeadlineExceeded. Both
// remove the containers.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)

	t.Run("step", func(t *testing.T) {
		j, log := e.job("contoso", "steps:\n  - {id: sleepy, timeout: 2, cmd: "+bb+" sleep 60}\n  - {id: next, cmd: "+bb+" true}\n", "", nil)
		start := time.Now()
		res, err := e.execute(j)
		if !errors.Is(err, engine.ErrStepFailed) || errors.Is(err, context.DeadlineExceeded) ||
			err.Error() != "failed to run step ID: sleepy: context deadline exceeded" {
			t.Fatalf("err = %v\n%s", err, log)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("a 2s step timeout took %s", d)
		}
		if stepResult(t, res, "next").Status != engine.StepSkipped {
			t.Errorf("next ran after the failure")
		}
		e.noLeftovers(t, "contoso", j.RunID)
	})

	t.Run("run", func(t *testing.T) {
		j, log := e.job("contoso", "steps:\n  - {id: sleepy, cmd: "+bb+" sleep 60}\n", "", nil)
		j.Timeout = 2 * time.Second
		start := time.Now()
		_, err := e.execute(j)
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, engine.ErrStepFailed) {
			t.Fatalf("err = %v\n%s", err, log)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("a 2s run timeout took %s", d)
		}
		checkLines(t, log.String(), stamp+`Run ID: `+j.RunID+` timed out after 2s; stopping its containers`)
		e.noLeftovers(t, "contoso", j.RunID)
	})
}

// TestCancel: cancelling the context mid-step stops and removes the
// containers promptly and returns context.Canceled.
func TestCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)
	j, log := e.job("contoso", `steps:
  - {id: service, detach: true, cmd: `+bb+` sleep 60}
  - {id: sleepy, cmd: `+bb+` sleep 60}
`, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := e.engine.Execute(ctx, j)
		errc <- err
	}()
	if !log.waitFor("Launching container with name: sleepy", 20*time.Second) {
		t.Fatalf("sleepy did not start:\n%s", log)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(e.runningContainers("contoso", j.RunID)) < 2 && time.Now().Before(deadline) {
		<-time.After(20 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Execute did not return after cancel")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelling took %s", d)
	}
	e.noLeftovers(t, "contoso", j.RunID)
}

// TestStepProperties exercises retries, ignoreErrors, repeat, env, HOME,
// working directories, user, entryPoint, keep, secret volumes and the docker
// config of the home volume.
func TestStepProperties(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)
	secret := base64.StdEncoding.EncodeToString([]byte("the-volume-secret"))
	j, log := e.job("contoso", `version: v1.1.0
env: [TASKVAR=task]
volumes:
  - name: sec
    secret:
      token.txt: `+secret+`
steps:
  - id: flaky
    retries: 2
    retryDelay: 1
    cmd: `+bb+` sh -c 'if [ -f attempt ]; then echo second attempt; else touch attempt; echo first attempt; exit 1; fi'
  - id: broken
    ignoreErrors: true
    cmd: `+bb+` sh -c 'exit 4'
  - id: repeated
    repeat: 2
    cmd: `+bb+` sh -c 'echo run >> runs; wc -l < runs'
  - id: environment
    workingDirectory: sub/dir
    env: ['STEPVAR=step']
    cmd: `+bb+` sh -c 'echo "home=$HOME step=$STEPVAR task=$TASKVAR pwd=$(pwd)"'
  - id: as-user
    user: "1000"
    cmd: `+bb+` id -u
  - id: entry
    entryPoint: /bin/echo
    cmd: `+bb+` via entrypoint
  - id: kept
    keep: true
    cmd: `+bb+` true
  - id: mounted
    volumeMounts: [{name: sec, mountPath: /run/secrets}]
    cmd: `+bb+` cat /run/secrets/token.txt
  - id: docker-config
    cmd: `+bb+` cat /acb/home/.docker/config.json
  - id: quiet
    cmd: `+bb+` echo you should not see this > /dev/null
`, "", nil)
	res, err := e.execute(j)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	out := log.String()
	checkLines(t, out,
		`flaky \| first attempt`,
		stamp+`Container failed during run: flaky, waiting 1 seconds before retrying\.\.\.`,
		`flaky \| second attempt`,
		stamp+`Step ID: broken encountered an error: exit status 4, but is set to ignore errors\. Continuing\.\.\.`,
		`repeated \| 3`,
		`environment \| home=/acb/home step=step task=task pwd=/workspace/sub/dir`,
		`as-user \| 1000`,
		`entry \| via entrypoint`,
		`mounted \| the-volume-secret`,
		`docker-config \| .*"`+e.hosts["contoso"]+`": \{`,
		`docker-config \| .*"auth": "\*\*\*"`,
	)
	if strings.Contains(out, "you should not see this") {
		t.Error("> /dev/null was not honoured")
	}
	if s := stepResult(t, res, "broken"); s.Status != engine.StepSuccessful || s.ExitCode != 4 {
		t.Errorf("broken: %+v", s)
	}
	if left := e.leftovers("contoso", j.RunID); len(left) > 0 {
		t.Errorf("left behind (kept containers go with the run): %v", left)
	}
}

// TestWorkspaceBuildAndDockerCommands: a build reads the workspace as
// earlier steps left it (a generated Dockerfile), and docker commands act on
// the engine with the run's logins.
func TestWorkspaceBuildAndDockerCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)
	j, log := e.job("contoso", `version: v1.1.0
steps:
  - id: generate
    cmd: `+bb+` sh -c 'mkdir -p gen && echo "FROM `+bb+`" > gen/Dockerfile && echo "RUN echo generated > /generated" >> gen/Dockerfile'
  - id: build
    build: -t $Registry/generated:$ID gen
  - id: run-it
    cmd: $Registry/generated:$ID cat /generated
  - id: retag
    cmd: docker tag $Registry/generated:$ID $Registry/generated:copy-$ID
  - id: push-copy
    cmd: docker push $Registry/generated:copy-$ID
  - id: list
    cmd: docker images $Registry/generated
  - id: inspect
    cmd: docker inspect --format '{{"{{"}}index .RepoTags 0{{"}}"}}' $Registry/generated:copy-$ID
  - id: login
    cmd: docker login $Registry -u {{.Values.USER}} -p {{.Values.PASSWORD}}
  - id: remove
    cmd: docker rmi $Registry/generated:copy-$ID
  - id: pull-back
    cmd: docker pull $Registry/generated:copy-$ID
  - id: missing
    ignoreErrors: true
    cmd: docker tag nosuchimage:1 $Registry/x:1
`, t.TempDir(), map[string]string{"USER": "gantry-run", "PASSWORD": ""})
	j.Values["PASSWORD"] = j.Credentials[0].Password
	res, err := e.execute(j)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	host := e.hosts["contoso"]
	inspected, pulled := `inspect \| `+host+`/generated:copy-`+j.RunID, `pull-back \| Status: Downloaded newer image for `+host+`/generated:copy-`+j.RunID
	if dockertest.IsPodman(e.d) {
		// Podman lists the image's tags in another order and its pull
		// stream has no status lines (docs/engines.md).
		inspected, pulled = `inspect \| `+host+`/generated:\S+`, stamp+`Step ID: pull-back marked as successful .*`
	}
	checkLines(t, log.String(),
		`build \| (#\d+ \[1/2\] FROM .*`+bb+`|STEP 1/2: FROM `+bb+`)`,
		`run-it \| generated`,
		`push-copy \| copy-`+j.RunID+`: digest: sha256:[0-9a-f]{64} size: \d+`,
		`list \| REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE`,
		`list \| `+host+`/generated\s+copy-`+j.RunID+`\s+[0-9a-f]{12}\s+.*`,
		inspected,
		`login \| Login Succeeded`,
		`remove \| Untagged: `+host+`/generated:copy-`+j.RunID,
		pulled,
		`missing \| Error response from daemon: .*nosuchimage.*`,
	)
	if strings.Contains(log.String(), j.Credentials[0].Password) {
		t.Error("the login password is in the log")
	}
	if len(res.Images) != 1 || res.Images[0].Tag != "copy-"+j.RunID {
		t.Errorf("pushed %+v", res.Images)
	}
	if len(res.Dependencies) != 1 || res.Dependencies[0].Runtime.Repository != "library/"+strings.Split(bb, ":")[0] {
		t.Errorf("dependencies %+v", res.Dependencies)
	}
}

// TestRejected: a bad task file fails before anything runs, with the file,
// line and field in the error and the log.
func TestRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	j, log := e.job("contoso", "version: v1.1.0\nsteps:\n  - id: a\n    cmd: busybox true\n    whenn: ['-']\n", "", nil)
	_, err := e.execute(j)
	if !errors.Is(err, engine.ErrInvalidTask) || !strings.Contains(err.Error(), "acr-task.yaml:5") || !strings.Contains(err.Error(), "whenn") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(log.String(), "acr-task.yaml:5") {
		t.Errorf("log:\n%s", log)
	}
	if left := e.leftovers("contoso", j.RunID); len(left) > 0 {
		t.Errorf("a rejected run created %v", left)
	}

	// Without a gantry binary the az image cannot be built: a clear step
	// error, and nothing is pulled.
	j, log = e.job("contoso", "version: v1.1.0\nsteps:\n  - id: az-login\n    cmd: az login --identity\n", "", nil)
	_, err = e.execute(j)
	if !errors.Is(err, engine.ErrStepFailed) || !strings.Contains(err.Error(), "the gantry CLI image gantry-az:latest is not on the engine") {
		t.Errorf("err = %v\n%s", err, log)
	}
}

// TestAzOutsideItsSubset: gantry's az image runs the az alias; a command
// outside its subset fails the step with a message that lists the
// supported ones.
func TestAzOutsideItsSubset(t *testing.T) {
	t.Parallel()
	dockertest.Engine(t) // skip before building the gantry binary
	e := newEnv(t, []string{"contoso"}, engine.WithGantryBinary(gantryBinary(t)), engine.WithCLIImage(testCLIImage))
	j, log := e.job("contoso", "version: v1.1.0\nsteps:\n  - id: az-group\n    cmd: az group create -n rg -l westus\n", "", nil)
	_, err := e.execute(j)
	if !errors.Is(err, engine.ErrStepFailed) || !strings.Contains(err.Error(), "failed to run step ID: az-group: exit status 2") {
		t.Errorf("err = %v\n%s", err, log)
	}
	if !regexp.MustCompile(`az-group \| ERROR: 'az group create' is not supported by gantry's az; supported: .*az login.*az container create`).MatchString(log.String()) {
		t.Errorf("log:\n%s", log)
	}
}

// TestDockerfileTask runs a task whose file is a Dockerfile (the
// base-image-update tutorial's Dockerfile-app with --arg REGISTRY_NAME):
// one build step and one push step of its tags, in the run's registry.
func TestDockerfileTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	ctx := context.Background()
	src, err := standin.NodeImage(ctx, e.d, "")
	if err != nil {
		t.Fatal(err)
	}
	host := e.hosts["contoso"]
	baseDigest, err := standin.Push(ctx, e.d, src, host+"/baseimages/node:15-alpine", e.dockerAuth("contoso"))
	if err != nil {
		t.Fatal(err)
	}
	j, log := e.job("contoso", "", workspace(t, "base-image-update-sample", nil), nil)
	j.File, j.FileName = nil, "Dockerfile-app"
	j.Docker = &taskfile.DockerBuild{Dockerfile: "Dockerfile-app", Tags: []string{"helloworld:{{.Run.ID}}"}, BuildArgs: []string{"REGISTRY_NAME=" + host}}
	res, err := e.execute(j)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	checkLines(t, log.String(), stamp+`Executing step ID: build\. Timeout\(sec\): 28800, .*`, stamp+`Successfully pushed image: `+host+`/helloworld:`+j.RunID)
	if len(res.Images) != 1 || res.Images[0].Repository != "helloworld" {
		t.Errorf("pushed %+v", res.Images)
	}
	want := engine.Image{Registry: host, Repository: "baseimages/node", Tag: "15-alpine", Digest: baseDigest}
	if len(res.Dependencies) != 1 || res.Dependencies[0].Runtime != want {
		t.Errorf("dependencies %+v, want runtime %+v", res.Dependencies, want)
	}
}

// withAPIVersion adds the API-Version header every engine sends.
func withAPIVersion(v string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", v)
		h.ServeHTTP(w, r)
	})
}

// TestEngineUnreachable: with no engine at the address, Execute fails with
// ErrEngine (the run's status becomes Error) and a message naming the
// address, before any step runs.
func TestEngineUnreachable(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "no-engine.sock")
	d, err := docker.New(docker.Endpoint{Host: "unix://" + sock}, docker.WithCheckTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantEngineFailure(t, d, "ca2", sock, "unix://"+sock+" is unreachable")
}

// wantEngineFailure runs a one-step job on d and checks that Execute fails
// with ErrEngine (not ErrStepFailed) and an error that contains errHas, the
// step is skipped, and the run log contains logHas.
func wantEngineFailure(t *testing.T, d *docker.Client, runID, errHas, logHas string) {
	t.Helper()
	var log syncBuffer
	res, err := engine.New(d).Execute(context.Background(), engine.Job{
		RunID: runID, Registry: "127.0.0.1:9", RegistryName: "contoso", File: []byte("steps:\n  - cmd: busybox true\n"), Log: &log,
	})
	if !errors.Is(err, engine.ErrEngine) || errors.Is(err, engine.ErrStepFailed) || !strings.Contains(err.Error(), errHas) {
		t.Fatalf("err = %v", err)
	}
	if len(res.Steps) != 1 || res.Steps[0].Status != engine.StepSkipped {
		t.Errorf("steps %+v", res.Steps)
	}
	if !strings.Contains(log.String(), logHas) {
		t.Errorf("log:\n%s", log.String())
	}
}

// TestEngineUnusable: an engine that answers but fails every operation
// makes Execute fail with ErrEngine before any step runs.
func TestEngineUnusable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_ping":
			io.WriteString(w, "OK")
		case "/v1.41/version":
			io.WriteString(w, `{"Version":"fake","ApiVersion":"1.41","MinAPIVersion":"1.12"}`)
		default:
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"message":"the disk is on fire"}`)
		}
	}))
	defer srv.Close()
	srv.Config.Handler = withAPIVersion("1.41", srv.Config.Handler)
	d, err := docker.New(docker.Endpoint{Host: "tcp://" + strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	wantEngineFailure(t, d, "ca1", "the disk is on fire", "the disk is on fire")
}
