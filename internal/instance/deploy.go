package instance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/gantryhq/gantry/internal/docker"
)

// loopback is where containers listen and the front proxies connect to.
const loopback = "127.0.0.1"

// logTailLines is how many log lines of a container that failed to start
// an error carries.
const logTailLines = 20

// Apply creates the instance spec.Name, or brings it to spec by replacing
// its container without downtime (see the package documentation). It
// reports what it did. Errors wrap ErrInvalid, ErrImage, ErrNotReady,
// ErrPortInUse, ErrCredentialsRequired or the engine's errors; none
// contains a secret. A failed Apply changes nothing: the instance keeps its
// container, record and stored credentials.
func (m *Manager) Apply(ctx context.Context, spec Spec) (Instance, Outcome, error) {
	spec, err := spec.normalize()
	if err != nil {
		return Instance{}, "", err
	}
	unlock, err := m.locks.lock(ctx, spec.Name)
	if err != nil {
		return Instance{}, "", err
	}
	defer unlock()

	cur, err := m.get(ctx, spec.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		cur = nil
	case err != nil:
		return Instance{}, "", err
	}
	pp, err := m.pullPlanFor(spec, cur)
	if err != nil {
		return Instance{}, "", err
	}
	imageID, err := m.pull(ctx, spec.Image, pp.pull)
	if err != nil {
		if pp.dropped && pp.pull == nil && (errors.Is(err, docker.ErrUnauthorized) || errors.Is(err, docker.ErrNotFound)) {
			m.log.InfoContext(ctx, "container instance not replaced: the stored pull credential is not reused", logKeyInstance, spec.Name,
				logKeyImage, spec.Image, logKeyBy, spec.By, logKeyErr, err)
			return Instance{}, "", credentialsRequired(spec, err)
		}
		return Instance{}, "", fmt.Errorf("container %q: %w", spec.Name, err)
	}

	now := m.o.now().UTC()
	next := &record{
		ID:      uuid.NewString(),
		Name:    spec.Name,
		Image:   spec.Image,
		ImageID: imageID,
		Spec: recordSpec{
			Command:        nilIfEmpty(spec.Command),
			Env:            nilIfEmptyMap(spec.Env),
			SecureEnvNames: sortedKeys(spec.SecureEnv),
			CPU:            spec.CPU,
			MemoryGB:       spec.MemoryGB,
			RestartPolicy:  spec.RestartPolicy,
		},
		Ports:     bindings(spec.Ports, cur),
		UpdatedBy: spec.By,
		CreatedAt: now,
		UpdatedAt: now,
		Principal: spec.Principal,
	}
	if cur != nil {
		next.ID, next.CreatedAt = cur.ID, cur.CreatedAt
	}
	if err := m.sealSecureEnv(next, spec.SecureEnv); err != nil {
		return Instance{}, "", err
	}
	if err := m.sealCredentials(next, pp.store, pp.owner); err != nil {
		return Instance{}, "", err
	}

	if cur != nil {
		same, err := m.unchanged(ctx, cur, next, spec.SecureEnv)
		if err != nil {
			return Instance{}, "", err
		}
		if same {
			if err := m.keepCredentials(ctx, cur, next, pp.store); err != nil {
				return Instance{}, "", err
			}
			m.log.InfoContext(ctx, "container instance unchanged", logKeyInstance, spec.Name, logKeyImage, spec.Image, logKeyBy, spec.By)
			return m.view(ctx, cur), Unchanged, nil
		}
	}

	timeout := spec.StartupTimeout
	if timeout == 0 {
		timeout = m.o.startupTimeout
	}
	if err := m.deploy(ctx, cur, next, spec.SecureEnv, timeout); err != nil {
		return Instance{}, "", err
	}
	outcome := Created
	if cur != nil {
		outcome = Replaced
	}
	m.log.InfoContext(ctx, "container instance deployed", logKeyInstance, spec.Name, logKeyImage, spec.Image,
		logKeyContainer, shortID(next.ContainerID), logKeyOutcome, outcome, logKeyBy, spec.By)
	return m.view(ctx, next), outcome, nil
}

