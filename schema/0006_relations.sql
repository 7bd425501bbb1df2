-- Event relationships (spec: "Forming relationships between events"): one row per
-- event whose content carries `m.relates_to` with a `rel_type`, written by the one
-- persistence path in the transaction that persists the event, and deleted in the
-- transaction of a redaction that applies to it (a redacted event loses its relation).
-- Serves /relations, /threads and the bundled aggregations in `unsigned.m.relations`.
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    -- The parent event; it may be unknown to us (relations can arrive before parents).
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    -- The annotation key of an m.annotation (a reaction's emoji); NULL otherwise.
    aggregation_key TEXT,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
-- Children of a parent, by relation type, in timeline order (/relations, aggregations).
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, rel_type, stream_ordering);
-- A room's threads by latest activity (/threads).
CREATE INDEX event_relations_room ON event_relations (room_id, rel_type, relates_to_id, stream_ordering);
