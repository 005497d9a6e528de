-- 070: a run gets two credentials (docs/security.md): one for the control
-- API, given only to the gantry and az alias steps, and one for its
-- registries, in every step's Docker config, that the control API refuses.
ALTER TABLE run_credentials ADD COLUMN registry_only INTEGER NOT NULL DEFAULT 0;
-- A task whose local context (folder, file:// or local-path git URL) was
-- set by the admin may read any folder outside the data directory; others
-- only folders under the server's --context-root folders.
ALTER TABLE tasks ADD COLUMN context_admin INTEGER NOT NULL DEFAULT 0;
