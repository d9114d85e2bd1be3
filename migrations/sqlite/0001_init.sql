-- Core schema (SQLite). Timestamps are Unix epoch milliseconds (BIGINT) so that the
-- same queries run unchanged on SQLite and PostgreSQL through sqlx's Any driver.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    account_type TEXT NOT NULL,
    is_active BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

CREATE TABLE ws_tickets (
    ticket_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX ws_tickets_expires ON ws_tickets(expires_at);

CREATE TABLE object_classes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    identifier TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users(id),
    modified_at BIGINT NOT NULL,
    modified_by BIGINT NOT NULL REFERENCES users(id)
);

CREATE TABLE class_fields (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object_class_id BIGINT NOT NULL REFERENCES object_classes(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    alias TEXT NOT NULL UNIQUE,
    field_type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (object_class_id, label)
);

CREATE TABLE class_permissions (
    object_class_id BIGINT NOT NULL REFERENCES object_classes(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (object_class_id, user_id)
);

CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    creator_id BIGINT NOT NULL REFERENCES users(id),
    object_class_id BIGINT NOT NULL REFERENCES object_classes(id),
    class_field_id BIGINT NOT NULL REFERENCES class_fields(id),
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    finished_at BIGINT
);

CREATE TABLE upload_files (
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
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX upload_files_upload ON upload_files(upload_id);

CREATE TABLE object_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object_class_id BIGINT NOT NULL REFERENCES object_classes(id) ON DELETE CASCADE,
    object_name TEXT NOT NULL,
    owner_id BIGINT NOT NULL REFERENCES users(id),
    field_values TEXT NOT NULL,
    upload_file_id TEXT,
    upload_entry BIGINT,
    created_at BIGINT NOT NULL,
    modified_at BIGINT NOT NULL,
    UNIQUE (upload_file_id, upload_entry)
);
CREATE INDEX object_records_class ON object_records(object_class_id, id);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    locked_by TEXT,
    heartbeat_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs(state, run_at);

CREATE TABLE upload_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX upload_messages_upload ON upload_messages(upload_id, id);
