-- 031: a task whose local context (folder, file:// or local-path git URL)
-- was set by the admin may read any folder outside the data directory;
-- others only folders under the server's --context-root folders.
ALTER TABLE tasks ADD COLUMN context_admin INTEGER NOT NULL DEFAULT 0;
