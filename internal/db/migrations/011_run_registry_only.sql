-- 011: a run gets two credentials (docs/security.md): one for the control
-- API, given only to the gantry and az alias steps, and one for its
-- registries, in every step's Docker config, that the control API refuses.
ALTER TABLE run_credentials ADD COLUMN registry_only INTEGER NOT NULL DEFAULT 0;
