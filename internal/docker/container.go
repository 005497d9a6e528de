package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// ContainerConfig is the portable part of a container's configuration.
// Containers never get a TTY: their output is the multiplexed stream.
type ContainerConfig struct {
	Image string
	// Cmd are the arguments (or, without an entrypoint, the command); nil
	// keeps the image's CMD.
	Cmd []string
	// Entrypoint replaces the image's ENTRYPOINT; nil keeps it and an empty,
	// non-nil slice clears it.
	Entrypoint   []string
	Env          []string // KEY=value
	WorkingDir   string
	User         string // user[:group], names or numeric IDs
	Labels       map[string]string
	ExposedPorts []string // "8080/tcp" or "8080" (tcp)
	StopSignal   string   // e.g. SIGTERM (the image's or the engine's default when empty)
}

// HostConfig is the host-dependent part of a container's configuration.
type HostConfig struct {
	// NetworkMode is "host", "none", a network name, or "" for the engine's
	// default (on gantry's engine, which runs with --bridge=none, the default
	// leaves the container with loopback only).
	NetworkMode string
	Binds       []string // "volume-or-/host/path:/container/path[:ro]"
	Mounts      []Mount
	Privileged  bool
	// CapDrop and CapAdd change the engine's default capabilities ("ALL"
	// drops every one); SecurityOpt are e.g. "no-new-privileges".
	CapDrop     []string
	CapAdd      []string
	SecurityOpt []string
	// ReadonlyRootfs mounts the container's root file system read-only.
	ReadonlyRootfs bool
	// AutoRemove makes the engine remove the container once it has exited.
	AutoRemove    bool
	RestartPolicy RestartPolicy
	CPUs          float64 // CPU quota in cores (0: unlimited)
	Memory        int64   // bytes (0: unlimited)
	// PortBindings publish container ports ("8080/tcp") on the host; they
	// are ignored with NetworkMode "host".
	PortBindings map[string][]PortBinding
	// Init runs the engine's init (docker-init) as PID 1, which forwards
	// signals and reaps zombies: an app that installs no SIGTERM handler
	// then stops on `docker stop` instead of waiting for the kill timeout.
	Init bool
}

// Mount is a volume, bind or tmpfs mount.
type Mount struct {
	Type     string // "volume", "bind" or "tmpfs"
	Source   string // volume name or host path (empty for tmpfs)
	Target   string // path in the container
	ReadOnly bool
}

// RestartPolicy tells the engine whether to restart a container that exits.
type RestartPolicy struct {
	Name              string // "", "no", "always", "unless-stopped", "on-failure"
	MaximumRetryCount int    // for on-failure
}

// PortBinding is one host address a container port is published on.
type PortBinding struct {
	HostIP   string
	HostPort string
}

