-- Typed states: every state column takes only the names of its enum in
-- src/domain.rs, and a file's processing progress lives in columns instead of
-- being re-read from its message log.
ALTER TABLE uploads ADD CONSTRAINT uploads_state_check
    CHECK (state IN ('open', 'processing', 'succeeded', 'failed'));
ALTER TABLE upload_files ADD CONSTRAINT upload_files_state_check
    CHECK (state IN ('pending', 'completed', 'processed', 'failed'));
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued', 'running', 'succeeded', 'failed'));
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('process_upload_file'));

-- The `attempt` of the file's last monitoring_update, its last av-status, and
-- whether its final success was reported.
ALTER TABLE upload_files ADD COLUMN monitor_attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE upload_files ADD COLUMN av_status TEXT NOT NULL DEFAULT 'skipped'
    CONSTRAINT upload_files_av_status_check CHECK (av_status IN ('skipped', 'scanning', 'clean', 'infected'));
ALTER TABLE upload_files ADD COLUMN success_reported BIGINT NOT NULL DEFAULT 0
    CONSTRAINT upload_files_success_reported_check CHECK (success_reported IN (0, 1));
-- Files completed before this migration already sent their `queued` update (attempt 1).
UPDATE upload_files SET monitor_attempt = 1 WHERE state <> 'pending';
UPDATE upload_files SET success_reported = 1 WHERE state = 'processed';
