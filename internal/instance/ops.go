package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
)

// Get returns the named instance with its container's live state.
func (m *Manager) Get(ctx context.Context, name string) (Instance, error) {
	r, err := m.get(ctx, name)
	if err != nil {
		return Instance{}, err
	}
	return m.view(ctx, r), nil
}

// List returns every instance, by name, with its container's live state.
func (m *Manager) List(ctx context.Context) ([]Instance, error) {
	rs, err := m.all(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Instance, 0, len(rs))
	for _, r := range rs {
		out = append(out, m.view(ctx, r))
	}
	return out, nil
}

// LogOptions selects the log output of Logs.
type LogOptions struct {
	Tail       int       // only the last Tail lines (0: all)
	Follow     bool      // keep streaming until the container stops or ctx ends
	Since      time.Time // only output after this time
	Timestamps bool      // prefix lines with their RFC 3339 time
}

// Logs copies the output of the instance's current container to stdout and
// stderr. Errors wrap ErrNotFound for an unknown instance and
// ErrNoContainer when it has no container.
func (m *Manager) Logs(ctx context.Context, name string, opts LogOptions, stdout, stderr io.Writer) error {
	r, err := m.get(ctx, name)
	if err != nil {
		return err
	}
	if r.ContainerID == "" {
		return fmt.Errorf("container %q: %w", name, ErrNoContainer)
	}
	err = m.engine.ContainerLogs(ctx, r.ContainerID, docker.LogsOptions{
		Follow: opts.Follow, Tail: opts.Tail, Since: opts.Since, Timestamps: opts.Timestamps,
	}, stdout, stderr)
	if errors.Is(err, docker.ErrNotFound) {
		return fmt.Errorf("container %q: its container %s is gone: %w", name, shortID(r.ContainerID), ErrNoContainer)
	}
	if err != nil {
		return fmt.Errorf("container %q: %w", name, err)
	}
	return nil
}

// Delete stops and removes the instance's containers, closes its front
// addresses and deletes it. When the engine cannot remove a container, the
// instance is kept and the error returned, so that a retry finishes the job.
func (m *Manager) Delete(ctx context.Context, name string) error {
	unlock, err := m.locks.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	r, err := m.get(ctx, name)
	if err != nil {
		return err
	}
	if err := m.waitRetired(ctx, name); err != nil {
		return err
	}
	list, err := m.engine.ListContainers(ctx, docker.ListContainersOptions{All: true, Labels: []string{LabelID + "=" + r.ID}})
	if err != nil {
		return fmt.Errorf("container %q: %w", name, err)
	}
	ids := map[string]bool{}
	if r.ContainerID != "" {
		ids[r.ContainerID] = true
	}
	for _, c := range list {
		ids[c.ID] = true
	}
	for id := range ids {
		if err := m.engine.StopContainer(ctx, id, m.o.stopTimeout); err != nil && !errors.Is(err, docker.ErrNotFound) {
			return fmt.Errorf("container %q: %w", name, err)
		}
		err := m.engine.RemoveContainer(ctx, id, docker.RemoveContainerOptions{Force: true, RemoveVolumes: true})
		if err != nil && !errors.Is(err, docker.ErrNotFound) {
			return fmt.Errorf("container %q: %w", name, err)
		}
	}
	m.mu.Lock()
	fs := m.fronts[name]
	delete(m.fronts, name)
	delete(m.frontErrs, name)
	m.mu.Unlock()
	for _, f := range fs {
		f.close()
	}
	if err := m.remove(ctx, r.ID); err != nil {
		return err
	}
	m.log.InfoContext(ctx, "container instance deleted", logKeyInstance, name)
	return nil
}

