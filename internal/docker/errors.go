package docker

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinel errors. Errors returned by the client wrap one (or, for a
// container that is not running, two) of these together with the engine's
// message; match them with errors.Is.
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
	// ErrUnsupported: the engine does not speak the API version this client
	// pins (1.41).
	ErrUnsupported = errors.New("unsupported engine")
)

// apiError is an error response of the engine: the HTTP status and the
// engine's message.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("engine answered %d %s", e.status, http.StatusText(e.status))
	}
	return e.msg
}

// Unwrap maps the status (and, for 409, the message) to the sentinels.
func (e *apiError) Unwrap() []error {
	switch {
	case e.status == http.StatusNotFound:
		return []error{ErrNotFound}
	case e.status == http.StatusConflict && strings.Contains(e.msg, "is not running"):
		return []error{ErrNotRunning, ErrConflict}
	case e.status == http.StatusConflict, e.status == http.StatusForbidden:
		return []error{ErrConflict}
	case e.status == http.StatusBadRequest && strings.Contains(e.msg, "is too new"):
		return []error{ErrUnsupported, ErrInvalid}
	case e.status == http.StatusBadRequest:
		return []error{ErrInvalid}
	case e.status == http.StatusUnauthorized:
		return []error{ErrUnauthorized}
	case e.status >= 500:
		// The engine reports registry failures (pull/push) as 500 with the
		// registry's message; classify those like stream errors.
		return classify(e.msg)
	}
	return nil
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
// It is a heuristic on the messages of distribution registries and dockerd
// 20.10; unknown messages match no sentinel.
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
		strings.Contains(m, "does not exist"):
		return []error{ErrNotFound}
	}
	return nil
}
