-- A running job whose worker stopped heartbeating is announced to its client
-- before the takeover (`ERR_WORKER_SILENT`): when the last such notice went out,
-- so that one node (of many checking) sends each one. Expired uploads are purged
-- by their finish time.
ALTER TABLE jobs ADD COLUMN silence_noticed_at BIGINT;
CREATE INDEX uploads_finished ON uploads(state, finished_at);
