-- Lifecycle: abandoned uploads end `expired` (the sweeper), and cluster-wide
-- background duties are held by one node at a time through a leased row.
ALTER TABLE uploads DROP CONSTRAINT uploads_state_check;
ALTER TABLE uploads ADD CONSTRAINT uploads_state_check
    CHECK (state IN ('open', 'processing', 'succeeded', 'failed', 'expired'));

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX uploads_expiry ON uploads(state, expires_at);
CREATE INDEX upload_files_pending ON upload_files(state, created_at);
