package store

import (
	"errors"
	"fmt"

	"github.com/gantryhq/gantry/internal/db"
)

// Sentinel errors. Store methods wrap them with context; match them with
// errors.Is. The "unknown" errors also match db.ErrNotFound and the
// "exists" errors db.ErrConflict, so the control API can map them generically.
var (
	ErrRegistryUnknown   = fmt.Errorf("registry unknown: %w", db.ErrNotFound)
	ErrRepositoryUnknown = fmt.Errorf("repository unknown: %w", db.ErrNotFound)
	ErrManifestUnknown   = fmt.Errorf("manifest unknown: %w", db.ErrNotFound)
	ErrTagUnknown        = fmt.Errorf("tag unknown: %w", db.ErrNotFound)
	ErrBlobUnknown       = fmt.Errorf("blob unknown: %w", db.ErrNotFound)
	ErrUploadUnknown     = fmt.Errorf("upload unknown: %w", db.ErrNotFound)

	ErrRegistryExists = fmt.Errorf("registry already exists: %w", db.ErrConflict)
	ErrListenInUse    = fmt.Errorf("listen address already used by another registry: %w", db.ErrConflict)

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
