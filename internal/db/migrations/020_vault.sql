-- 020: key vaults (internal/vault). Secret values are stored only as
-- AES-256-GCM ciphertext under a master key kept in the keys directory; the
-- additional data binds each ciphertext to its vault, secret name and
-- version. Secret names are case-insensitive, as in Azure Key Vault.

CREATE TABLE vaults (
	name       TEXT PRIMARY KEY, -- lowercase
	created_at TEXT NOT NULL
);

CREATE TABLE vault_secrets (
	vault      TEXT NOT NULL REFERENCES vaults(name) ON DELETE CASCADE,
	name       TEXT NOT NULL COLLATE NOCASE,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (vault, name)
);

-- Every value a secret had; the highest seq is the current one.
CREATE TABLE vault_secret_versions (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	vault      TEXT NOT NULL,
	name       TEXT NOT NULL COLLATE NOCASE,
	version    TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	nonce      BLOB NOT NULL,
	ciphertext BLOB NOT NULL,
	created_at TEXT NOT NULL,
	UNIQUE (vault, name, version),
	FOREIGN KEY (vault, name) REFERENCES vault_secrets(vault, name) ON DELETE CASCADE
);

-- Access policies: which principals may read (get) or list secrets.
CREATE TABLE vault_policies (
	vault        TEXT NOT NULL REFERENCES vaults(name) ON DELETE CASCADE,
	principal_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
	permissions  TEXT NOT NULL, -- comma-separated, sorted: get, list
	updated_at   TEXT NOT NULL,
	PRIMARY KEY (vault, principal_id)
);
