package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/plan"
)

// stepCapabilities are the only capabilities a step container keeps (every
// other one is dropped): what a root process needs to own, read and write
// the files of the workspace, switch users and signal its children. Gone
// are, among Docker's defaults, NET_RAW (raw and packet sockets: on the host
// network a step could otherwise sniff loopback), NET_BIND_SERVICE (ports
// below 1024 on the host), MKNOD, SETFCAP, SYS_CHROOT and AUDIT_WRITE.
var stepCapabilities = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP"}

// confine applies the step sandbox (docs/security.md) to a step
// container's host configuration: the capabilities above, no-new-privileges
// (setuid binaries gain nothing) and, for the images gantry builds (the
// gantry and az aliases), a read-only root file system with a private
// /tmp. A privileged step (allowed per registry by the server's admin)
// keeps what it asked for.
func confine(h *docker.HostConfig, readOnlyRoot bool) {
	if h.Privileged {
		return
	}
	h.CapDrop = []string{"ALL"}
	h.CapAdd = stepCapabilities
	h.SecurityOpt = []string{"no-new-privileges"}
	if readOnlyRoot {
		h.ReadonlyRootfs = true
		h.Mounts = append(h.Mounts, docker.Mount{Type: "tmpfs", Target: "/tmp"})
	}
}

// escalationHint names the setting that allows privileged steps on the
// run's registry.
func (r *run) escalationHint() string { return plan.PrivilegedHint(r.names.registry) }

// checkEscalations refuses a plan whose steps ask for more than a step gets,
// unless the job allows it.
func (r *run) checkEscalations(p *plan.Plan) error {
	if r.job.AllowPrivileged {
		return nil
	}
	if err := p.Escalations(r.escalationHint()); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTask, err)
	}
	return nil
}

// buildNetwork is the network of a build's RUN instructions: what the build
// asks for (--network host was allowed by checkEscalations), else the job's
// BuildNetwork, none by default: on the host network RUN could reach and,
// with the builder's default NET_RAW, observe the host's loopback.
func (r *run) buildNetwork(s *plan.Step, b *plan.Build) string {
	if b.Network != "" {
		return b.Network
	}
	n := r.job.BuildNetwork
	if n == "" || n == "none" {
		n = "none"
		r.log.once("build-network", "Step ID: %s: RUN instructions have no network (the server's engine.buildNetwork is none; a build may ask for --network host where gantry server --allow-privileged-steps %s allows it)", s.ID, r.names.registry)
	}
	return n
}

// reservedRepositories are the engine repositories gantry's own images
// live in; no run may create, replace or remove tags there.
func (e *Engine) reservedRepositories() []string {
	return []string{e.cliRepo, e.azRepo, strings.Split(helperImage, ":")[0]}
}

// hasImage reports whether a tag of m is k, in qualified form (tags
// spelled differently, busybox and docker.io/library/busybox:latest, are
// the same).
func hasImage[V any](m map[string]V, k string) bool {
	for t := range m {
		if qualified(t) == k {
			return true
		}
	}
	return false
}

// isImageID reports a reference that is an image ID (sha256:... or its
// short hex form), which the engine resolves to any image it holds.
func isImageID(ref string) bool { return strings.HasPrefix(ref, "sha256:") || isHexID(ref) }

// isHexID reports a (short) image ID such as 3f4e5d6c7b8a.
func isHexID(s string) bool {
	if len(s) < 12 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// errNoSuchImage is the message of a docker command on an image the run may
// not touch; it reads like the daemon's own "No such image".
func errNoSuchImage(ref string) error {
	//lint:ignore ST1005 the docker daemon's wording, which scripts match
	return fmt.Errorf("No such image: %s", ref)
}

// mayCreateTag checks a tag a build or docker tag is about to set: never in
// gantry's own repositories; in a registry only when the run holds a login
// for it (its own registry, its task's credentials); and a Docker Hub name
// only when the engine does not have it yet or the run created it (the
// operator's base images are shared by every run).
func (r *run) mayCreateTag(ctx context.Context, ref string) error {
	if r.scope.reserved(ref) {
		return fmt.Errorf("tag %s: the repository is gantry's own and cannot be written by a task", ref)
	}
	img := imageOf(ref)
	if img.Registry != dockerHub {
		if _, ok := r.logins.credFor(img.Registry); !ok {
			return fmt.Errorf("tag %s: the run has no login for %s, so it may not create images named after it (add a task credential for it)", ref, img.Registry)
		}
		return nil
	}
	if r.scope.owns(ref) {
		return nil
	}
	switch _, err := r.d.InspectImage(ctx, ref); {
	case err == nil:
		return fmt.Errorf("tag %s: the engine's image %s is shared by every run and was not created by this one; tag your image with your registry's name (e.g. {{.Run.Registry}}/%s)", ref, ref, ref)
	case errors.Is(err, docker.ErrNotFound):
		return nil
	default:
		return engineErr(err)
	}
}
