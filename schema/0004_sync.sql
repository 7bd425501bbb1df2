-- Filters uploaded with POST /user/{userId}/filter. IDs come from the "filter_ids"
-- counter in stream_positions. Clients upload the same filter at every start, so a
-- user's identical filters share one row, found by the SHA-256 of their canonical JSON
-- (filter_json itself may be too long to index).
CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_hash TEXT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id),
    UNIQUE (user_id, filter_hash)
);

-- The latest receipt per (room, type, user, thread); thread_id '' is an unthreaded
-- receipt (a NULL could not take part in the primary key). stream_id numbers the
-- change on the "receipts" stream; data is the receipt's JSON object ({"ts": ...}).
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    data TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts (stream_id);

-- One row per user with a presence state. currently_active is 0/1.
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    currently_active SMALLINT NOT NULL,
    stream_id BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_id);
