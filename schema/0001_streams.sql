-- One row per stream (room events, account data, receipts, to-device, ...): its latest
-- position. Writers bump it inside their own transaction, so on PostgreSQL the row lock
-- makes positions commit in order and a sync token never skips an uncommitted write.
CREATE TABLE stream_positions (
    stream TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
