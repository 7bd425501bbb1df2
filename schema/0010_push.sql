-- Push rules, notification counts and pushers (homeserver/push/).

-- A user's own push rules. `position` orders rules within (user, kind): a higher value
-- is more important. Positions are rewritten whenever a rule is added, so they stay
-- dense and `before`/`after` need no gaps. conditions and actions are canonical JSON;
-- pattern is set for content rules only. enabled is 0/1.
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    conditions TEXT NOT NULL,
    pattern TEXT,
    actions TEXT NOT NULL,
    enabled SMALLINT NOT NULL,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- A user's changes to server-default rules: NULL means "as the default says".
CREATE TABLE push_rule_defaults (
    user_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled SMALLINT,
    actions TEXT,
    PRIMARY KEY (user_id, rule_id)
);

-- One row per event that notified a user. thread_id is 'main' outside threads, else
-- the thread root. highlight is 0/1.
CREATE TABLE notifications (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    actions TEXT NOT NULL,
    highlight SMALLINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX notifications_user_order ON notifications (user_id, stream_ordering);
CREATE INDEX notifications_room ON notifications (user_id, room_id, thread_id, stream_ordering);

-- Unread counts per (user, room, thread), kept up to date by the evaluator (increment)
-- and by read receipts (recount after read_upto, the stream position read up to).
CREATE TABLE notification_counts (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    notif_count BIGINT NOT NULL,
    highlight_count BIGINT NOT NULL,
    read_upto BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);

-- Where an unthreaded receipt put the user in a room: a thread seen for the first time
-- starts from here, so an event evaluated after the receipt does not count as unread.
CREATE TABLE notification_room_read (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    read_upto BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

-- Pushers (POST /pushers/set). data is the pusher's JSON `data` object.
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    access_token_device TEXT,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_pushkey ON pushers (app_id, pushkey);
