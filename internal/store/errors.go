package store

import (
	"errors"

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
	ErrNameInvalid = errors.New("name invalid")
	// ErrDigestInvalid: a malformed or unsupported digest, or content that
	// does not match its digest.
	ErrDigestInvalid = errors.New("digest invalid")
	// ErrSizeInvalid: content whose length differs from the declared size.
	ErrSizeInvalid = errors.New("size invalid")
	// ErrManifestInvalid wraps manifest.ErrInvalid and manifest.ErrUnsupported
	// causes too, so errors.Is works with either.
	ErrManifestInvalid = errors.New("manifest invalid")
	// ErrManifestBlobUnknown: a manifest references a blob or child manifest
	// the repository does not hold.
	ErrManifestBlobUnknown = errors.New("manifest references unknown content")
	// ErrManifestTooLarge: the manifest exceeds the store's size limit.
	ErrManifestTooLarge = errors.New("manifest too large")
	// ErrRangeInvalid: an upload chunk does not start where the upload ends.
	ErrRangeInvalid = errors.New("chunk out of order")
)

// registryNotFound is the error of a registry that does not exist:
// "registry NAME not found", matching ErrRegistryUnknown (and so
// db.ErrNotFound).
type registryNotFound string

func (e registryNotFound) Error() string { return "registry " + string(e) + " not found" }
func (e registryNotFound) Unwrap() error { return ErrRegistryUnknown }
