-- Record history: the events of each object record, as the platform's
-- `GET /api/object-records/{id}/history/` lists them. `source_info` and
-- `event_data` are JSON objects stored as text (the Any driver has no JSON type).
-- A record has at most one `record_created` event (a partial unique index), so a
-- retried records batch cannot write a second one.
CREATE TABLE record_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    record_id BIGINT NOT NULL REFERENCES object_records(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL CHECK (event_type IN ('record_created')),
    source_type TEXT NOT NULL CHECK (source_type IN ('user', 'sequence', 'system', 'mcp')),
    source_name TEXT NOT NULL,
    source_id TEXT NOT NULL,
    source_info TEXT NOT NULL,
    event_data TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX record_events_record ON record_events(record_id, id);
CREATE UNIQUE INDEX record_events_one_created ON record_events(record_id)
    WHERE event_type = 'record_created';

-- Records made before this migration get their `record_created` event now: from
-- their upload when they came from one, else from their owner (REST).
INSERT INTO record_events (event_id, record_id, event_type, source_type, source_name,
        source_id, source_info, event_data, created_at)
    SELECT lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
            || substr(lower(hex(randomblob(2))), 2) || '-'
            || substr('89ab', 1 + (abs(random()) % 4), 1)
            || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
        r.id, 'record_created', 'system', 'upload', f.upload_id,
        json_object('upload_id', f.upload_id, 'file_session', f.id, 'file_name', f.file_name,
            'entry_index', r.upload_entry),
        json_object('object_name', r.object_name, 'object_class', r.object_class_id,
            'owner', r.owner_id),
        r.created_at
    FROM object_records r JOIN upload_files f ON f.id = r.upload_file_id;
INSERT INTO record_events (event_id, record_id, event_type, source_type, source_name,
        source_id, source_info, event_data, created_at)
    SELECT lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
            || substr(lower(hex(randomblob(2))), 2) || '-'
            || substr('89ab', 1 + (abs(random()) % 4), 1)
            || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
        r.id, 'record_created', 'user', u.email, CAST(u.id AS TEXT),
        json_object('user_id', u.id, 'account_type', u.account_type),
        json_object('object_name', r.object_name, 'object_class', r.object_class_id,
            'owner', r.owner_id),
        r.created_at
    FROM object_records r JOIN users u ON u.id = r.owner_id
    WHERE r.upload_file_id IS NULL;
