package docker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

func TestRunContainerConfig(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	tests := []struct {
		name           string
		cfg            docker.ContainerConfig
		stdout, stderr string
		code           int
	}{
		{
			name:   "stdout and stderr apart, exit code",
			cfg:    docker.ContainerConfig{Cmd: []string{"sh", "-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 7"}},
			stdout: "out1\nout2\n", stderr: "err1\nerr2\n", code: 7,
		},
		{
			name:   "env and workdir",
			cfg:    docker.ContainerConfig{Cmd: []string{"sh", "-c", `echo "$GREETING $HOME"; pwd`}, Env: []string{"GREETING=hi there", "HOME=/acb/home"}, WorkingDir: "/workspace/sub"},
			stdout: "hi there /acb/home\n/workspace/sub\n",
		},
		{
			name:   "entrypoint",
			cfg:    docker.ContainerConfig{Entrypoint: []string{"echo", "from-entrypoint"}, Cmd: []string{"arg1", "arg2"}},
			stdout: "from-entrypoint arg1 arg2\n",
		},
		{
			name:   "numeric user",
			cfg:    docker.ContainerConfig{User: "1234:5678", Cmd: []string{"id"}},
			stdout: "uid=1234 gid=5678 groups=5678\n",
		},
		{
			name:   "named user",
			cfg:    docker.ContainerConfig{User: "user", Cmd: []string{"sh", "-c", "id -un; echo $HOME"}},
			stdout: "user\n/home/user\n",
		},
		{
			name:   "image CMD when Cmd is nil",
			cfg:    docker.ContainerConfig{},
			stdout: "",
		},
		{
			name:   "large output",
			cfg:    docker.ContainerConfig{Cmd: []string{"sh", "-c", "seq 1 20000"}},
			stdout: seq(20000),
		},
	}
	for _, tt := range tests {
		if tt.name == "numeric user" && dockertest.IsPodman(c) {
			// Podman adds /etc/passwd and /etc/group entries for the IDs.
			tt.stdout = "uid=1234(1234) gid=5678(5678) groups=5678(5678)\n"
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cfg.Image = base
			stdout, stderr, code := run(t, c, tt.cfg, docker.HostConfig{})
			if stdout != tt.stdout || stderr != tt.stderr || code != tt.code {
				t.Errorf("got stdout %.200q stderr %q code %d\nwant stdout %.200q stderr %q code %d", stdout, stderr, code, tt.stdout, tt.stderr, tt.code)
			}
		})
	}
}

func seq(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(itoa(i))
		b.WriteByte('\n')
	}
	return b.String()
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var d []byte
	for ; i > 0; i /= 10 {
		d = append([]byte{byte('0' + i%10)}, d...)
	}
	return string(d)
}

// TestEntrypointOverride: an empty, non-nil Entrypoint clears the image's.
func TestEntrypointOverride(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	tag := dockertest.Name(t, "ep") + ":1"
	dockertest.BuildImage(t, c, tag, map[string]string{"Dockerfile": "FROM " + base + "\nENTRYPOINT [\"echo\", \"image-entrypoint\"]\n"})
	for _, tt := range []struct {
		name string
		ep   []string
		want string
	}{
		{"nil keeps", nil, "image-entrypoint hello\n"},
		{"empty clears", []string{}, "hello\n"},
		{"replaced", []string{"echo", "mine"}, "mine hello\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := []string{"hello"}
			if tt.ep != nil && len(tt.ep) == 0 {
				cmd = []string{"echo", "hello"}
			}
			stdout, _, code := run(t, c, docker.ContainerConfig{Image: tag, Entrypoint: tt.ep, Cmd: cmd}, docker.HostConfig{})
			if stdout != tt.want || code != 0 {
				t.Errorf("stdout %q code %d, want %q", stdout, code, tt.want)
			}
		})
	}
}