// CreateContainer creates a container named name (empty: the engine picks a
// name) and returns its ID. The image must be present; CreateContainer does
// not pull. A taken name fails with ErrConflict, a missing image with
// ErrNotFound.
func (c *Client) CreateContainer(ctx context.Context, name string, cfg ContainerConfig, host HostConfig) (string, error) {
	if err := c.ready(ctx); err != nil {
		return "", err
	}
	entrypoint := cfg.Entrypoint
	if entrypoint != nil && len(entrypoint) == 0 {
		// [""] clears the image's entrypoint on dockerd and on Podman (which
		// ignores an empty list), as the docker CLI's --entrypoint "" does.
		entrypoint = []string{""}
	}
	config := &container.Config{
		Image:        cfg.Image,
		Cmd:          cfg.Cmd,
		Entrypoint:   entrypoint,
		Env:          cfg.Env,
		WorkingDir:   cfg.WorkingDir,
		User:         cfg.User,
		Labels:       cfg.Labels,
		StopSignal:   cfg.StopSignal,
		AttachStdout: true,
		AttachStderr: true,
	}
	ports, err := portSet(cfg.ExposedPorts)
	if err != nil {
		return "", fmt.Errorf("creating container %q from %q: %w", name, cfg.Image, err)
	}
	config.ExposedPorts = ports
	hc := &container.HostConfig{
		NetworkMode:    container.NetworkMode(host.NetworkMode),
		Binds:          host.Binds,
		Privileged:     host.Privileged,
		CapDrop:        host.CapDrop,
		CapAdd:         host.CapAdd,
		SecurityOpt:    host.SecurityOpt,
		ReadonlyRootfs: host.ReadonlyRootfs,
		AutoRemove:     host.AutoRemove,
		RestartPolicy: container.RestartPolicy{
			Name:              container.RestartPolicyMode(host.RestartPolicy.Name),
			MaximumRetryCount: host.RestartPolicy.MaximumRetryCount,
		},
		Resources: container.Resources{NanoCPUs: int64(host.CPUs * 1e9), Memory: host.Memory},
	}
	if host.Init {
		hc.Init = &host.Init
	}
	for _, m := range host.Mounts {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.Type(m.Type), Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	if len(host.PortBindings) > 0 {
		hc.PortBindings = network.PortMap{}
		for p, bs := range host.PortBindings {
			port, err := parsePort(p)
			if err != nil {
				return "", fmt.Errorf("creating container %q from %q: %w", name, cfg.Image, err)
			}
			for _, b := range bs {
				pb := network.PortBinding{HostPort: b.HostPort}
				if b.HostIP != "" {
					if pb.HostIP, err = netip.ParseAddr(b.HostIP); err != nil {
						return "", fmt.Errorf("creating container %q: host address %q: %w", name, b.HostIP, ErrInvalid)
					}
				}
				hc.PortBindings[port] = append(hc.PortBindings[port], pb)
			}
		}
	}
	resp, err := c.api.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: config, HostConfig: hc})
	if err != nil {
		return "", fmt.Errorf("creating container %q from %q: %w", name, cfg.Image, wrap(err))
	}
	for _, w := range resp.Warnings {
		c.log.WarnContext(ctx, "engine warning", logKeyObject, name, logKeyWarning, w)
	}
	return resp.ID, nil
}

// parsePort normalises "8080" to 8080/tcp.
func parsePort(p string) (network.Port, error) {
	if !strings.Contains(p, "/") {
		p += "/tcp"
	}
	port, err := network.ParsePort(p)
	if err != nil {
		return port, fmt.Errorf("port %q: %w", p, ErrInvalid)
	}
	return port, nil
}

func portSet(ports []string) (network.PortSet, error) {
	if len(ports) == 0 {
		return nil, nil
	}
	m := make(network.PortSet, len(ports))
	for _, p := range ports {
		port, err := parsePort(p)
		if err != nil {
			return nil, err
		}
		m[port] = struct{}{}
	}
	return m, nil
}

func portList(m network.PortSet) []string {
	if len(m) == 0 {
		return nil
	}
	l := make([]string, 0, len(m))
	for p := range m {
		l = append(l, p.String())
	}
	sort.Strings(l)
	return l
}

// StartContainer starts a created or stopped container. Starting a running
// container is not an error. An executable missing from the image fails
// here (ErrInvalid on dockerd 20.10).
func (c *Client) StartContainer(ctx context.Context, id string) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	if _, err := c.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("starting container %q: %w", id, wrap(err))
	}
	return nil
}

// StopContainer sends the container its stop signal, waits up to timeout
// and then kills it. Stopping a stopped container is not an error. ctx must
// allow for the timeout.
func (c *Client) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	secs := int(timeout.Round(time.Second) / time.Second)
	if _, err := c.api.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("stopping container %q: %w", id, wrap(err))
	}
	return nil
}

// KillContainer sends a signal (default SIGKILL) to the container. A
// container that is not running fails with ErrNotRunning.
func (c *Client) KillContainer(ctx context.Context, id, signal string) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	if _, err := c.api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: signal}); err != nil {
		return fmt.Errorf("killing container %q: %w", id, wrap(err))
	}
	return nil
}

// RemoveContainerOptions configures RemoveContainer.
type RemoveContainerOptions struct {
	Force         bool // kill a running container first
	RemoveVolumes bool // also remove its anonymous volumes
}

// RemoveContainer removes a container. A running container without Force
// fails with ErrConflict; a missing one with ErrNotFound.
func (c *Client) RemoveContainer(ctx context.Context, id string, opts RemoveContainerOptions) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	if _, err := c.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: opts.Force, RemoveVolumes: opts.RemoveVolumes}); err != nil {
		return fmt.Errorf("removing container %q: %w", id, wrap(err))
	}
	return nil
}

