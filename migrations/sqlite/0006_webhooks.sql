-- Webhooks are delivered from the job table: a second job kind. SQLite cannot
-- change a CHECK, so the table is rebuilt with the same columns (nothing
-- references it). A migration that adds columns to `jobs` before this one must
-- add them here too.
CREATE TABLE jobs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('process_upload_file', 'deliver_webhook')),
    dedupe_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    locked_by TEXT,
    heartbeat_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO jobs_new (id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at,
        locked_by, heartbeat_at, last_error, created_at, updated_at)
    SELECT id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at,
        locked_by, heartbeat_at, last_error, created_at, updated_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_ready ON jobs(state, run_at);
