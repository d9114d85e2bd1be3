-- Typed states: every state column takes only the names of its enum in
-- src/domain.rs, and a file's processing progress lives in columns instead of
-- being re-read from its message log.
--
-- SQLite cannot add a CHECK to an existing table, so `upload_files` and `jobs`
-- are rebuilt (nothing references them, so dropping the old ones cascades
-- nothing). `uploads` is referenced by `upload_files` and `upload_messages` with
-- ON DELETE CASCADE, and dropping it would delete their rows, so its state is
-- checked by triggers instead, which refuse the same values a CHECK would.

CREATE TABLE upload_files_new (
    id TEXT PRIMARY KEY,
    upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    temp_upload_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    file_size BIGINT NOT NULL,
    file_type TEXT NOT NULL,
    s3_key TEXT NOT NULL UNIQUE,
    is_multipart BIGINT NOT NULL,
    s3_upload_id TEXT,
    chunk_size BIGINT,
    total_parts BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'processed', 'failed')),
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    -- The `attempt` of the file's last monitoring_update, its last av-status, and
    -- whether its final success was reported.
    monitor_attempt BIGINT NOT NULL DEFAULT 0,
    av_status TEXT NOT NULL DEFAULT 'skipped' CHECK (av_status IN ('skipped', 'scanning', 'clean', 'infected')),
    success_reported BIGINT NOT NULL DEFAULT 0 CHECK (success_reported IN (0, 1))
);
INSERT INTO upload_files_new (id, upload_id, temp_upload_id, file_name, file_size, file_type,
        s3_key, is_multipart, s3_upload_id, chunk_size, total_parts, state, created_at,
        completed_at, monitor_attempt, success_reported)
    SELECT id, upload_id, temp_upload_id, file_name, file_size, file_type, s3_key,
        is_multipart, s3_upload_id, chunk_size, total_parts, state, created_at, completed_at,
        CASE WHEN state = 'pending' THEN 0 ELSE 1 END,
        CASE WHEN state = 'processed' THEN 1 ELSE 0 END
    FROM upload_files;
DROP TABLE upload_files;
ALTER TABLE upload_files_new RENAME TO upload_files;
CREATE INDEX upload_files_upload ON upload_files(upload_id);

CREATE TABLE jobs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('process_upload_file')),
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
INSERT INTO jobs_new SELECT id, kind, dedupe_key, payload, state, attempts, max_attempts,
    run_at, locked_by, heartbeat_at, last_error, created_at, updated_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_ready ON jobs(state, run_at);

CREATE TRIGGER uploads_state_check_insert BEFORE INSERT ON uploads
    WHEN NEW.state NOT IN ('open', 'processing', 'succeeded', 'failed')
    BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: uploads_state_check'); END;
CREATE TRIGGER uploads_state_check_update BEFORE UPDATE OF state ON uploads
    WHEN NEW.state NOT IN ('open', 'processing', 'succeeded', 'failed')
    BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: uploads_state_check'); END;
