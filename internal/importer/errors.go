package importer

import (
	"fmt"

	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/remote"
)

// Sentinel errors. Methods wrap them with context; match them with
// errors.Is. Each matches its internal/errdefs category, so the control API
// and the registry handler map them without knowing this package; the
// source registry's errors are the registry client's (internal/remote).
var (
	// ErrInvalid means an argument is malformed: a reference, a rule or
	// credential-set name, a repository pattern (errdefs.ErrInvalid).
	ErrInvalid = remote.ErrInvalid
	// ErrNotFound means a cache rule or credential set does not exist.
	ErrNotFound = errdefs.New("not found", errdefs.ErrNotFound)
	// ErrExists means a cache rule or credential set of that name exists.
	ErrExists = errdefs.New("already exists", errdefs.ErrConflict)
	// ErrConflict means a write conflicts with the current state: rules
	// that overlap, a credential set still in use, a target repository that
	// already exists, the rule limit.
	ErrConflict = errdefs.New("conflict", errdefs.ErrConflict)
	// ErrTagExists means an import without force would move an existing
	// tag (errdefs.ErrConflict).
	ErrTagExists = errdefs.New("target tag already exists", errdefs.ErrConflict)
	// ErrCacheTarget means a push or import names a repository reserved by
	// a cache rule (errdefs.ErrDenied).
	ErrCacheTarget = errdefs.New("repository is reserved by a cache rule", errdefs.ErrDenied)
	// ErrTooLarge means an import exceeds the manifest limit (an invalid
	// request).
	ErrTooLarge = errdefs.New("too many manifests", ErrInvalid)

	// The source registry's errors (internal/remote).
	ErrSourceUnknown = remote.ErrSourceUnknown
	ErrUpstreamAuth  = remote.ErrUpstreamAuth
	ErrRateLimited   = remote.ErrRateLimited
	ErrUnavailable   = remote.ErrUnavailable
	ErrUpstream      = remote.ErrUpstream
	ErrRefused       = remote.ErrRefused
)

// UpstreamError is an unexpected HTTP answer of a source registry.
type UpstreamError = remote.UpstreamError

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalid)
}