// pullPlan is how Apply pulls the image and which credentials it stores.
type pullPlan struct {
	pull  *Credentials // to pull with; nil: anonymously
	store *Credentials // to store with the instance; nil: none
	owner string       // the principal that gave store
	// dropped: the instance's stored credentials were for the image's
	// registry but may not serve this Apply; they are not stored again.
	dropped bool
}

// pullPlanFor decides how to pull spec.Image. Credentials given in the
// spec are used and stored. Otherwise the stored ones are used and kept
// only when reuseStored allows it, and the caller's own credentials, when
// the caller may pull the image itself, are used for the pull (never
// stored).
func (m *Manager) pullPlanFor(spec Spec, cur *record) (pullPlan, error) {
	server := registryHost(spec.Image)
	if spec.Registry != nil {
		if spec.Registry.Server != server {
			return pullPlan{}, invalid("container %q: the registry credentials are for %s but the image is pulled from %s", spec.Name, spec.Registry.Server, server)
		}
		return pullPlan{pull: spec.Registry, store: spec.Registry, owner: spec.Principal}, nil
	}
	var p pullPlan
	if cur != nil && len(cur.RegistryPassword) > 0 && cur.RegistryServer == server {
		if reuseStored(spec, cur) {
			stored, err := m.openCredentials(cur)
			if err != nil {
				return pullPlan{}, err
			}
			p = pullPlan{pull: stored, store: stored, owner: cur.CredentialPrincipal}
		} else {
			p.dropped = true
		}
	}
	if spec.CallerCredentials != nil {
		// Checked against the caller's grants just now; the stored ones
		// may be older.
		p.pull = spec.CallerCredentials
	}
	return p, nil
}

// credentialsRequired is the refusal of an Apply whose anonymous pull
// failed after the stored credentials were withheld; it names the flags
// that give credentials (those of `gantry container create` and az).
func credentialsRequired(spec Spec, pullErr error) error {
	return fmt.Errorf("container %q: replacing image %s needs pull credentials: give --registry-username and --registry-password, "+
		"or use an identity with pull access to it (the stored credential serves only the principal that gave it, for the same image and command; "+
		"without it the registry refused: %v): %w", spec.Name, spec.Image, pullErr, ErrCredentialsRequired)
}

// reuseStored reports whether cur's stored credentials may pull for spec:
// only for the principal that gave them, for the image and command they
// were given for. Anything else (another caller, or another image or
// command, which could read what the image holds) needs credentials of its
// own or the caller's own access.
func reuseStored(spec Spec, cur *record) bool {
	return cur.CredentialPrincipal == spec.Principal && cur.Image == spec.Image &&
		slices.Equal(cur.Spec.Command, nilIfEmpty(spec.Command))
}

// keepCredentials records the credentials and the caller of an unchanged
// deployment when they differ from the stored ones.
func (m *Manager) keepCredentials(ctx context.Context, cur, next *record, creds *Credentials) error {
	old, err := m.openCredentials(cur)
	if err != nil {
		return err
	}
	if reflect.DeepEqual(old, creds) && cur.CredentialPrincipal == next.CredentialPrincipal && cur.Principal == next.Principal {
		return nil
	}
	cur.RegistryServer, cur.RegistryUsername, cur.RegistryPassword = next.RegistryServer, next.RegistryUsername, next.RegistryPassword
	cur.CredentialPrincipal, cur.Principal = next.CredentialPrincipal, next.Principal
	cur.UpdatedAt, cur.UpdatedBy = next.UpdatedAt, next.UpdatedBy
	return m.save(ctx, cur)
}

// unchanged reports whether next describes what cur runs, and cur's
// container runs and is served.
func (m *Manager) unchanged(ctx context.Context, cur, next *record, secureEnv map[string]string) (bool, error) {
	if cur.Image != next.Image || cur.ImageID != next.ImageID || !reflect.DeepEqual(cur.Spec, next.Spec) {
		return false, nil
	}
	if len(cur.Ports) != len(next.Ports) {
		return false, nil
	}
	for i, p := range cur.Ports {
		q := next.Ports[i]
		if p.Port != q.Port || p.Protocol != q.Protocol || p.FrontPort != q.FrontPort {
			return false, nil
		}
	}
	oldSecure, err := m.openSecureEnv(cur)
	if err != nil {
		return false, err
	}
	if !maps.Equal(oldSecure, secureEnv) && (len(oldSecure) > 0 || len(secureEnv) > 0) {
		return false, nil
	}
	if cur.ContainerID == "" || !m.served(cur) {
		return false, nil
	}
	ct, err := m.engine.InspectContainer(ctx, cur.ContainerID)
	if err != nil || !ct.State.Running || ct.State.Restarting {
		return false, nil
	}
	return true, nil
}

