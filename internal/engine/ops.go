package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/taskfile"
)

var _ operations = (*run)(nil)

// pushAttempts is how often a push step tries each image (as acb does).
const pushAttempts = 3

// tailSize is how much of an attempt's output retryOnErrors looks at.
const tailSize = 64 << 10

// stepStates are what prepare resolved for each step of a run.
type stepStates struct {
	mu sync.Mutex
	m  map[string]*stepState
}

// state returns the state of step id, created empty on first use.
func (ss *stepStates) state(id string) *stepState {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[string]*stepState{}
	}
	st, ok := ss.m[id]
	if !ok {
		st = &stepState{}
		ss.m[id] = st
	}
	return st
}

// stepState is what prepare resolved for a step's attempts.
type stepState struct {
	image string // the image to run (cmd steps): its ID once pinned
	cli   bool   // it is the gantry CLI image
	// pinned: image is the ID of what the run resolved (pin).
	pinned bool
	build  *buildInput
}

// prepare implements operations.
func (r *run) prepare(ctx context.Context, s *plan.Step) error {
	switch {
	case s.Build != nil:
		return r.prepareBuild(ctx, s, s.Build, true)
	case s.Cmd != nil && s.Cmd.Docker != nil:
		if s.Cmd.Docker.Build != nil {
			return r.prepareBuild(ctx, s, s.Cmd.Docker.Build, false)
		}
		return nil
	case s.Cmd != nil:
		return r.prepareCmd(ctx, s)
	}
	return nil
}

// attempt implements operations.
func (r *run) attempt(ctx context.Context, s *plan.Step) (attemptResult, error) {
	switch {
	case s.Build != nil:
		return r.build(ctx, s, s.Build, true)
	case s.Push != nil:
		return attemptResult{exitCode: -1}, r.push(ctx, s)
	case s.Cmd != nil && s.Cmd.Docker != nil:
		return r.dockerCommand(ctx, s)
	case s.Cmd != nil:
		return r.runCmd(ctx, s)
	}
	return attemptResult{exitCode: -1}, fmt.Errorf("step %s has nothing to run", s.ID)
}

// prepareCmd resolves the image of a cmd step (the gantry alias to the CLI
// image), performs the explicit pull of pull: true, and makes sure the
// image is present.
func (r *run) prepareCmd(ctx context.Context, s *plan.Step) error {
	st := r.steps.state(s.ID)
	if st.pinned {
		return nil
	}
	st.image = s.Cmd.Image
	// The gantry and az aliases run images gantry builds, with the run's
	// identity; their default names are built on first use.
	for _, a := range []struct {
		alias, image string
		ensure       func(context.Context) (string, error)
	}{
		{r.e.cliAlias(), taskfile.GantryImage, r.e.EnsureCLIImage},
		{r.e.azAlias(), taskfile.AzImage, r.e.EnsureAzImage},
	} {
		if s.Cmd.Image != a.alias {
			continue
		}
		st.cli = true
		if st.image == a.image {
			img, err := a.ensure(ctx)
			if err != nil {
				return err
			}
			st.image = img
			if img != a.image {
				st.pinned = true // the ID of the image the server built
				return nil
			}
		}
		break
	}
	out := r.log.output(s.ID)
	defer out.Close()
	if s.Pull {
		r.log.Printf("Step specified pull. Performing an explicit pull...")
		var err error
		for try := 0; try <= s.DownloadRetries; try++ {
			if try > 0 {
				r.log.Printf("Pull of %s failed, retrying in %d seconds: %v", st.image, int(s.DownloadRetryDelay/time.Second), err)
				if werr := r.e.wait(ctx, s.DownloadRetryDelay); werr != nil {
					return werr
				}
			}
			if err = r.pull(ctx, st.image, out); err == nil || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			return engineErr(err)
		}
		return r.pin(ctx, st)
	}
	if st.image == taskfile.GantryImage || st.image == taskfile.AzImage {
		// Local names of images gantry builds: never pulled (Docker Hub
		// has no such image, and is out of reach).
		img, err := r.d.InspectImage(ctx, st.image)
		if err != nil {
			return fmt.Errorf("the gantry CLI image %s is not on the engine, and the server has no static gantry binary to build it from: %w", st.image, engineErr(err))
		}
		st.image, st.pinned = img.ID, true
		return nil
	}
	if err := r.ensureImage(ctx, st.image, out); err != nil {
		return err
	}
	return r.pin(ctx, st)
}

// pin replaces the step's image reference with the ID it names now, so
// that the container runs what the run pulled or built even if the tag
// moves before the container is created.
func (r *run) pin(ctx context.Context, st *stepState) error {
	img, err := r.d.InspectImage(ctx, st.image)
	if err != nil {
		return engineErr(err)
	}
	st.image, st.pinned = img.ID, true
	return nil
}

