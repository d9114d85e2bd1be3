-- Webhooks are delivered from the job table: a second job kind.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('process_upload_file', 'deliver_webhook'));