// served reports whether every port of r has a front forwarding to r's
// container.
func (m *Manager) served(r *record) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	fs := m.fronts[r.Name]
	for _, b := range r.Ports {
		f := fs[b.Port]
		if f == nil || f.port() != b.FrontPort || f.targetAddr() != hostPort(loopback, b.ListenPort) {
			return false
		}
	}
	return true
}

// bindings returns the bindings of the declared ports, keeping the front
// ports cur has for the same declared ports unless others are asked for.
func bindings(ports []Port, cur *record) []Binding {
	out := make([]Binding, len(ports))
	for i, p := range ports {
		b := Binding{Port: p.Port, Protocol: p.Protocol, FrontPort: p.FrontPort}
		if b.FrontPort == 0 && cur != nil {
			for _, c := range cur.Ports {
				if c.Port == p.Port {
					b.FrontPort = c.FrontPort
				}
			}
		}
		out[i] = b
	}
	return out
}

// deploy starts next's container beside cur's, waits until it answers,
// saves next, switches the fronts to it and retires cur's container. On
// failure nothing changes: cur keeps serving.
func (m *Manager) deploy(ctx context.Context, cur, next *record, secureEnv map[string]string, timeout time.Duration) error {
	plan, err := m.planFronts(ctx, next)
	if err != nil {
		return err
	}
	listen, err := freePorts(ctx, len(next.Ports))
	if err != nil {
		plan.abort()
		return fmt.Errorf("container %q: allocating listen ports: %w", next.Name, err)
	}
	for i := range next.Ports {
		next.Ports[i].ListenPort = listen[i]
	}
	id, err := m.run(ctx, next, secureEnv, timeout, cur != nil)
	if err != nil {
		plan.abort()
		return err
	}
	next.ContainerID, next.State = id, StateRunning
	if err := m.save(ctx, next); err != nil {
		m.discard(ctx, id, false)
		plan.abort()
		return err
	}
	old, obsolete := m.commitFronts(next, plan)
	oldID := ""
	if cur != nil {
		oldID = cur.ContainerID
	}
	m.retire(ctx, next, oldID, old, obsolete)
	return nil
}