// ensureImage makes sure ref is on the engine for this run, as a fresh
// machine would: an image that names a registry (other than Docker Hub) is
// pulled with the run's login, unless this run built or tagged it, so that a
// moved tag is never served from a stale local copy and a run never uses
// another run's copy of an image it may not pull itself: when that pull
// fails, so does the step. Docker Hub names (the public base images the
// engine holds) are used when present and pulled when not.
func (r *run) ensureImage(ctx context.Context, ref string, out io.Writer) error {
	if r.scope.present(ref) {
		return nil
	}
	if r.scope.reserved(ref) || isImageID(ref) {
		// Gantry's own images run through their aliases only, and an ID
		// would reach any image on the engine.
		return errNoSuchImage(ref)
	}
	// Under the tag's lease lock: a run ending now either sees this run
	// relying on the tag and hands it over, or has removed it already.
	defer r.e.leases.lock(ref)()
	_, ierr := r.d.InspectImage(ctx, ref)
	local := ierr == nil
	if ierr != nil && !errors.Is(ierr, docker.ErrNotFound) {
		return engineErr(ierr)
	}
	refresh := imageOf(ref).Registry != dockerHub
	if local && !refresh {
		if err := r.e.leases.checkAuthor(r, ref); err != nil {
			return err
		}
		r.ready(ref)
		return nil
	}
	if err := r.pullKnown(ctx, ref, local, out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if local {
			return fmt.Errorf("pulling %s with the run's login (the engine's copy is not used for a run that cannot pull it): %w", ref, engineErr(err))
		}
		return engineErr(err)
	}
	r.ready(ref)
	return nil
}

// pull pulls ref with the run's login for its registry. A tag that was
// not on the engine before is recorded as created by the run, so that the
// run removes it at its end: the engine is left as the run found it.
func (r *run) pull(ctx context.Context, ref string, out io.Writer) error {
	defer r.e.leases.lock(ref)()
	_, err := r.d.InspectImage(ctx, ref)
	if err != nil && !errors.Is(err, docker.ErrNotFound) {
		return engineErr(err)
	}
	if err := r.pullKnown(ctx, ref, err == nil, out); err != nil {
		return err
	}
	r.ready(ref)
	return nil
}

// ready records that ref is present for the run, which now relies on it
// (see leases).
func (r *run) ready(ref string) {
	r.scope.markReady(ref)
	r.e.leases.use(r, ref)
}

func (r *run) pullKnown(ctx context.Context, ref string, local bool, out io.Writer) error {
	if err := r.d.PullImage(ctx, ref, r.logins.authFor(ref), out); err != nil {
		return err
	}
	if !local {
		img, err := r.d.InspectImage(ctx, ref)
		if err != nil {
			return engineErr(err)
		}
		r.recordCreated(ctx, img.ID, ref)
	}
	return nil
}

func (r *run) markDirty() {
	r.mu.Lock()
	r.dirty = true
	r.mu.Unlock()
}

// containerConfig builds the container of a cmd step, as acb's docker run.
func (r *run) containerConfig(s *plan.Step, st *stepState) (docker.ContainerConfig, docker.HostConfig) {
	cfg := docker.ContainerConfig{
		Image:      st.image,
		Env:        r.env(s, st.cli),
		WorkingDir: s.WorkingDir,
		User:       s.User,
		Labels:     r.names.labels(roleStep, s.ID),
	}
	if len(s.Cmd.Args) > 0 {
		cfg.Cmd = s.Cmd.Args
	}
	if s.EntryPoint != "" {
		cfg.Entrypoint = []string{s.EntryPoint}
	}
	cfg.ExposedPorts = append(cfg.ExposedPorts, s.Expose...)
	for _, p := range s.Ports {
		// [ip:][hostPort:]containerPort[/proto]: the container port is last.
		cfg.ExposedPorts = append(cfg.ExposedPorts, p[strings.LastIndexByte(p, ':')+1:])
	}
	network := hostNetwork
	if s.Network == "none" {
		network = "none"
	}
	home := r.names.home
	if st.cli {
		home = r.names.cliHome
	}
	host := docker.HostConfig{
		NetworkMode: network,
		Privileged:  s.Privileged,
		AutoRemove:  !s.Keep,
		Mounts: []docker.Mount{
			{Type: "volume", Source: r.names.workspace, Target: plan.Workspace},
			{Type: "volume", Source: home, Target: HomeDir},
		},
	}
	if s.CPUs != "" {
		if c, err := strconv.ParseFloat(s.CPUs, 64); err == nil && c > 0 {
			host.CPUs = c
		}
	}
	for _, m := range s.Mounts {
		host.Mounts = append(host.Mounts, docker.Mount{Type: "volume", Source: r.names.secrets[m.Volume], Target: m.Path, ReadOnly: true})
	}
	confine(&host, st.cli)
	return cfg, host
}