// view is r with its container's live state.
func (m *Manager) view(ctx context.Context, r *record) Instance {
	in := Instance{
		ID:               r.ID,
		Name:             r.Name,
		Image:            r.Image,
		ImageID:          r.ImageID,
		Command:          slices.Clone(r.Spec.Command),
		Env:              maps.Clone(r.Spec.Env),
		SecureEnvNames:   slices.Clone(r.Spec.SecureEnvNames),
		Host:             m.o.host,
		Ports:            slices.Clone(r.Ports),
		RegistryServer:   r.RegistryServer,
		RegistryUsername: r.RegistryUsername,
		CPU:              r.Spec.CPU,
		MemoryGB:         r.Spec.MemoryGB,
		RestartPolicy:    r.Spec.RestartPolicy,
		ContainerID:      r.ContainerID,
		CreatedAt:        r.CreatedAt,
		UpdatedAt:        r.UpdatedAt,
		UpdatedBy:        r.UpdatedBy,

		UpdatedByPrincipal: r.Principal,
		RegistryPrincipal:  r.CredentialPrincipal,
	}
	switch ct, err := m.inspect(ctx, r.ContainerID); {
	case errors.Is(err, docker.ErrNotFound):
		in.State, in.Detail = StateFailed, "its container is missing"
	case err != nil:
		in.State, in.Detail = StateUnknown, "the engine did not answer: "+err.Error()
	default:
		in.State, in.Detail = stateOf(ct.State)
		in.ExitCode, in.RestartCount = ct.State.ExitCode, ct.RestartCount
		in.StartedAt, in.FinishedAt = ct.State.StartedAt, ct.State.FinishedAt
	}
	m.mu.Lock()
	if e := m.frontErrs[r.Name]; e != "" {
		in.Detail = strings.TrimPrefix(in.Detail+"; front address not served: "+e, "; ")
	}
	m.mu.Unlock()
	if in.State != r.State && in.State != StateUnknown {
		if err := m.setState(ctx, r.ID, in.State); err != nil {
			m.log.WarnContext(ctx, "recording container state", logKeyInstance, r.Name, logKeyErr, err)
		}
	}
	return in
}

func (m *Manager) inspect(ctx context.Context, id string) (docker.Container, error) {
	if id == "" {
		return docker.Container{}, fmt.Errorf("no container: %w", docker.ErrNotFound)
	}
	return m.engine.InspectContainer(ctx, id)
}

// stateOf maps the engine's state to an instance state and a detail.
func stateOf(s docker.ContainerState) (string, string) {
	switch {
	case s.Restarting:
		return StateRestarting, fmt.Sprintf("exited with code %d; the engine is restarting it", s.ExitCode)
	case s.Running:
		return StateRunning, ""
	case s.Status == "created":
		return StatePending, "created, not started"
	case s.OOMKilled:
		return StateFailed, "killed: out of memory"
	case s.Error != "":
		return StateFailed, s.Error
	case s.ExitCode == 0:
		return StateStopped, "exited with code 0"
	default:
		return StateFailed, fmt.Sprintf("exited with code %d", s.ExitCode)
	}
}

// wantsRunning reports whether the restart policy wants a container in
// state s running again.
func wantsRunning(policy string, s docker.ContainerState) bool {
	switch {
	case s.Status == "created":
		return true
	case policy == RestartNever:
		return false
	case policy == RestartOnFailure:
		return s.ExitCode != 0 || s.OOMKilled
	default:
		return true
	}
}

