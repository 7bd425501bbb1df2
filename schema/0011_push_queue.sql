-- Notifications waiting to be posted to a pusher's gateway (homeserver/push/sender.py).
-- One row per (pusher, event), written in the transaction that records the notification,
-- so a restart loses nothing and the primary key stops a notification being queued twice.
-- unread is the user's unread count when the event notified; actions are canonical JSON.
-- attempts and next_attempt_ts drive the per-pusher exponential backoff.
CREATE TABLE push_queue (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    actions TEXT NOT NULL,
    unread BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey, event_id)
);
CREATE INDEX push_queue_due ON push_queue (next_attempt_ts);