// run creates and starts r's container and waits until it accepts
// connections on every listen port. A container that does not is removed,
// and the error carries its last log lines.
func (m *Manager) run(ctx context.Context, r *record, secureEnv map[string]string, timeout time.Duration, replacing bool) (string, error) {
	owner, err := m.ownerID(ctx)
	if err != nil {
		return "", err
	}
	labels := maps.Clone(m.o.labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelInstance], labels[LabelID], labels[LabelOwner] = r.Name, r.ID, owner
	cfg := docker.ContainerConfig{
		Image:  m.runnableImage(ctx, r),
		Env:    containerEnv(r, secureEnv),
		Labels: labels,
	}
	if len(r.Spec.Command) > 0 {
		cfg.Entrypoint = []string{}
		cfg.Cmd = r.Spec.Command
	}
	host := docker.HostConfig{
		NetworkMode: "host",
		// Apps run as PID 1 often ignore SIGTERM; with an init a replace or
		// delete stops them at once instead of after the stop timeout.
		Init: true,
		// The instance shares the host network: no raw or packet sockets
		// (which would let it read loopback traffic), no device nodes, and
		// setuid binaries gain nothing (docs/security.md). It keeps
		// NET_BIND_SERVICE: services listen on ports such as 80.
		CapDrop:       []string{"NET_RAW", "MKNOD", "SYS_CHROOT", "AUDIT_WRITE", "SETFCAP"},
		SecurityOpt:   []string{"no-new-privileges"},
		RestartPolicy: docker.RestartPolicy{Name: dockerRestart(r.Spec.RestartPolicy)},
		CPUs:          r.Spec.CPU,
		Memory:        int64(r.Spec.MemoryGB * (1 << 30)),
	}
	id, err := m.engine.CreateContainer(ctx, containerName(r.Name), cfg, host)
	if err != nil {
		return "", fmt.Errorf("container %q: %w", r.Name, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited, err := m.engine.WaitContainer(wctx, id, docker.WaitNextExit)
	if err != nil {
		m.discard(ctx, id, false)
		return "", fmt.Errorf("container %q: %w", r.Name, err)
	}
	why := ""
	if err := m.engine.StartContainer(ctx, id); err != nil {
		why = "it could not be started: " + err.Error()
	} else if err := m.waitReady(ctx, r, exited, timeout); err != nil {
		if ctx.Err() != nil {
			m.discard(ctx, id, false)
			return "", fmt.Errorf("container %q: waiting for the new container: %w", r.Name, ctx.Err())
		}
		why = err.Error()
	}
	if why == "" {
		return id, nil
	}
	logs := m.lastLogs(ctx, id)
	m.discard(ctx, id, false)
	msg := fmt.Sprintf("container %q: image %s: %s: %s", r.Name, r.Image, ErrNotReady, why)
	if replacing {
		msg += "; the previous container keeps serving"
	}
	if logs != "" {
		msg += "\nlast log lines of the new container:\n" + logs
	} else {
		msg += "\n(the new container wrote no log lines)"
	}
	return "", &notReadyError{msg: msg}
}

// notReadyError is a container that did not become ready.
type notReadyError struct{ msg string }

func (e *notReadyError) Error() string { return e.msg }
func (e *notReadyError) Unwrap() error { return ErrNotReady }

// waitReady waits until r's container accepts TCP connections on every
// listen port, it exits, or timeout passes.
func (m *Manager) waitReady(ctx context.Context, r *record, exited <-chan docker.WaitResult, timeout time.Duration) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	pending := slices.Clone(r.Ports)
	d := net.Dialer{Timeout: time.Second}
	for {
		pending = slices.DeleteFunc(pending, func(b Binding) bool {
			c, err := d.DialContext(tctx, "tcp", hostPort(loopback, b.ListenPort))
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
		if len(pending) == 0 {
			return nil
		}
		select {
		case res := <-exited:
			if res.Err != nil {
				return fmt.Errorf("the engine stopped reporting on it: %v", res.Err)
			}
			return fmt.Errorf("it exited with code %d before accepting connections on port %d (PORT=%d)", res.ExitCode, pending[0].Port, pending[0].ListenPort)
		case <-tctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b := pending[0]
			where := fmt.Sprintf("$PORT_%d", b.Port)
			if b.Port == r.Ports[0].Port {
				where = "$PORT"
			}
			return fmt.Errorf("nothing accepted connections on port %d (the container must listen on %s, here %d) within %s", b.Port, where, b.ListenPort, timeout)
		case <-t.C:
		}
	}
}

// containerEnv is the container's environment: the plain and secure
// variables, then PORT and PORT_<declared>.
func containerEnv(r *record, secure map[string]string) []string {
	all := maps.Clone(r.Spec.Env)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, secure)
	env := make([]string, 0, len(all)+len(r.Ports)+1)
	for _, k := range sortedKeys(all) {
		env = append(env, k+"="+all[k])
	}
	if len(r.Ports) > 0 {
		env = append(env, "PORT="+strconv.Itoa(r.Ports[0].ListenPort))
	}
	for _, b := range r.Ports {
		env = append(env, "PORT_"+strconv.Itoa(b.Port)+"="+strconv.Itoa(b.ListenPort))
	}
	return env
}

// runnableImage is r's image reference when it still names the recorded
// image, else the recorded image ID (the tag has moved since).
func (m *Manager) runnableImage(ctx context.Context, r *record) string {
	if r.ImageID == "" {
		return r.Image
	}
	img, err := m.engine.InspectImage(ctx, r.Image)
	if err == nil && img.ID == r.ImageID {
		return r.Image
	}
	return r.ImageID
}

// pull pulls image and returns its ID.
func (m *Manager) pull(ctx context.Context, image string, creds *Credentials) (string, error) {
	var auth *docker.AuthConfig
	if creds != nil {
		auth = &docker.AuthConfig{Username: creds.Username, Password: creds.Password, ServerAddress: creds.Server}
		if m.o.exchange != nil {
			if tok, ok := m.o.exchange(ctx, creds.Server, creds.Username, creds.Password); ok {
				auth.Password, auth.IdentityToken = "", tok
			}
		}
	}
	if err := m.engine.PullImage(ctx, image, auth, nil); err != nil {
		return "", fmt.Errorf("%w: %w", ErrImage, scrub(err, creds))
	}
	img, err := m.engine.InspectImage(ctx, image)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrImage, err)
	}
	return img.ID, nil
}