// WaitCondition says which state change WaitContainer waits for.
type WaitCondition string

// Wait conditions.
const (
	// WaitNotRunning returns as soon as the container is not running; for a
	// container that was created but not yet started, that is immediately.
	WaitNotRunning WaitCondition = "not-running"
	// WaitNextExit returns at the next exit. Registered before
	// StartContainer, it cannot miss a container that exits at once.
	WaitNextExit WaitCondition = "next-exit"
	// WaitRemoved returns once the container has been removed (use it with
	// AutoRemove; the exit code is still reported).
	WaitRemoved WaitCondition = "removed"
)

// WaitResult is the outcome of a WaitContainer.
type WaitResult struct {
	ExitCode int
	Err      error // the wait itself failed (cancelled ctx, lost connection, engine error)
}

// WaitContainer asks the engine to wait for cond and returns once the engine
// has registered the wait, so that a WaitNextExit issued before
// StartContainer sees the exit however soon it comes. The result arrives on
// the channel (buffered; it is sent exactly once). Cancelling ctx ends the
// wait with ctx's error.
func (c *Client) WaitContainer(ctx context.Context, id string, cond WaitCondition) (<-chan WaitResult, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	// The library returns once the engine has answered with its headers,
	// which dockerd writes as soon as the wait is registered.
	w := c.api.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitCondition(cond)})
	select {
	case err := <-w.Error:
		return nil, fmt.Errorf("waiting for container %q: %w", id, wrap(err))
	default:
	}
	ch := make(chan WaitResult, 1)
	go func() {
		select {
		case r := <-w.Result:
			res := WaitResult{ExitCode: int(r.StatusCode)}
			if r.Error != nil && r.Error.Message != "" {
				res.Err = fmt.Errorf("waiting for container %q: %w", id, &engineError{err: errors.New(r.Error.Message), kinds: classify(r.Error.Message)})
			}
			ch <- res
		case err := <-w.Error:
			ch <- WaitResult{ExitCode: -1, Err: fmt.Errorf("waiting for container %q: %w", id, ctxErr(ctx, wrap(err)))}
		}
	}()
	return ch, nil
}

// LogsOptions configures ContainerLogs.
type LogsOptions struct {
	Follow     bool      // keep streaming until the container stops (or ctx ends)
	Since      time.Time // only output after this time
	Tail       int       // only the last Tail lines (0: all)
	Timestamps bool      // prefix every line with an RFC 3339 timestamp
}

// ContainerLogs copies the container's output to stdout and stderr, split by
// stream (a nil writer leaves that stream out). With Follow it returns when
// the container stops or ctx ends (then with ctx's error).
func (c *Client) ContainerLogs(ctx context.Context, id string, opts LogsOptions, stdout, stderr io.Writer) error {
	if stdout == nil && stderr == nil {
		return nil
	}
	if err := c.ready(ctx); err != nil {
		return err
	}
	o := client.ContainerLogsOptions{
		ShowStdout: stdout != nil,
		ShowStderr: stderr != nil,
		Follow:     opts.Follow,
		Timestamps: opts.Timestamps,
	}
	if !opts.Since.IsZero() {
		o.Since = strconv.FormatFloat(float64(opts.Since.UnixNano())/1e9, 'f', 9, 64)
	}
	if opts.Tail > 0 {
		o.Tail = strconv.Itoa(opts.Tail)
	}
	rc, err := c.api.ContainerLogs(ctx, id, o)
	if err != nil {
		return fmt.Errorf("reading logs of container %q: %w", id, wrap(err))
	}
	defer rc.Close()
	if err := demux(stdout, stderr, rc); err != nil {
		return fmt.Errorf("reading logs of container %q: %w", id, ctxErr(ctx, err))
	}
	return nil
}

// demux splits the engine's multiplexed stdout/stderr stream; a nil writer
// discards its stream.
func demux(stdout, stderr io.Writer, r io.Reader) error {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	_, err := stdcopy.StdCopy(stdout, stderr, r)
	return err
}

