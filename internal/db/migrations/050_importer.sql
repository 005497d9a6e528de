-- 050: import and pull-through cache (internal/importer).

-- A credential set holds vault URIs of the user name and password to log in
-- to one upstream login server. It has its own identity (a principal of kind
-- 'identity'): the admin grants it `get` on the vault with keyvault
-- set-policy, and the server resolves the secrets as that principal.
CREATE TABLE credential_sets (
	registry     TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	login_server TEXT NOT NULL,
	username_uri TEXT NOT NULL,
	password_uri TEXT NOT NULL,
	principal_id TEXT NOT NULL REFERENCES principals(id),
	created_at   TEXT NOT NULL,
	updated_at   TEXT NOT NULL,
	PRIMARY KEY (registry, name)
);

-- Deleting a credential set (or its registry) deletes its identity, and
-- with it the identity's vault policies and role assignments.
CREATE TRIGGER credential_sets_principal AFTER DELETE ON credential_sets
BEGIN
	DELETE FROM principals WHERE id = OLD.principal_id;
END;

-- A cache rule maps a target repository (or prefix/*, or *) of a registry to
-- an upstream source repository; pulls that miss are fetched from there.
CREATE TABLE cache_rules (
	registry       TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	name           TEXT NOT NULL,
	source_repo    TEXT NOT NULL,
	target_repo    TEXT NOT NULL,
	credential_set TEXT NOT NULL DEFAULT '',
	created_at     TEXT NOT NULL,
	updated_at     TEXT NOT NULL,
	PRIMARY KEY (registry, name)
);
CREATE UNIQUE INDEX cache_rules_target ON cache_rules(registry, target_repo);
CREATE INDEX cache_rules_credential_set ON cache_rules(registry, credential_set);
