-- 000: server-wide settings (key/value), e.g. the signing key id.
CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