// AttachContainer attaches to the container's stdout and stderr and returns
// once attached: output produced after that, in particular all output of a
// container started afterwards, is copied to stdout and stderr (nil
// discards) as it arrives. The channel receives the outcome (nil when the
// stream ended because the container exited) and is then closed. Cancelling
// ctx detaches.
func (c *Client) AttachContainer(ctx context.Context, id string, stdout, stderr io.Writer) (<-chan error, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	hj, err := c.api.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return nil, fmt.Errorf("attaching to container %q: %w", id, wrap(err))
	}
	ch := make(chan error, 1)
	go func() {
		defer close(ch)
		// Closing the connection when ctx ends is what unblocks the read.
		stop := context.AfterFunc(ctx, hj.Close)
		defer stop()
		defer hj.Close()
		if err := demux(stdout, stderr, hj.Reader); err != nil {
			ch <- fmt.Errorf("attached to container %q: %w", id, ctxErr(ctx, err))
			return
		}
		ch <- ctx.Err()
	}()
	return ch, nil
}

// ContainerState is the run state of a container.
type ContainerState struct {
	Status     string // created, running, paused, restarting, removing, exited, dead
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string // why the engine could not start it, if so
	StartedAt  time.Time
	FinishedAt time.Time
}

// Container is the engine's view of one container.
type Container struct {
	ID           string
	Name         string // without the leading "/"
	Image        string // image ID
	Created      time.Time
	State        ContainerState
	Config       ContainerConfig
	RestartCount int
	Mounts       []Mount
}

// Labels returns the container's labels.
func (ct Container) Labels() map[string]string { return ct.Config.Labels }

// parseTime reads the engine's RFC 3339 times; "" and the zero time
// ("0001-01-01T00:00:00Z") are the zero Time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// InspectContainer returns the container with the given name or ID.
func (c *Client) InspectContainer(ctx context.Context, id string) (Container, error) {
	if err := c.ready(ctx); err != nil {
		return Container{}, err
	}
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return Container{}, fmt.Errorf("inspecting container %q: %w", id, wrap(err))
	}
	j := res.Container
	ct := Container{
		ID:           j.ID,
		Name:         strings.TrimPrefix(j.Name, "/"),
		Image:        j.Image,
		Created:      parseTime(j.Created),
		RestartCount: j.RestartCount,
	}
	if s := j.State; s != nil {
		ct.State = ContainerState{
			Status: string(s.Status), Running: s.Running, Paused: s.Paused, Restarting: s.Restarting,
			OOMKilled: s.OOMKilled, Dead: s.Dead, Pid: s.Pid, ExitCode: s.ExitCode, Error: s.Error,
			StartedAt: parseTime(s.StartedAt), FinishedAt: parseTime(s.FinishedAt),
		}
	}
	if cfg := j.Config; cfg != nil {
		ct.Config = ContainerConfig{
			Image:        cfg.Image,
			Cmd:          cfg.Cmd,
			Entrypoint:   cfg.Entrypoint,
			Env:          cfg.Env,
			WorkingDir:   cfg.WorkingDir,
			User:         cfg.User,
			Labels:       cfg.Labels,
			ExposedPorts: portList(cfg.ExposedPorts),
			StopSignal:   cfg.StopSignal,
		}
	}
	for _, m := range j.Mounts {
		src := m.Source
		if m.Type == mount.TypeVolume {
			src = m.Name
		}
		ct.Mounts = append(ct.Mounts, Mount{Type: string(m.Type), Source: src, Target: m.Destination, ReadOnly: !m.RW})
	}
	return ct, nil
}

// ContainerSummary is one entry of ListContainers.
type ContainerSummary struct {
	ID      string
	Names   []string
	Image   string
	ImageID string
	Command string
	Created int64  // Unix seconds
	State   string // created, running, exited, ...
	Status  string // human-readable, e.g. "Exited (0) 2 seconds ago"
	Labels  map[string]string
}

// ListContainersOptions filters ListContainers.
type ListContainersOptions struct {
	All    bool     // include containers that are not running
	Labels []string // carry all of these labels ("key" or "key=value")
	Name   string   // name contains (the engine's filter is a regular expression)
}