// scrubbed hides a secret in the message of the error it wraps.
type scrubbed struct {
	err    error
	secret string
}

func (e *scrubbed) Error() string { return strings.ReplaceAll(e.err.Error(), e.secret, "***") }
func (e *scrubbed) Unwrap() error { return e.err }

func scrub(err error, c *Credentials) error {
	if err == nil || c == nil || c.Password == "" {
		return err
	}
	return &scrubbed{err: err, secret: c.Password}
}

// frontPlan is the fronts a deployment serves through: those already
// serving the instance and those bound for it.
type frontPlan struct {
	byPort map[int]*front // declared port -> front
	fresh  []*front       // bound for this deployment
}

// abort closes the fronts bound for a deployment that failed.
func (p *frontPlan) abort() {
	for _, f := range p.fresh {
		f.close()
	}
}

// planFronts finds or binds a front for each port of r and fills in the
// front ports.
func (m *Manager) planFronts(ctx context.Context, r *record) (*frontPlan, error) {
	m.mu.Lock()
	existing := maps.Clone(m.fronts[r.Name])
	m.mu.Unlock()
	p := &frontPlan{byPort: map[int]*front{}}
	used := map[*front]int{}
	for i := range r.Ports {
		b := &r.Ports[i]
		var f *front
		if e := existing[b.Port]; e != nil && (b.FrontPort == 0 || b.FrontPort == e.port()) {
			f = e
		} else if b.FrontPort != 0 {
			for _, e := range existing {
				if e.port() == b.FrontPort {
					f = e
				}
			}
		}
		if f == nil {
			nf, err := m.listen(ctx, r.Name, b.FrontPort)
			if err != nil {
				p.abort()
				return nil, err
			}
			f = nf
			p.fresh = append(p.fresh, f)
		}
		if other, ok := used[f]; ok {
			p.abort()
			return nil, invalid("container %q: front port %d would serve both port %d and port %d", r.Name, f.port(), other, b.Port)
		}
		used[f] = b.Port
		p.byPort[b.Port] = f
		b.FrontPort = f.port()
	}
	return p, nil
}

// listen binds a front for the named instance on the front host.
func (m *Manager) listen(ctx context.Context, name string, port int) (*front, error) {
	addr := hostPort(m.o.host, port)
	f, err := listenFront(ctx, m.log.With(logKeyInstance, name), addr)
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("container %q: front address %s: %w; ask for another front port", name, addr, ErrPortInUse)
	case errors.Is(err, syscall.EACCES):
		return nil, invalid("container %q: front address %s: binding it needs privileges; use a port above 1023", name, addr)
	default:
		return nil, fmt.Errorf("container %q: front address %s: %w", name, addr, err)
	}
}

// commitFronts makes r's fronts forward to r's listen ports. It returns
// the backends they forwarded to before and the fronts r no longer uses.
func (m *Manager) commitFronts(r *record, p *frontPlan) (old []*backend, obsolete []*front) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		// Stopped meanwhile: serve nothing.
		p.abort()
		return nil, nil
	}
	used := map[*front]bool{}
	for _, b := range r.Ports {
		f := p.byPort[b.Port]
		used[f] = true
		old = append(old, f.setTarget(hostPort(loopback, b.ListenPort)))
	}
	for _, f := range m.fronts[r.Name] {
		if !used[f] {
			obsolete = append(obsolete, f)
		}
	}
	m.fronts[r.Name] = p.byPort
	delete(m.frontErrs, r.Name)
	return old, obsolete
}

