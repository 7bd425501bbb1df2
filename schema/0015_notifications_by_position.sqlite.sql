-- Notifications keyed by (user, stream position) instead of (user, event ID).
--
-- A notification's event ID is a hash, so the old key put every new row at a random
-- place in the user's part of the primary-key index: each event dirtied one page per
-- notified user there, and on SQLite each dirty page is a WAL frame (two writes) at
-- commit. Stream positions grow, so new rows now append at the end of each user's range:
-- a batch of events adds a page or two per user. An event has one stream position
-- (events.stream_ordering is UNIQUE), so the new key identifies a row as the old one did.
-- WITHOUT ROWID: the key is the table, so the (user, position) order needs no second
-- index (it replaces notifications_user_order).
CREATE TABLE notifications_by_position (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    actions TEXT NOT NULL,
    highlight SMALLINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_ordering)
) WITHOUT ROWID;
INSERT INTO notifications_by_position
SELECT user_id, room_id, event_id, thread_id, stream_ordering, actions, highlight, ts
FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_by_position RENAME TO notifications;
CREATE INDEX notifications_room ON notifications (user_id, room_id, thread_id, stream_ordering);
