-- Event History API (SQLite). Keep in step with migrations/postgres/0002_history.sql.

-- Service API keys (`X-API-Key`). A key is `ihk_<id>_<secret>`; only the id and
-- HMAC-SHA256(pepper, id:secret) are stored.
CREATE TABLE history_api_keys (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Per-tenant databases: the namespace a tenant's events and files live in (the
-- platform's one ClickHouse database per tenant). A dropped database keeps its row,
-- and so its name, until its files have been purged from the object store.
CREATE TABLE history_databases (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    dropped_at BIGINT,
    purge_after BIGINT
);
CREATE INDEX history_databases_purge ON history_databases(purge_after);

-- Tenants: `X-Client-Id` → database name. No foreign key on purpose: a tenant whose
-- database is missing is a state the API reports ("'…' tenant not found in database.").
CREATE TABLE history_tenants (
    client_id TEXT PRIMARY KEY,
    client_label TEXT NOT NULL,
    client_secret_hash TEXT NOT NULL,
    database_name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Events, unique per (database, event_id): creating one twice is a no-op.
CREATE TABLE history_events (
    database_name TEXT NOT NULL REFERENCES history_databases(name) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event_time BIGINT NOT NULL,
    event_type_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    file_id TEXT,
    detail TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (database_name, event_id)
);
CREATE INDEX history_events_time ON history_events(database_name, event_time);
CREATE INDEX history_events_record ON history_events(database_name, record_id, event_time);
CREATE INDEX history_events_type ON history_events(database_name, event_type_id, event_time);
