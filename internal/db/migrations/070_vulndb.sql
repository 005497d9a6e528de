-- 070: offline OSV vulnerability database (internal/vulndb). Advisories are
-- imported from OSV exports and merged by ID (a newer `modified` replaces the
-- stored advisory with its affected entries and aliases).

CREATE TABLE vuln_advisories (
	id              TEXT PRIMARY KEY,              -- OSV ID, e.g. GO-2023-1234, GHSA-..., ALPINE-CVE-...
	modified        TEXT NOT NULL,                 -- db.TimeLayout
	published       TEXT NOT NULL DEFAULT '',
	withdrawn       TEXT NOT NULL DEFAULT '',      -- set: never matched
	summary         TEXT NOT NULL DEFAULT '',      -- bounded (truncated)
	aliases         TEXT NOT NULL DEFAULT '[]',    -- JSON array of strings
	severity        TEXT NOT NULL DEFAULT 'unknown',
	score           REAL NOT NULL DEFAULT 0,
	severity_source TEXT NOT NULL DEFAULT 'none',  -- cvss_v4, cvss_v3, advisory, none
	vector          TEXT NOT NULL DEFAULT '',
	source          TEXT NOT NULL DEFAULT ''       -- the import it came from
) STRICT;

-- The affected entries an advisory is stored with (those of an ecosystem
-- with a known version ordering), in the advisory's order.
CREATE TABLE vuln_affected (
	advisory_id    TEXT NOT NULL REFERENCES vuln_advisories(id) ON DELETE CASCADE,
	idx            INTEGER NOT NULL,
	ecosystem      TEXT NOT NULL,                  -- full, e.g. Alpine:v3.18
	ecosystem_base TEXT NOT NULL,                  -- before the first ':', e.g. Alpine
	name           TEXT NOT NULL,
	ranges         TEXT NOT NULL DEFAULT '[]',     -- JSON: [{type, events: [{introduced|fixed|last_affected|limit}]}], GIT ranges left out
	versions       TEXT NOT NULL DEFAULT '[]',     -- JSON array of explicitly affected versions
	PRIMARY KEY (advisory_id, idx)
) STRICT;
CREATE INDEX vuln_affected_package ON vuln_affected(ecosystem_base, name);

CREATE TABLE vuln_aliases (
	alias       TEXT NOT NULL,                     -- e.g. a CVE ID
	advisory_id TEXT NOT NULL REFERENCES vuln_advisories(id) ON DELETE CASCADE,
	PRIMARY KEY (alias, advisory_id)
) STRICT;
CREATE INDEX vuln_aliases_advisory ON vuln_aliases(advisory_id);

-- One row: the generation (incremented by every import that changed
-- something), and when and from where the last import came.
CREATE TABLE vulndb_meta (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	generation  INTEGER NOT NULL,
	last_update TEXT NOT NULL,
	source      TEXT NOT NULL
) STRICT;
INSERT INTO vulndb_meta (id, generation, last_update, source) VALUES (1, 0, '', '');