// streams returns the writers of a cmd's stdout and stderr (honouring
// > /dev/null) and the tail of both.
func streams(s *plan.Step, out io.Writer) (stdout, stderr io.Writer, t *tail) {
	t = &tail{max: tailSize}
	stdout, stderr = io.MultiWriter(out, t), io.MultiWriter(out, t)
	if s.Cmd.Stdout == plan.OutputDiscard {
		stdout = t
	}
	if s.Cmd.Stderr == plan.OutputDiscard {
		stderr = t
	}
	return stdout, stderr, t
}

// runCmd runs one attempt of a cmd step's container.
func (r *run) runCmd(ctx context.Context, s *plan.Step) (attemptResult, error) {
	st := r.steps.state(s.ID)
	cfg, host := r.containerConfig(s, st)
	name := r.names.containerName(s.ID)
	if len(s.Ports) > 0 {
		r.log.once("ports/"+s.ID, "Step ID: %s: ports %s are not published: steps use the host network, where the container's ports are the host's",
			s.ID, strings.Join(s.Ports, ", "))
	}
	if s.Isolation != "" && s.Isolation != "default" && s.Isolation != "process" {
		r.log.once("isolation/"+s.ID, "Step ID: %s: isolation %s is not supported on Linux and is ignored", s.ID, s.Isolation)
	}
	r.markDirty()
	out := r.log.output(s.ID)
	stdout, stderr, t := streams(s, out)
	if s.Keep {
		// A kept container of an earlier attempt holds the name.
		_ = r.d.RemoveContainer(ctx, name, docker.RemoveContainerOptions{Force: true})
	}
	r.log.Printf("Launching container with name: %s", s.ID)
	if s.Detach {
		err := r.startDetached(ctx, name, cfg, host, stdout, stderr, out)
		if err != nil {
			out.Close()
			return attemptResult{exitCode: -1, output: t.String()}, engineErr(err)
		}
		r.log.Printf("Successfully executed container: %s", s.ID)
		return attemptResult{exitCode: 0}, nil
	}
	_, code, err := r.d.RunContainer(ctx, name, cfg, host, stdout, stderr)
	out.Close()
	if err != nil {
		if ctx.Err() != nil {
			return attemptResult{exitCode: -1, output: t.String()}, ctx.Err()
		}
		return attemptResult{exitCode: -1, output: t.String()}, engineErr(err)
	}
	if code != 0 {
		return attemptResult{exitCode: code, output: t.String()}, &exitError{code: code}
	}
	r.log.Printf("Successfully executed container: %s", s.ID)
	return attemptResult{exitCode: 0, output: t.String()}, nil
}

// startDetached starts a background container whose output goes to the
// log until it stops or the run ends.
func (r *run) startDetached(ctx context.Context, name string, cfg docker.ContainerConfig, host docker.HostConfig, stdout, stderr io.Writer, out *lineWriter) error {
	id, err := r.d.CreateContainer(ctx, name, cfg, host)
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	attached, err := r.d.AttachContainer(actx, id, stdout, stderr)
	if err != nil {
		cancel()
		return err
	}
	done := make(chan error, 1)
	go func() {
		err := <-attached
		out.Close()
		done <- err
	}()
	r.leftovers.detach(detached{id: id, cancel: cancel, done: done})
	if err := r.d.StartContainer(ctx, id); err != nil {
		return err
	}
	return nil
}

// push pushes every image of a push step, each with up to pushAttempts
// attempts and exponential backoff, recording the digests.
func (r *run) push(ctx context.Context, s *plan.Step) error {
	out := r.log.output(s.ID)
	defer out.Close()
	for _, ref := range s.Push.Images {
		for try := 1; ; try++ {
			r.log.Printf("Pushing image: %s, attempt %d", ref, try)
			digest, err := r.d.PushImage(ctx, ref, r.logins.authFor(ref), out)
			if err == nil {
				r.log.Printf("Successfully pushed image: %s", ref)
				r.outputs.pushed(ref, digest)
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Missing images and refused credentials do not get better.
			if try == pushAttempts || errors.Is(err, docker.ErrNotFound) || errors.Is(err, docker.ErrUnauthorized) {
				return engineErr(err)
			}
			delay := time.Second << (try - 1)
			r.log.Printf("Failed to push image: %s (%v), retrying in %d seconds...", ref, err, int(delay/time.Second))
			if err := r.e.wait(ctx, delay); err != nil {
				return err
			}
		}
	}
	return nil
}
