-- 075: the security-scan gate (internal/scan). One row per scanned manifest
-- of a registry (an image, each platform image of an index, and the index
-- itself): its latest report and the packages it was matched with, which a
-- rescan after a database import matches again without pulling the image.
CREATE TABLE scan_reports (
	registry    TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	digest      TEXT NOT NULL,          -- the scanned manifest
	repository  TEXT NOT NULL,          -- where it was scanned
	status      TEXT NOT NULL,          -- scanned | unscanned
	packages    BLOB NOT NULL,          -- JSON: the packages matched (per platform for an index)
	report      BLOB NOT NULL,          -- JSON: the report as gantry scan prints it
	generation  INTEGER NOT NULL,       -- the vulnerability database it was last matched with
	worst       INTEGER NOT NULL,       -- rank of the worst finding not allowlisted (0 none/unknown .. 4 critical)
	fingerprint TEXT NOT NULL,          -- hash of the findings: a rescan rewrites only reports whose findings changed
	scanned_at  TEXT NOT NULL,
	PRIMARY KEY (registry, digest)
) STRICT;

-- Policies: scan every pushed image, quarantine images with a finding at
-- or above a severity (or not scanned yet). repository '' is the
-- registry's policy; a repository's own row replaces it there.
CREATE TABLE scan_policies (
	registry            TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	repository          TEXT NOT NULL DEFAULT '',
	scan_on_push        INTEGER NOT NULL DEFAULT 0,
	quarantine_severity TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (registry, repository)
) STRICT;

-- Advisories accepted until an expiry: findings of these IDs (or aliases)
-- neither fail a scan nor quarantine an image. registry '' covers all.
CREATE TABLE scan_allowlist (
	registry   TEXT NOT NULL DEFAULT '',
	id         TEXT NOT NULL,
	expires    TEXT NOT NULL DEFAULT '',  -- '' never
	reason     TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	PRIMARY KEY (registry, id)
) STRICT;
