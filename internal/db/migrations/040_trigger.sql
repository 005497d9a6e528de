-- 040: trigger state (internal/trigger). Timers keep their last fired
-- occurrence in task_timers.last_fire (030); the rest lives here.

-- The branch head a task's commit trigger last saw (by polling or a
-- webhook): a different head is a new commit. repository and branch are
-- those of the context when the head was seen; a changed context starts
-- over.
CREATE TABLE trigger_commits (
	task_id    TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
	repository TEXT NOT NULL,
	branch     TEXT NOT NULL,
	head       TEXT NOT NULL,
	source     TEXT NOT NULL,  -- poll or webhook
	updated_at TEXT NOT NULL
);

-- The per-task webhook secret, sealed by the vault key (binding
-- "trigger/<task id>/webhook-secret").
CREATE TABLE trigger_webhooks (
	task_id       TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
	secret        BLOB NOT NULL,
	created_at    TEXT NOT NULL,
	last_delivery TEXT NOT NULL DEFAULT '',
	last_result   TEXT NOT NULL DEFAULT ''
);

-- The newest digest of a tracked base image a task was triggered for: the
-- same digest never triggers the task twice, whether the run succeeded or
-- not (the tracked digest in task_base_images only moves on success).
CREATE TABLE trigger_base_fired (
	task_id    TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
	image      TEXT NOT NULL,  -- as in task_base_images.image
	digest     TEXT NOT NULL,
	registry   TEXT NOT NULL,  -- registry of the queued run
	run_id     TEXT NOT NULL,  -- the queued run ('' when coalesced into one already queued)
	fired_at   TEXT NOT NULL,
	PRIMARY KEY (task_id, image)
);

-- The digest an external (non-gantry) base image had at its last poll.
CREATE TABLE trigger_external_images (
	image      TEXT PRIMARY KEY,  -- host[:port]/repository:tag
	digest     TEXT NOT NULL,
	checked_at TEXT NOT NULL,
	error      TEXT NOT NULL DEFAULT ''
);

-- Causality: an Image Update run names the run that pushed its base by ID
-- only; find it across registries.
CREATE INDEX runs_id ON runs(id);
