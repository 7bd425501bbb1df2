-- Rooms, the event graph, state snapshots and the tables derived from them.
-- Every row here is written by the one persistence path (homeserver/rooms/persistence.py)
-- inside the transaction that persists the event it derives from.

CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- Listed in the public room directory (0/1).
    is_public SMALLINT NOT NULL DEFAULT 0,
    -- The snapshot that current_state mirrors (the state a new local event builds on).
    current_snapshot_id BIGINT
);

-- One row per PDU, in federation format (canonical JSON, signatures included; the
-- client format is derived on read). Outliers (events known only as auth events or
-- state, not part of the timeline) have no stream ordering.
CREATE TABLE events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT UNIQUE,
    depth BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json TEXT NOT NULL,
    rejected_reason TEXT,
    outlier SMALLINT NOT NULL DEFAULT 0,
    -- The state event this one replaced (for unsigned.replaces_state / prev_content).
    replaces_state TEXT
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_depth ON events (room_id, depth, stream_ordering);

CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

CREATE TABLE event_auth (
    event_id TEXT NOT NULL,
    auth_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
);

-- The events of a room that no other event references yet: the next local event's
-- prev_events.
CREATE TABLE forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State snapshots: a snapshot is its parent's state plus its own entries (an entry with
-- a NULL event_id removes the key). chain_length counts the deltas down to a full
-- snapshot (parent_id NULL, chain_length 0) and is bounded, so a read walks a few rows
-- and a state change writes a few rows, whatever the size of the room.
-- content_hash is an order-independent hash of the whole state, for deduplication.
CREATE TABLE state_snapshots (
    snapshot_id BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    parent_id BIGINT,
    chain_length INTEGER NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX state_snapshots_hash ON state_snapshots (room_id, content_hash);

CREATE TABLE state_snapshot_entries (
    snapshot_id BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    PRIMARY KEY (snapshot_id, type, state_key)
);

-- The state before and after each non-outlier event. They differ only for state
-- events; keeping both answers "state at an event" (federation /state, auth of a child
-- event, /members?at=) without re-applying the event.
CREATE TABLE event_state (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    before_snapshot_id BIGINT NOT NULL,
    after_snapshot_id BIGINT NOT NULL
);

-- The state of each room after resolving its forward extremities.
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_by_key ON current_state (type, state_key);

-- Every m.room.member event, for membership queries without parsing JSON.
CREATE TABLE room_memberships (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    membership TEXT NOT NULL,
    stream_ordering BIGINT,
    -- Set by /forget on the user's memberships in the room (0/1).
    forgotten SMALLINT NOT NULL DEFAULT 0
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, room_id);
CREATE INDEX room_memberships_room ON room_memberships (room_id, stream_ordering);

-- Client transaction IDs (PUT /send/.../{txnId}), scoped to the user and device.
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

-- Redactions, applied when events are read. validated is 1 when the redaction's sender
-- had the redact power level; otherwise it applies only to events of the same server.
CREATE TABLE redactions (
    event_id TEXT PRIMARY KEY,
    redacts TEXT NOT NULL,
    room_id TEXT NOT NULL,
    validated SMALLINT NOT NULL
);
CREATE INDEX redactions_redacts ON redactions (redacts);

CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
