-- 030: tasks and runs (internal/task). Secrets a task holds (a git access
-- token, plain-text registry passwords) are stored sealed by the vault key;
-- vault URIs are stored as given and resolved at run time.

CREATE TABLE tasks (
	id                  TEXT PRIMARY KEY,
	registry            TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	name                TEXT NOT NULL,
	status              TEXT NOT NULL CHECK (status IN ('Enabled', 'Disabled')),
	platform            TEXT NOT NULL,
	timeout_seconds     INTEGER NOT NULL,
	context             TEXT NOT NULL DEFAULT '',   -- git context, local folder, or '' (none)
	file                TEXT NOT NULL DEFAULT '',   -- task file or Dockerfile path in the context
	file_content        BLOB,                       -- the task file itself when there is no context
	kind                TEXT NOT NULL CHECK (kind IN ('file', 'docker')),
	spec                TEXT NOT NULL DEFAULT '{}', -- JSON: images, args, target, noPush, values
	git_token           BLOB,                       -- sealed
	identity            TEXT NOT NULL DEFAULT '',   -- principal ID of the system-assigned identity
	commit_trigger      INTEGER NOT NULL DEFAULT 1,
	base_image_trigger  INTEGER NOT NULL DEFAULT 1,
	base_image_type     TEXT NOT NULL DEFAULT 'Runtime' CHECK (base_image_type IN ('Runtime', 'All')),
	created_at          TEXT NOT NULL,
	updated_at          TEXT NOT NULL,
	UNIQUE (registry, name)
);

-- Registry logins a task's runs use, besides their own registry.
CREATE TABLE task_credentials (
	task_id        TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
	login_server   TEXT NOT NULL,
	username       TEXT NOT NULL DEFAULT '', -- plain text or a vault URI
	password       BLOB,                     -- a vault URI in clear, or a sealed plain-text password
	password_is_uri INTEGER NOT NULL DEFAULT 0,
	use_identity   TEXT NOT NULL DEFAULT '', -- '' or 'system'
	PRIMARY KEY (task_id, login_server)
);

CREATE TABLE task_timers (
	task_id   TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
	name      TEXT NOT NULL,
	schedule  TEXT NOT NULL,
	enabled   INTEGER NOT NULL DEFAULT 1,
	last_fire TEXT NOT NULL DEFAULT '',  -- the last scheduled occurrence that was queued
	PRIMARY KEY (task_id, name)
);

-- The base images a task's last successful run built from: what base-image
-- triggers watch. Replaced after every successful run that built something.
CREATE TABLE task_base_images (
	task_id    TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
	image      TEXT NOT NULL,  -- canonical reference: host[:port]/repository:tag
	registry   TEXT NOT NULL,  -- host[:port]
	repository TEXT NOT NULL,
	tag        TEXT NOT NULL,
	digest     TEXT NOT NULL DEFAULT '',
	runtime    INTEGER NOT NULL,  -- 1: the final stage's base; 0: a build-time base
	run_id     TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (task_id, image)
);
CREATE INDEX task_base_images_ref ON task_base_images(registry, repository, tag);

-- Per-registry run counters: run IDs are short and increase per registry.
CREATE TABLE run_counters (
	registry TEXT PRIMARY KEY REFERENCES registries(name) ON DELETE CASCADE,
	next     INTEGER NOT NULL
);

CREATE TABLE runs (
	registry      TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
	id            TEXT NOT NULL,
	seq           INTEGER NOT NULL,
	task_id       TEXT NOT NULL DEFAULT '',  -- '' for quick runs
	task_name     TEXT NOT NULL DEFAULT '',
	run_type      TEXT NOT NULL,             -- QuickRun, QuickBuild, AutoRun
	status        TEXT NOT NULL CHECK (status IN ('Queued', 'Running', 'Succeeded', 'Failed', 'Canceled', 'Error', 'Timeout')),
	trigger       TEXT NOT NULL CHECK (trigger IN ('Manual', 'Commit', 'Image Update', 'Timer')),
	cause         TEXT NOT NULL DEFAULT '{}', -- JSON: what started the run
	request       TEXT NOT NULL DEFAULT '{}', -- JSON: run-time overrides (values, quick-run file and context)
	platform      TEXT NOT NULL DEFAULT 'linux',
	commit_sha    TEXT NOT NULL DEFAULT '',
	branch        TEXT NOT NULL DEFAULT '',
	created_at    TEXT NOT NULL,
	started_at    TEXT NOT NULL DEFAULT '',
	finished_at   TEXT NOT NULL DEFAULT '',
	error         TEXT NOT NULL DEFAULT '',
	output_images TEXT NOT NULL DEFAULT '[]', -- JSON
	base_images   TEXT NOT NULL DEFAULT '[]', -- JSON
	steps         TEXT NOT NULL DEFAULT '[]', -- JSON
	PRIMARY KEY (registry, id)
);
CREATE INDEX runs_status ON runs(status, created_at);
CREATE INDEX runs_task ON runs(task_id, seq);
CREATE INDEX runs_registry_seq ON runs(registry, seq);
