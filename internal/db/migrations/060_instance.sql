-- 060: container instances (internal/instance): long-running containers
-- with a stable front address. Secret values (secure environment variables,
-- the registry password) are stored sealed by the vault master key, bound to
-- the instance's ID; everything else is plain.

CREATE TABLE container_instances (
	id                TEXT PRIMARY KEY,            -- UUID; binds the sealed values of the row
	name              TEXT NOT NULL UNIQUE,
	image             TEXT NOT NULL,               -- reference as given, e.g. 127.0.0.1:5003/hello-world:cb1
	image_id          TEXT NOT NULL DEFAULT '',    -- engine image ID the reference resolved to at the last deploy
	spec              TEXT NOT NULL DEFAULT '{}',  -- JSON: command, plain env, cpu, memory, restart policy
	secure_env        BLOB,                        -- sealed JSON object, NULL when there is none
	registry_server   TEXT NOT NULL DEFAULT '',
	registry_username TEXT NOT NULL DEFAULT '',
	registry_password BLOB,                        -- sealed, NULL when there is none
	ports             TEXT NOT NULL DEFAULT '[]',  -- JSON: [{port, protocol, frontPort, listenPort}]
	container_id      TEXT NOT NULL DEFAULT '',    -- the engine container currently serving
	state             TEXT NOT NULL DEFAULT '',    -- last observed state (Running, Failed, ...)
	updated_by        TEXT NOT NULL DEFAULT '',    -- who deployed last (display name)
	created_at        TEXT NOT NULL,
	updated_at        TEXT NOT NULL
);

-- The owner ID of this database's containers on the engine: every container
-- gantry creates carries it as a label, so that several gantry servers (or
-- test processes) can share one engine without adopting or removing each
-- other's containers.
CREATE TABLE container_instance_owner (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	owner TEXT NOT NULL
);