// retire lists the containers of r but the current one, then, in the
// background (the new container serves already), drains the old backends,
// closes the fronts no longer used, and stops and removes those containers.
// Retirements of one instance run in order; Delete waits for them, Stop
// cuts them short.
func (m *Manager) retire(ctx context.Context, r *record, oldID string, old []*backend, obsolete []*front) {
	ctx = context.WithoutCancel(ctx)
	ids := map[string]bool{}
	if oldID != "" && oldID != r.ContainerID {
		ids[oldID] = true
	}
	lctx, lcancel := context.WithTimeout(ctx, cleanupTimeout)
	list, err := m.engine.ListContainers(lctx, docker.ListContainersOptions{All: true, Labels: []string{LabelID + "=" + r.ID}})
	lcancel()
	if err != nil {
		m.log.WarnContext(ctx, "listing containers to retire", logKeyInstance, r.Name, logKeyErr, err)
	}
	for _, c := range list {
		if c.ID != r.ContainerID {
			ids[c.ID] = true
		}
	}

	done := make(chan struct{})
	m.mu.Lock()
	prev := m.retiring[r.Name]
	m.retiring[r.Name] = done
	m.mu.Unlock()
	m.retirements.Add(1)
	go func() {
		defer m.retirements.Done()
		defer close(done)
		// Stop cuts a retirement short; the next Start removes what is left.
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			select {
			case <-m.quit:
				stop()
			case <-ctx.Done():
			}
		}()
		if prev != nil {
			select {
			case <-prev:
			case <-ctx.Done():
			}
		}
		dctx, cancel := context.WithTimeout(ctx, m.o.drainTimeout)
		cut := 0
		for _, b := range old {
			cut += drain(dctx, b)
		}
		cancel()
		if cut > 0 {
			m.log.DebugContext(ctx, "closed connections still open to the old container", logKeyInstance, r.Name, "count", cut)
		}
		for _, f := range obsolete {
			f.close()
		}
		for id := range ids {
			m.removeContainer(ctx, id, true)
		}
		m.mu.Lock()
		if m.retiring[r.Name] == done {
			delete(m.retiring, r.Name)
		}
		m.mu.Unlock()
	}()
}

// waitRetired waits until the retirements of the named instance are done.
func (m *Manager) waitRetired(ctx context.Context, name string) error {
	m.mu.Lock()
	ch := m.retiring[name]
	m.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("container %q: waiting for the previous container to stop: %w", name, ctx.Err())
	}
}

// discard removes a container (gracefully: stopping it first), also when
// ctx has ended. A container already gone is fine.
func (m *Manager) discard(ctx context.Context, id string, graceful bool) {
	m.removeContainer(context.WithoutCancel(ctx), id, graceful)
}

// removeContainer removes a container (gracefully: stopping it first)
// unless ctx ends first. A container already gone is fine; failures are
// logged.
func (m *Manager) removeContainer(ctx context.Context, id string, graceful bool) {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout+m.o.stopTimeout)
	defer cancel()
	var err error
	if graceful {
		// A failed stop still ends in the forced removal below.
		err = m.engine.StopContainer(ctx, id, m.o.stopTimeout)
	}
	if ctx.Err() == nil {
		err = m.engine.RemoveContainer(ctx, id, docker.RemoveContainerOptions{Force: true, RemoveVolumes: true})
		if errors.Is(err, docker.ErrNotFound) || errors.Is(err, docker.ErrConflict) {
			err = nil // gone, or being removed already
		}
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		m.log.DebugContext(context.WithoutCancel(ctx), "container removal interrupted; the next start removes it",
			logKeyContainer, shortID(id), logKeyErr, err)
	default:
		m.log.WarnContext(ctx, "removing container", logKeyContainer, shortID(id), logKeyErr, err)
	}
}

// lastLogs returns the last log lines of a container, indented.
func (m *Manager) lastLogs(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var buf bytes.Buffer
	w := &capped{buf: &buf, max: 16 << 10}
	if err := m.engine.ContainerLogs(ctx, id, docker.LogsOptions{Tail: logTailLines}, w, w); err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return "  " + strings.Join(lines, "\n  ")
}

// capped is a writer that keeps the first max bytes.
type capped struct {
	buf *bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// freePorts returns n distinct free ports on loopback.
func freePorts(ctx context.Context, n int) ([]int, error) {
	var lc net.ListenConfig
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := lc.Listen(ctx, "tcp", hostPort(loopback, 0))
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// containerName is a unique engine name for a container of the instance.
func containerName(instance string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "gantry-" + instance + "-" + hex.EncodeToString(b)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilIfEmptyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
