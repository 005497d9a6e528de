-- 002: per-registry storage quotas (internal/store). quota is in bytes; 0
-- means none. See store.Usage for what counts against it.
ALTER TABLE registries ADD COLUMN quota INTEGER NOT NULL DEFAULT 0;