// resync repairs one instance: it serves its fronts and adopts its running
// container, or replaces a container that is missing or stopped against its
// restart policy.
func (m *Manager) resync(ctx context.Context, name string) error {
	unlock, err := m.locks.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	r, err := m.get(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	ct, err := m.inspect(ctx, r.ContainerID)
	switch {
	case errors.Is(err, docker.ErrNotFound):
		m.log.InfoContext(ctx, "re-creating container instance: its container is missing", logKeyInstance, name)
	case err != nil:
		m.serveFronts(ctx, r) // it may well be running
		return fmt.Errorf("container %q: %w", name, err)
	case ct.State.Running || ct.State.Restarting || !wantsRunning(r.Spec.RestartPolicy, ct.State):
		m.serveFronts(ctx, r)
		if st, _ := stateOf(ct.State); st != r.State {
			return m.setState(ctx, r.ID, st)
		}
		return nil
	default:
		m.log.InfoContext(ctx, "re-creating container instance: its container stopped", logKeyInstance, name,
			logKeyContainer, shortID(r.ContainerID), "exitCode", ct.State.ExitCode)
	}
	if err := m.redeploy(ctx, r); err != nil {
		m.serveFronts(ctx, r)
		if serr := m.setState(ctx, r.ID, StateFailed); serr != nil {
			m.log.WarnContext(ctx, "recording container state", logKeyInstance, name, logKeyErr, serr)
		}
		return err
	}
	return nil
}

// redeploy replaces r's container with a new one of the same record,
// pulling the image again if the engine no longer has it.
func (m *Manager) redeploy(ctx context.Context, r *record) error {
	secure, err := m.openSecureEnv(r)
	if err != nil {
		return err
	}
	next := *r
	next.Ports = slices.Clone(r.Ports)
	ref := r.ImageID
	if ref == "" {
		ref = r.Image
	}
	if _, err := m.engine.InspectImage(ctx, ref); errors.Is(err, docker.ErrNotFound) {
		creds, err := m.openCredentials(r)
		if err != nil {
			return err
		}
		id, err := m.pull(ctx, r.Image, creds)
		if err != nil {
			return fmt.Errorf("container %q: %w", r.Name, err)
		}
		if r.ImageID != "" && id != r.ImageID {
			m.log.WarnContext(ctx, "the image's tag has moved since the last deploy; running what it names now",
				logKeyInstance, r.Name, logKeyImage, r.Image)
		}
		next.ImageID = id
	} else if err != nil {
		return fmt.Errorf("container %q: %w", r.Name, err)
	}
	return m.deploy(ctx, r, &next, secure, m.o.startupTimeout)
}

// serveFronts binds whatever front of r is not served yet and points every
// front at r's listen ports. Ports that cannot be bound are reported in the
// instance's detail and retried by the next resync.
func (m *Manager) serveFronts(ctx context.Context, r *record) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	existing := maps.Clone(m.fronts[r.Name])
	m.mu.Unlock()
	var problems []string
	fs := map[int]*front{}
	for _, b := range r.Ports {
		f := existing[b.Port]
		if f == nil || f.port() != b.FrontPort {
			nf, err := m.listen(ctx, r.Name, b.FrontPort)
			if err != nil {
				problems = append(problems, err.Error())
				m.log.ErrorContext(ctx, "front address not served", logKeyInstance, r.Name, logKeyErr, err)
				continue
			}
			f = nf
		}
		fs[b.Port] = f
		if addr := hostPort(loopback, b.ListenPort); f.targetAddr() != addr {
			f.setTarget(addr)
		}
	}
	var obsolete []*front
	for port, f := range existing {
		if fs[port] != f {
			obsolete = append(obsolete, f)
		}
	}
	m.mu.Lock()
	m.fronts[r.Name] = fs
	if len(problems) > 0 {
		m.frontErrs[r.Name] = strings.Join(problems, "; ")
	} else {
		delete(m.frontErrs, r.Name)
	}
	m.mu.Unlock()
	for _, f := range obsolete {
		f.close()
	}
}

// removeUnclaimed removes the owner's containers that no instance claims:
// left by a crash in the middle of a replacement, or by an instance deleted
// from the database behind the manager's back.
func (m *Manager) removeUnclaimed(ctx context.Context, owner string) error {
	list, err := m.engine.ListContainers(ctx, docker.ListContainersOptions{All: true, Labels: []string{LabelOwner + "=" + owner}})
	if err != nil {
		return err
	}
	rs, err := m.all(ctx)
	if err != nil {
		return err
	}
	claimed := map[string]bool{}
	for _, r := range rs {
		claimed[r.ContainerID] = true
	}
	for _, c := range list {
		if !claimed[c.ID] {
			m.log.InfoContext(ctx, "removing unclaimed container", logKeyInstance, c.Labels[LabelInstance], logKeyContainer, shortID(c.ID))
			m.discard(ctx, c.ID, true)
		}
	}
	return nil
}
