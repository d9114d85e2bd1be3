-- Lifecycle: abandoned uploads end `expired` (the sweeper), and cluster-wide
-- background duties are held by one node at a time through a leased row (one
-- node on SQLite, but the same code).
DROP TRIGGER uploads_state_check_insert;
DROP TRIGGER uploads_state_check_update;
CREATE TRIGGER uploads_state_check_insert BEFORE INSERT ON uploads
    WHEN NEW.state NOT IN ('open', 'processing', 'succeeded', 'failed', 'expired')
    BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: uploads_state_check'); END;
CREATE TRIGGER uploads_state_check_update BEFORE UPDATE OF state ON uploads
    WHEN NEW.state NOT IN ('open', 'processing', 'succeeded', 'failed', 'expired')
    BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: uploads_state_check'); END;

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX uploads_expiry ON uploads(state, expires_at);
CREATE INDEX upload_files_pending ON upload_files(state, created_at);
