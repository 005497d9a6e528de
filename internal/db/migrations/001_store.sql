-- 001: OCI content metadata (internal/store). Blob bytes live on disk under
-- DATA/blobs; these tables say which registry and repository may read them,
-- what manifests and tags exist, and every digest a tag ever pointed to.

-- A registry is one login server with its own address and repositories.
-- Other domains reference registries(name) ON DELETE CASCADE.
CREATE TABLE registries (
	name           TEXT PRIMARY KEY,
	listen         TEXT NOT NULL DEFAULT '',
	anonymous_pull INTEGER NOT NULL DEFAULT 0,
	created_at     TEXT NOT NULL
);
CREATE UNIQUE INDEX registries_listen ON registries(listen) WHERE listen <> '';

CREATE TABLE repositories (
	id         INTEGER PRIMARY KEY,
	registry   TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	created_at TEXT NOT NULL,
	UNIQUE (registry, name)
);

-- One row per blob file on disk, shared by every registry of the server.
-- touched_at is the last upload or link; GC spares blobs touched within its
-- grace window.
CREATE TABLE blobs (
	digest     TEXT PRIMARY KEY,
	size       INTEGER NOT NULL,
	touched_at TEXT NOT NULL
) WITHOUT ROWID;

-- Which repositories may read which blobs (uploaded there or mounted).
CREATE TABLE repository_blobs (
	repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
	digest        TEXT NOT NULL REFERENCES blobs(digest),
	created_at    TEXT NOT NULL,
	PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

CREATE TABLE manifests (
	id            INTEGER PRIMARY KEY,
	repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
	digest        TEXT NOT NULL,
	media_type    TEXT NOT NULL,
	artifact_type TEXT NOT NULL DEFAULT '',
	subject       TEXT NOT NULL DEFAULT '',
	size          INTEGER NOT NULL,
	annotations   TEXT NOT NULL DEFAULT '',
	body          BLOB NOT NULL,
	created_at    TEXT NOT NULL,
	UNIQUE (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repository_id, subject) WHERE subject <> '';

-- What a manifest references: kind 0 = blob (config, layer), 1 = manifest
-- (index child). Non-distributable layers are not recorded.
CREATE TABLE manifest_refs (
	manifest_id INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
	digest      TEXT NOT NULL,
	kind        INTEGER NOT NULL,
	PRIMARY KEY (manifest_id, digest)
) WITHOUT ROWID;
CREATE INDEX manifest_refs_digest ON manifest_refs(digest, kind);

CREATE TABLE tags (
	repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
	name          TEXT NOT NULL,
	digest        TEXT NOT NULL,
	updated_at    TEXT NOT NULL,
	PRIMARY KEY (repository_id, name)
) WITHOUT ROWID;

-- Every digest a tag pointed to. new_digest '' records an untag. Rows are
-- kept when the repository is deleted (history outlives content) and go with
-- the registry.
CREATE TABLE tag_history (
	id         INTEGER PRIMARY KEY,
	registry   TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	repository TEXT NOT NULL,
	tag        TEXT NOT NULL,
	old_digest TEXT NOT NULL DEFAULT '',
	new_digest TEXT NOT NULL DEFAULT '',
	pushed_by  TEXT NOT NULL DEFAULT '',
	run_id     TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL
);
CREATE INDEX tag_history_tag ON tag_history(registry, repository, tag, id);

-- In-progress blob uploads; the bytes are in DATA/uploads/<id>. hash_state is
-- the marshalled hash after offset bytes, so a resumed upload need not re-read
-- the file.
CREATE TABLE uploads (
	id            TEXT PRIMARY KEY,
	registry      TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	repository    TEXT NOT NULL,
	offset        INTEGER NOT NULL DEFAULT 0,
	algorithm     TEXT NOT NULL,
	hash_state    BLOB,
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
);
