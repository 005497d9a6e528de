package docker

import (
	"context"
	"errors"
	"net/http"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// Sentinel errors. Errors returned by the client wrap one (or, for a
// container that is not running, two) of these together with the engine's
// message; match them with errors.Is. This is the one place where the
// engine's error categories (github.com/containerd/errdefs, as the client
// library reports them) become gantry's.
var (
	// ErrNotFound: the image, container, volume or network does not exist
	// (HTTP 404, or a registry reporting an unknown repository or manifest).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request conflicts with the object's state (HTTP 409,
	// and 403, which dockerd uses for refusals such as removing a network
	// that still has containers or a predefined network), e.g. a name
	// already in use or removing a running container.
	ErrConflict = errors.New("conflict")
	// ErrNotRunning: the container is not running (a 409 from kill, for
	// instance). Errors wrapping it also match ErrConflict.
	ErrNotRunning = errors.New("container not running")
	// ErrInvalid: the engine rejected a parameter (HTTP 400), e.g. a malformed
	// reference or an executable that does not exist in the image.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnauthorized: the engine or a registry refused the credentials (HTTP
	// 401, or an authentication error reported by a registry).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnsupported: the engine's API versions and gantry's do not overlap.
	ErrUnsupported = errdefs.New("unsupported engine", errdefs.ErrUnavailable)
	// ErrNoBuildKit: a build needs BuildKit (build secrets, or
	// BuilderBuildKit asked for) and the engine does not offer it.
	ErrNoBuildKit = errors.New("engine offers no BuildKit")
	// ErrUnavailable: the engine cannot be reached (no socket, connection
	// refused, no answer in time). The message names the address tried.
	ErrUnavailable = errdefs.New("engine unavailable", errdefs.ErrUnavailable)
)

// engineError is an error of the engine or of talking to it: the library's
// error (its message is the engine's) and the sentinels it falls under.
type engineError struct {
	err   error
	kinds []error
}

func (e *engineError) Error() string { return e.err.Error() }

func (e *engineError) Unwrap() []error { return append([]error{e.err}, e.kinds...) }

// wrap classifies an error of the client library; nil stays nil and
// context errors are returned as they are.
func wrap(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ee *engineError
	if errors.As(err, &ee) {
		return err
	}
	return &engineError{err: err, kinds: kinds(err)}
}

// kinds maps the library's categories to the sentinels. Podman answers
// some conflicts with 500 and a message of its own ("container state
// improper", "already in use"); those are recognised by their text.
func kinds(err error) []error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "can only kill running containers"), strings.Contains(msg, "is not running"):
		return []error{ErrNotRunning, ErrConflict}
	case strings.Contains(msg, "container state improper"), strings.Contains(msg, "is already in use"),
		strings.Contains(msg, "please force removal"), strings.Contains(msg, "image is in use"):
		return []error{ErrConflict}
	case client.IsErrConnectionFailed(err):
		return []error{ErrUnavailable}
	case cerrdefs.IsNotFound(err):
		return []error{ErrNotFound}
	case cerrdefs.IsConflict(err), cerrdefs.IsPermissionDenied(err), cerrdefs.IsAlreadyExists(err):
		return []error{ErrConflict}
	case cerrdefs.IsInvalidArgument(err) && (strings.Contains(msg, "is too new") || strings.Contains(msg, "is too old")):
		return []error{ErrUnsupported, ErrInvalid}
	case cerrdefs.IsInvalidArgument(err):
		return []error{ErrInvalid}
	case cerrdefs.IsUnauthorized(err):
		return []error{ErrUnauthorized}
	}
	// The engine reports registry failures (pull/push) as 500 with the
	// registry's message; those are classified like stream errors.
	return classify(msg)
}

// storeRace recognises Podman's errors for an image or layer removed while
// it was being read.
func storeRace(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "layer not known") || strings.Contains(msg, "image not known")
}

// classified reports whether the engine answered with an error of its own
// (an HTTP status), as opposed to a transport failure.
func classified(err error) bool {
	return cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err) || cerrdefs.IsPermissionDenied(err) ||
		cerrdefs.IsInvalidArgument(err) || cerrdefs.IsUnauthorized(err) || cerrdefs.IsInternal(err) ||
		cerrdefs.IsNotImplemented(err) || cerrdefs.IsUnavailable(err)
}

// streamError is an error the engine reported inside a JSON message stream
// (errorDetail), e.g. a build step that failed or a push a registry refused.
type streamError struct {
	code int
	msg  string
}

func (e *streamError) Error() string { return e.msg }

func (e *streamError) Unwrap() []error {
	if e.code == http.StatusUnauthorized || e.code == http.StatusForbidden {
		return []error{ErrUnauthorized}
	}
	return classify(e.msg)
}

// classify recognises the registry errors the engine passes through as text.
// It is a heuristic on the messages of distribution registries, dockerd and
// podman; unknown messages match no sentinel.
func classify(msg string) []error {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "unauthorized"),
		strings.Contains(m, "authentication required"),
		strings.Contains(m, "no basic auth credentials"),
		strings.Contains(m, "denied: "):
		return []error{ErrUnauthorized}
	case strings.Contains(m, "manifest unknown"),
		strings.Contains(m, "name unknown"),
		strings.Contains(m, "not found"),
		strings.Contains(m, "no such image"),
		strings.Contains(m, "unable to find image"),
		strings.Contains(m, "does not exist"):
		return []error{ErrNotFound}
	}
	return nil
}
