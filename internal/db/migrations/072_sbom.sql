-- 072: the layer cache of package inventories (internal/sbom). A row is what
-- one layer (by the digest of its blob as stored) contributes to an image's
-- package inventory: the packages of each package database or binary it
-- holds, its whiteouts, opaque directories, symlinks, other paths and
-- os-release files. version is the extractor set's version
-- (sbom.cacheVersion): a gantry that extracts differently ignores older rows
-- and replaces them. The OS release is applied when an image is composed, so
-- a row does not depend on the layers below it.

CREATE TABLE sbom_layers (
	digest     TEXT NOT NULL,     -- sha256:... of the layer blob
	version    INTEGER NOT NULL,  -- extractor set version
	data       BLOB NOT NULL,     -- gzip of the JSON layer record
	created_at TEXT NOT NULL,
	PRIMARY KEY (digest, version)
) STRICT;