// ListContainers lists containers (only running ones unless All).
func (c *Client) ListContainers(ctx context.Context, opts ListContainersOptions) ([]ContainerSummary, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	f := labelFilters(opts.Labels, "name", opts.Name)
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: opts.All, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", wrap(err))
	}
	list := make([]ContainerSummary, 0, len(res.Items))
	for _, s := range res.Items {
		cs := ContainerSummary{
			ID: s.ID, Image: s.Image, ImageID: s.ImageID, Command: s.Command, Created: s.Created,
			State: string(s.State), Status: s.Status, Labels: s.Labels,
		}
		for _, n := range s.Names {
			cs.Names = append(cs.Names, strings.TrimPrefix(n, "/"))
		}
		list = append(list, cs)
	}
	return list, nil
}

// killTimeout bounds the clean-up calls RunContainer makes, which run even
// after its context has ended.
const killTimeout = 15 * time.Second

// RunContainer runs a container to completion, like docker run without -d:
// it creates the container, attaches to its output, registers a wait,
// starts it and copies its stdout and stderr to the writers (nil discards)
// while it runs. It returns the container's ID and exit code; a non-zero
// exit code is not an error.
//
// When ctx ends first, RunContainer kills the container and returns ctx's
// error. With AutoRemove the engine removes the container after it exits
// (RunContainer waits for that, and removes the container itself when it
// fails to start); otherwise the caller removes it, whatever the outcome.
func (c *Client) RunContainer(ctx context.Context, name string, cfg ContainerConfig, host HostConfig, stdout, stderr io.Writer) (id string, exitCode int, err error) {
	id, err = c.CreateContainer(ctx, name, cfg, host)
	if err != nil {
		return "", -1, err
	}
	// The attach and the wait live as long as the run; they end with
	// actx when RunContainer returns early.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	attached, err := c.AttachContainer(actx, id, stdout, stderr)
	if err != nil {
		c.abandon(ctx, id, host.AutoRemove)
		return id, -1, err
	}
	// The exit code comes from a next-exit wait: Podman 4.3 reports 0 for
	// a "removed" wait. With AutoRemove, a second wait makes sure the
	// engine has removed the container before RunContainer returns.
	waited, err := c.WaitContainer(actx, id, WaitNextExit)
	if err != nil {
		c.abandon(ctx, id, host.AutoRemove)
		return id, -1, err
	}
	var removed <-chan WaitResult
	if host.AutoRemove {
		if removed, err = c.WaitContainer(actx, id, WaitRemoved); err != nil {
			c.abandon(ctx, id, true)
			return id, -1, err
		}
	}
	if err := c.StartContainer(ctx, id); err != nil {
		// It may have started all the same when ctx ended mid-request.
		c.abandon(ctx, id, host.AutoRemove)
		return id, -1, err
	}

	var r WaitResult
	select {
	case r = <-waited:
	case <-ctx.Done():
	}
	// The wait also ends when ctx does; cancellation takes precedence.
	if ctx.Err() != nil {
		c.abandon(ctx, id, false) // AutoRemove follows the kill
		return id, -1, ctx.Err()
	}
	if r.Err != nil {
		return id, -1, r.Err
	}
	if removed != nil {
		select {
		case <-removed:
		case <-ctx.Done():
			return id, r.ExitCode, ctx.Err()
		}
	}
	// The output stream ends when the container's stdio closes, which
	// precedes the exit event; this returns at once in practice.
	select {
	case aerr := <-attached:
		if aerr != nil {
			return id, r.ExitCode, aerr
		}
	case <-ctx.Done():
		return id, r.ExitCode, ctx.Err()
	}
	return id, r.ExitCode, nil
}

// abandon cleans up after a run that did not complete, on a context of its
// own: it kills the container if it runs and, with remove, removes it.
func (c *Client) abandon(ctx context.Context, id string, remove bool) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	if err := c.KillContainer(cctx, id, ""); err != nil && !errors.Is(err, ErrNotRunning) && !errors.Is(err, ErrNotFound) {
		c.log.WarnContext(ctx, "killing abandoned container", logKeyObject, id, logKeyErr, err)
	}
	if !remove {
		return
	}
	// ErrConflict: the engine is already removing it.
	if err := c.RemoveContainer(cctx, id, RemoveContainerOptions{Force: true}); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
		c.log.WarnContext(ctx, "removing abandoned container", logKeyObject, id, logKeyErr, err)
	}
}
