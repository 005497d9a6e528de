-- 051: durable pull-through cache fills (internal/importer). A pull that
-- misses serves the upstream manifest at once and stores its whole tree in
-- the background (a fill); each fill is recorded here when it starts and
-- deleted when it completes or is dropped, so that one interrupted by a
-- restart or an upstream outage is resumed and retried with backoff
-- instead of forgotten.
CREATE TABLE cache_fills (
	registry     TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	repository   TEXT NOT NULL,              -- the target repository
	digest       TEXT NOT NULL,              -- the root manifest's digest
	media_type   TEXT NOT NULL,              -- the root manifest, as fetched and verified:
	body         BLOB NOT NULL,              --   served and walked again after a restart
	tags         TEXT NOT NULL DEFAULT '[]', -- JSON array: tags to point at the root once stored
	rule         TEXT NOT NULL,              -- the cache rule that covered the repository
	attempts     INTEGER NOT NULL DEFAULT 0, -- attempts begun (an attempt cut short by a stop is not counted)
	next_attempt TEXT NOT NULL,              -- when the next attempt may start
	last_error   TEXT NOT NULL DEFAULT '',   -- why the last attempt failed
	created_at   TEXT NOT NULL,
	PRIMARY KEY (registry, repository, digest),
	-- Deleting the rule drops its fills (what they stored stays).
	FOREIGN KEY (registry, rule) REFERENCES cache_rules(registry, name) ON DELETE CASCADE
);
CREATE INDEX cache_fills_rule ON cache_fills(registry, rule);
