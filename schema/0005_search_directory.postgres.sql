-- Full-text search over room events (POST /search), PostgreSQL flavour: a tsvector per
-- indexed event with a GIN index. The SQLite variant uses FTS5 instead; the plain
-- columns are the same so the stores share their non-FTS queries.
--
-- Rows are written after the event commits (homeserver/search/indexer.py), never in the
-- persistence transaction, so a slow index cannot slow down sending. `search_position`
-- records the last events-stream position indexed, in the same transaction as the rows,
-- so a restart resumes exactly where indexing stopped.
CREATE TABLE event_search (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    -- Which content key the text came from: content.body, content.name, content.topic.
    key TEXT NOT NULL,
    sender TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    value TEXT NOT NULL,
    vector tsvector NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);

-- One row: the events-stream position up to which event_search is complete.
CREATE TABLE search_position (
    id SMALLINT PRIMARY KEY,
    indexed_upto BIGINT NOT NULL
);
INSERT INTO search_position (id, indexed_upto) VALUES (1, 0);