// TestContainerLifecycle goes through the low-level calls one by one.
func TestContainerLifecycle(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	name := dockertest.Name(t, "life")
	labels := mergeLabels(dockertest.Labels(t), map[string]string{"role": "lifecycle"})
	id, err := c.CreateContainer(ctx, name, docker.ContainerConfig{
		Image:        base,
		Cmd:          []string{"sh", "-c", "echo started; echo warn >&2; sleep 0.3; exit 3"},
		Labels:       labels,
		ExposedPorts: []string{"8080"},
	}, docker.HostConfig{NetworkMode: "host", Memory: 64 << 20, CPUs: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveContainerOnCleanup(t, c, id)

	if _, err := c.CreateContainer(ctx, name, docker.ContainerConfig{Image: base}, docker.HostConfig{NetworkMode: "host"}); !errors.Is(err, docker.ErrConflict) {
		t.Errorf("create with a taken name: %v, want ErrConflict", err)
	}
	ct, err := c.InspectContainer(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	wantPorts := "8080/tcp"
	if dockertest.IsPodman(c) {
		wantPorts = "" // Podman drops exposed ports on the host network
	}
	if ct.ID != id || ct.Name != name || ct.State.Status != "created" || ct.State.Running || ct.Labels()["role"] != "lifecycle" ||
		strings.Join(ct.Config.ExposedPorts, ",") != wantPorts {
		t.Errorf("created container = %+v", ct)
	}

	// A not-running wait on a created container returns at once;
	// next-exit waits for the run.
	nr, err := c.WaitContainer(ctx, id, docker.WaitNotRunning)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-nr:
		if r.Err != nil {
			t.Errorf("not-running wait: %v", r.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not-running wait on a created container did not return")
	}
	waited, err := c.WaitContainer(ctx, id, docker.WaitNextExit)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.StartContainer(ctx, id); err != nil {
		t.Errorf("starting a running container: %v", err)
	}
	running, err := c.InspectContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !running.State.Running || running.State.Pid == 0 || running.State.StartedAt.IsZero() {
		t.Errorf("running state = %+v", running.State)
	}
	list, err := c.ListContainers(ctx, docker.ListContainersOptions{Labels: []string{"role=lifecycle", dockertest.Label + "=" + dockertest.LabelValue(t)}})
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].Names[0] != name || list[0].State != "running" {
		t.Errorf("list running = %+v, %v", list, err)
	}

	r := <-waited
	if r.Err != nil || r.ExitCode != 3 {
		t.Fatalf("wait = %+v, want exit 3", r)
	}
	done, err := c.InspectContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	st := done.State
	if st.Running || st.Status != "exited" || st.ExitCode != 3 || !st.FinishedAt.After(st.StartedAt) ||
		st.FinishedAt.Sub(st.StartedAt) < 250*time.Millisecond {
		t.Errorf("exited state = %+v", st)
	}
	// Only running ones unless All.
	list, err = c.ListContainers(ctx, docker.ListContainersOptions{Labels: []string{"role=lifecycle", dockertest.Label + "=" + dockertest.LabelValue(t)}})
	if err != nil || len(list) != 0 {
		t.Errorf("list without All = %+v, %v", list, err)
	}
	list, err = c.ListContainers(ctx, docker.ListContainersOptions{All: true, Name: name})
	if err != nil || len(list) != 1 || list[0].State != "exited" {
		t.Errorf("list All by name = %+v, %v", list, err)
	}

	var stdout, stderr testenv.Buffer
	if err := c.ContainerLogs(ctx, id, docker.LogsOptions{}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "started\n" || stderr.String() != "warn\n" {
		t.Errorf("logs: stdout %q stderr %q", stdout.String(), stderr.String())
	}
	var onlyErr testenv.Buffer
	if err := c.ContainerLogs(ctx, id, docker.LogsOptions{Timestamps: true}, nil, &onlyErr); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(onlyErr.String(), " warn\n") || !strings.HasPrefix(onlyErr.String(), "20") {
		t.Errorf("stderr with timestamps = %q", onlyErr.String())
	}

	if err := c.KillContainer(ctx, id, ""); !errors.Is(err, docker.ErrNotRunning) || !errors.Is(err, docker.ErrConflict) {
		t.Errorf("kill an exited container: %v, want ErrNotRunning", err)
	}
	if err := c.StopContainer(ctx, id, time.Second); err != nil {
		t.Errorf("stop an exited container: %v", err)
	}
	if err := c.RemoveContainer(ctx, id, docker.RemoveContainerOptions{}); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"inspect": func() error { _, err := c.InspectContainer(ctx, id); return err }(),
		"remove":  c.RemoveContainer(ctx, id, docker.RemoveContainerOptions{}),
		"start":   c.StartContainer(ctx, id),
		"logs":    c.ContainerLogs(ctx, id, docker.LogsOptions{}, &stdout, nil),
		"wait":    func() error { _, err := c.WaitContainer(ctx, id, docker.WaitNotRunning); return err }(),
	} {
		if !errors.Is(err, docker.ErrNotFound) {
			t.Errorf("%s of a removed container: %v, want ErrNotFound", what, err)
		}
	}
	if _, err := c.CreateContainer(ctx, "", docker.ContainerConfig{Image: "gantry-test/nope:1"}, docker.HostConfig{}); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("create from a missing image: %v, want ErrNotFound", err)
	}
}

func TestStopAndRemoveRunning(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	id := start(ctx, t, c, "stop", docker.ContainerConfig{
		Image: base,
		// sh ignores SIGTERM as PID 1 unless trapped: the stop must kill.
		Cmd: []string{"sh", "-c", "echo up; sleep 60"},
	}, docker.HostConfig{NetworkMode: "host"})
	if err := c.RemoveContainer(ctx, id, docker.RemoveContainerOptions{}); !errors.Is(err, docker.ErrConflict) {
		t.Errorf("remove running without force: %v, want ErrConflict", err)
	}
	start := time.Now()
	if err := c.StopContainer(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stop took %v", d)
	}
	ct, err := c.InspectContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ct.State.Running || ct.State.ExitCode != 137 {
		t.Errorf("after stop: %+v", ct.State)
	}

	// Force-remove a running one.
	id2, err := c.CreateContainer(ctx, "", docker.ContainerConfig{Image: base, Cmd: []string{"sleep", "60"}, Labels: dockertest.Labels(t)}, docker.HostConfig{NetworkMode: "host"})
	if err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveContainerOnCleanup(t, c, id2)
	if err := c.StartContainer(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if err := c.KillContainer(ctx, id2, "SIGUSR1"); err != nil { // sleep dies of SIGUSR1
		t.Fatal(err)
	}
	if err := c.RemoveContainer(ctx, id2, docker.RemoveContainerOptions{Force: true, RemoveVolumes: true}); err != nil {
		t.Fatal(err)
	}
}

// TestInitForwardsStop: with Init, a PID-1 app that installs no SIGTERM
// handler stops on the signal (exit 143) instead of being killed after the
// timeout (exit 137).
func TestInitForwardsStop(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	id := start(ctx, t, c, "init", docker.ContainerConfig{Image: base, Cmd: []string{"sleep", "60"}},
		docker.HostConfig{NetworkMode: "host", Init: true})
	if err := c.StopContainer(ctx, id, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ct, err := c.InspectContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ct.State.Running || ct.State.ExitCode != 143 {
		t.Errorf("after stop with init: %+v, want exit 143 (SIGTERM)", ct.State)
	}
}

// TestRunContainerCancel: cancelling the context kills the container.
func TestRunContainerCancel(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	name := dockertest.Name(t, "cancel")
	var stdout testenv.Buffer
	type result struct {
		id   string
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		id, code, err := c.RunContainer(ctx, name, docker.ContainerConfig{
			Image: base, Cmd: []string{"sh", "-c", "echo running; sleep 60"}, Labels: dockertest.Labels(t),
		}, docker.HostConfig{NetworkMode: "host"}, &stdout, nil)
		done <- result{id, code, err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stdout.String(), "running") {
		if time.Now().After(deadline) {
			t.Fatal("no output from the container")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("RunContainer did not return after cancel")
	}
	dockertest.RemoveContainerOnCleanup(t, c, name)
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", r.err)
	}
	t.Logf("returned %v after cancel", time.Since(start))
	ct, err := c.InspectContainer(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	// The kill has been sent; the exit follows within moments.
	for i := 0; ct.State.Running && i < 100; i++ {
		time.Sleep(50 * time.Millisecond)
		ct, _ = c.InspectContainer(testCtx(t), name)
	}
	if ct.State.Running || ct.State.ExitCode != 137 {
		t.Errorf("after cancel: %+v", ct.State)
	}
}

func TestRunContainerAutoRemoveAndStartFailure(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	name := dockertest.Name(t, "auto")
	var stdout testenv.Buffer
	_, code, err := c.RunContainer(ctx, name, docker.ContainerConfig{Image: base, Cmd: []string{"sh", "-c", "echo bye; exit 4"}, Labels: dockertest.Labels(t)},
		docker.HostConfig{NetworkMode: "host", AutoRemove: true}, &stdout, nil)
	if err != nil || code != 4 || stdout.String() != "bye\n" {
		t.Fatalf("code %d err %v stdout %q", code, err, stdout.String())
	}
	if _, err := c.InspectContainer(ctx, name); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("auto-removed container still there: %v", err)
	}

	// An executable that is not in the image fails at start.
	for _, auto := range []bool{true, false} {
		name := dockertest.Name(t, "nostart")
		id, _, err := c.RunContainer(ctx, name, docker.ContainerConfig{Image: base, Cmd: []string{"/no/such/binary"}, Labels: dockertest.Labels(t)},
			docker.HostConfig{NetworkMode: "host", AutoRemove: auto}, nil, nil)
		if id != "" {
			dockertest.RemoveContainerOnCleanup(t, c, id)
		}
		switch {
		case dockertest.IsPodman(c):
			// Podman refuses the attach (409) of a container it cannot start.
			if err == nil {
				t.Errorf("AutoRemove=%v: no error", auto)
			}
		case err == nil || !strings.Contains(err.Error(), "no such file or directory"):
			t.Errorf("AutoRemove=%v: err = %v", auto, err)
		}
		t.Logf("AutoRemove=%v: %v (ErrInvalid: %v)", auto, err, errors.Is(err, docker.ErrInvalid))
		_, ierr := c.InspectContainer(ctx, name)
		if auto && !errors.Is(ierr, docker.ErrNotFound) {
			t.Errorf("AutoRemove container left after a failed start: %v", ierr)
		}
		if !auto && ierr != nil {
			t.Errorf("container without AutoRemove gone after a failed start: %v", ierr)
		}
	}
}

// TestLogsFollow: output reaches the writer while the container runs.
func TestLogsFollow(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	id := start(ctx, t, c, "follow", docker.ContainerConfig{
		Image: base,
		Cmd:   []string{"sh", "-c", "echo one; sleep 1; echo two >&2; sleep 1; echo three"},
	}, docker.HostConfig{NetworkMode: "host"})
	var stdout, stderr testenv.Buffer
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- c.ContainerLogs(ctx, id, docker.LogsOptions{Follow: true}, &stdout, &stderr) }()
	for stdout.String() != "one\n" {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("first line not seen live; stdout %q", stdout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	firstAt := time.Since(start)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	if stdout.String() != "one\nthree\n" || stderr.String() != "two\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	if total-firstAt < 1500*time.Millisecond {
		t.Errorf("first line after %v, end after %v: not streamed live", firstAt, total)
	}

	// Cancelling a follow ends it.
	id2, err := c.CreateContainer(ctx, "", docker.ContainerConfig{Image: base, Labels: dockertest.Labels(t), Cmd: []string{"sh", "-c", "echo x; sleep 60"}}, docker.HostConfig{NetworkMode: "host"})
	if err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveContainerOnCleanup(t, c, id2)
	if err := c.StartContainer(ctx, id2); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	err = c.ContainerLogs(fctx, id2, docker.LogsOptions{Follow: true}, &testenv.Buffer{}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("follow after deadline: %v", err)
	}
}

// TestAttachBeforeStart: attaching before the start sees all output, even
// of a container that exits at once.
func TestAttachBeforeStart(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	for i := 0; i < 5; i++ {
		stdout, stderr, code := run(t, c, docker.ContainerConfig{Image: base, Cmd: []string{"sh", "-c", "echo o; echo e >&2"}}, docker.HostConfig{AutoRemove: i%2 == 0})
		if stdout != "o\n" || stderr != "e\n" || code != 0 {
			t.Errorf("run %d: stdout %q stderr %q code %d", i, stdout, stderr, code)
		}
	}
}
