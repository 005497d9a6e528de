package importer

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/registry"
)

// Sentinel errors. Methods wrap them with context; match them with
// errors.Is. Each also matches the cross-cutting sentinel its parent names,
// so the control API and the registry handler map them without knowing
// this package.
var (
	// ErrInvalid means an argument is malformed: a reference, a rule or
	// credential-set name, a repository pattern.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound means a cache rule or credential set does not exist
	// (db.ErrNotFound).
	ErrNotFound error = &kindError{"not found", db.ErrNotFound}
	// ErrExists means a cache rule or credential set of that name exists
	// (db.ErrConflict).
	ErrExists error = &kindError{"already exists", db.ErrConflict}
	// ErrConflict means a write conflicts with the current state: rules
	// that overlap, a credential set still in use, a target repository that
	// already exists, the rule limit (db.ErrConflict).
	ErrConflict error = &kindError{"conflict", db.ErrConflict}
	// ErrTagExists means an import without force would move an existing
	// tag (db.ErrConflict).
	ErrTagExists error = &kindError{"target tag already exists", db.ErrConflict}
	// ErrCacheTarget means a push or import names a repository reserved by
	// a cache rule (auth.ErrDenied).
	ErrCacheTarget error = &kindError{"repository is reserved by a cache rule", auth.ErrDenied}
	// ErrSourceUnknown means the source registry does not have the manifest
	// or blob asked for (db.ErrNotFound).
	ErrSourceUnknown error = &kindError{"not found in the source registry", db.ErrNotFound}
	// ErrUpstreamAuth means the source registry refused the credentials, or
	// asked for some when none were given (auth.ErrDenied: the caller may
	// not read the source).
	ErrUpstreamAuth error = &kindError{"the source registry refused access", auth.ErrDenied}
	// ErrRateLimited means the source registry throttles us and retrying
	// within the allowed time did not help (registry.ErrTooManyRequests).
	ErrRateLimited error = &kindError{"the source registry rate-limits requests", registry.ErrTooManyRequests}
	// ErrUnavailable means the source registry cannot be reached or keeps
	// failing (registry.ErrUnavailable).
	ErrUnavailable error = &kindError{"the source registry is unavailable", registry.ErrUnavailable}
	// ErrUpstream means the source registry answered something unusable: a
	// manifest that does not match its digest, an unsupported format.
	ErrUpstream = errors.New("bad answer from the source registry")
	// ErrTooLarge means an import exceeds the manifest limit.
	ErrTooLarge error = &kindError{"too many manifests", ErrInvalid}
	// ErrRefused means the egress policy refuses the source's address: the
	// control API, a link-local or metadata address, a host the admin's
	// lists exclude, or this machine for a caller that is neither the
	// admin nor a registry owner (auth.ErrDenied). The error also matches
	// egress.ErrRefused and carries the *egress.RefusedError.
	ErrRefused error = &kindError{"the source's address is refused by the server's upstream policy", auth.ErrDenied}
)

// refused marks an error carrying an *egress.RefusedError with ErrRefused,
// keeping its message; other errors are returned as they are.
func refused(err error) error {
	var re *egress.RefusedError
	if !errors.As(err, &re) {
		return err
	}
	return fmt.Errorf("%w%.0w", re, ErrRefused)
}

// kindError is a sentinel with its own message that also matches a more
// general sentinel through errors.Is.
type kindError struct {
	msg    string
	parent error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.parent }

// UpstreamError is an unexpected HTTP answer of a source registry. It
// matches ErrSourceUnknown (404), ErrUpstreamAuth (401, 403),
// ErrRateLimited (429) or ErrUnavailable (anything else).
type UpstreamError struct {
	Host   string
	Method string
	Path   string
	Status int
	// Code and Message come from the OCI error body, when there is one.
	Code    string
	Message string
	// RetryAfter is the delay the registry asked for (429, 503), if any.
	RetryAfter time.Duration
}

func (e *UpstreamError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s: %d %s", e.Method, e.Host, e.Path, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter.Round(time.Second))
	}
	return b.String()
}

// Unwrap returns the sentinel of the status.
func (e *UpstreamError) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound:
		return ErrSourceUnknown
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUpstreamAuth
	case http.StatusTooManyRequests:
		return ErrRateLimited
	default:
		return ErrUnavailable
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalid)
}
