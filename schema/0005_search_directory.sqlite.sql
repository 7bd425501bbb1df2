-- Full-text search over room events (POST /search), SQLite flavour: an FTS5 index (bm25
-- ranking, porter stemming) over the `value` column of a plain table, kept in step by
-- triggers. The PostgreSQL variant uses a tsvector column with a GIN index instead.
--
-- Rows are written after the event commits (homeserver/search/indexer.py), never in the
-- persistence transaction, so a slow index cannot slow down sending. `search_position`
-- records the last events-stream position indexed, in the same transaction as the rows,
-- so a restart resumes exactly where indexing stopped.
CREATE TABLE event_search (
    -- The FTS5 rowid; event_id stays the key everything else uses.
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    -- Which content key the text came from: content.body, content.name, content.topic.
    key TEXT NOT NULL,
    sender TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);

CREATE VIRTUAL TABLE event_search_fts USING fts5(
    value, content='event_search', content_rowid='id', tokenize='porter unicode61'
);

CREATE TRIGGER event_search_ai AFTER INSERT ON event_search BEGIN
    INSERT INTO event_search_fts (rowid, value) VALUES (new.id, new.value);
END;

CREATE TRIGGER event_search_ad AFTER DELETE ON event_search BEGIN
    INSERT INTO event_search_fts (event_search_fts, rowid, value) VALUES ('delete', old.id, old.value);
END;

-- One row: the events-stream position up to which event_search is complete.
CREATE TABLE search_position (
    id SMALLINT PRIMARY KEY,
    indexed_upto BIGINT NOT NULL
);
INSERT INTO search_position (id, indexed_upto) VALUES (1, 0);
