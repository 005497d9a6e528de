package store

import (
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/errdefs"
)

// Sentinel errors. Store methods wrap them with context; match them with
// errors.Is. The "unknown" errors also match db.ErrNotFound and the
// "exists" errors db.ErrConflict, so the control API can map them generically.
var (
	ErrRegistryUnknown   = errdefs.New("not found", db.ErrNotFound)
	ErrRepositoryUnknown = errdefs.New("not found", db.ErrNotFound)
	ErrManifestUnknown   = errdefs.New("not found", db.ErrNotFound)
	ErrTagUnknown        = errdefs.New("not found", db.ErrNotFound)
	ErrBlobUnknown       = errdefs.New("not found", db.ErrNotFound)
	ErrUploadUnknown     = errdefs.New("not found", db.ErrNotFound)

	ErrRegistryExists = errdefs.New("already exists", db.ErrConflict)
	ErrListenInUse    = errdefs.New("listen address already used by another registry", db.ErrConflict)

	// ErrNameInvalid: a registry, repository or tag name breaks the rules.
	ErrNameInvalid = errdefs.New("name invalid", errdefs.ErrInvalid)
	// ErrDigestInvalid: a malformed or unsupported digest, or content that
	// does not match its digest.
	ErrDigestInvalid = errdefs.New("digest invalid", errdefs.ErrInvalid)
	// ErrSizeInvalid: content whose length differs from the declared size.
	ErrSizeInvalid = errdefs.New("size invalid", errdefs.ErrInvalid)
	// ErrManifestInvalid wraps manifest.ErrInvalid and manifest.ErrUnsupported
	// causes too, so errors.Is works with either.
	ErrManifestInvalid = errdefs.New("manifest invalid", errdefs.ErrInvalid)
	// ErrManifestBlobUnknown: a manifest references a blob or child manifest
	// the repository does not hold.
	ErrManifestBlobUnknown = errdefs.New("manifest references unknown content", errdefs.ErrInvalid)
	// ErrManifestTooLarge: the manifest exceeds the store's size limit.
	ErrManifestTooLarge = errdefs.New("manifest too large", errdefs.ErrTooLarge, errdefs.ErrInvalid)
	// ErrRangeInvalid: an upload chunk does not start where the upload ends.
	ErrRangeInvalid = errdefs.New("chunk out of order", errdefs.ErrInvalid)
	// ErrQuotaInvalid: a negative quota.
	ErrQuotaInvalid = errdefs.New("quota invalid: must be 0 (none) or more bytes", errdefs.ErrInvalid)
	// ErrQuotaExceeded: a push would take a registry beyond its quota. The
	// error (a *QuotaError) gives the usage and the quota.
	ErrQuotaExceeded = errdefs.New("quota exceeded", errdefs.ErrDenied)
)

// registryNotFound is the error of a registry that does not exist:
// "registry NAME not found", matching ErrRegistryUnknown (and so
// db.ErrNotFound).
type registryNotFound string

func (e registryNotFound) Error() string { return "registry " + string(e) + " not found" }
func (e registryNotFound) Unwrap() error { return ErrRegistryUnknown }
