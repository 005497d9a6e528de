-- 010: access control (internal/auth). Times are RFC 3339 UTC text with a
-- fixed nine-digit fraction. Secrets are stored only as hashes: the admin
-- password as argon2id, token passwords and run credentials as HMAC-SHA256
-- under a key kept in the keys directory.

-- Every principal: the admin user ('user'), each token, each task identity.
CREATE TABLE principals (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('user', 'token', 'identity')),
	name       TEXT NOT NULL,
	created_at TEXT NOT NULL
);

CREATE TABLE users (
	principal_id  TEXT PRIMARY KEY REFERENCES principals(id) ON DELETE CASCADE,
	name          TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
);

-- User-defined scope maps; the system maps (_repositories_*) live in code.
CREATE TABLE scope_maps (
	registry    TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	name        TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	created_at  TEXT NOT NULL,
	PRIMARY KEY (registry, name)
);

-- One row per (repository pattern, action) of a scope map.
CREATE TABLE scope_map_rules (
	registry   TEXT NOT NULL,
	scope_map  TEXT NOT NULL,
	repository TEXT NOT NULL,
	action     TEXT NOT NULL CHECK (action IN ('content/read', 'content/write', 'content/delete', 'metadata/read', 'metadata/write')),
	PRIMARY KEY (registry, scope_map, repository, action),
	FOREIGN KEY (registry, scope_map) REFERENCES scope_maps(registry, name) ON DELETE CASCADE
);

CREATE TABLE tokens (
	principal_id TEXT PRIMARY KEY REFERENCES principals(id) ON DELETE CASCADE,
	registry     TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	scope_map    TEXT NOT NULL, -- a user map of the registry or a system map
	status       TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
	created_at   TEXT NOT NULL,
	UNIQUE (registry, name)
);
CREATE INDEX tokens_scope_map ON tokens(registry, scope_map);

-- A token deleted with its registry takes its principal along.
CREATE TRIGGER tokens_delete_principal AFTER DELETE ON tokens BEGIN
	DELETE FROM principals WHERE id = OLD.principal_id;
END;

CREATE TABLE token_passwords (
	token_id   TEXT NOT NULL REFERENCES tokens(principal_id) ON DELETE CASCADE,
	slot       TEXT NOT NULL CHECK (slot IN ('password1', 'password2')),
	hash       BLOB NOT NULL,
	created_at TEXT NOT NULL,
	expires_at TEXT, -- NULL: never
	PRIMARY KEY (token_id, slot)
);

-- registry is set for /registries/... scopes so that assignments go away with
-- their registry.
CREATE TABLE role_assignments (
	id           TEXT PRIMARY KEY,
	principal_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
	role         TEXT NOT NULL CHECK (role IN ('acrpull', 'acrpush', 'owner')),
	scope        TEXT NOT NULL,
	registry     TEXT REFERENCES registries(name) ON DELETE CASCADE,
	created_at   TEXT NOT NULL,
	UNIQUE (principal_id, role, scope)
);
CREATE INDEX role_assignments_scope ON role_assignments(scope);

-- Short-lived credentials of task runs.
CREATE TABLE run_credentials (
	id           TEXT PRIMARY KEY,
	registry     TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	run_id       TEXT NOT NULL,
	principal_id TEXT REFERENCES principals(id) ON DELETE CASCADE, -- task identity, if any
	name         TEXT NOT NULL,
	hash         BLOB NOT NULL,
	created_at   TEXT NOT NULL,
	expires_at   TEXT NOT NULL
);
CREATE INDEX run_credentials_run ON run_credentials(registry, run_id);
CREATE INDEX run_credentials_expiry ON run_credentials(expires_at);
