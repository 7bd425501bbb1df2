-- Accounts and authentication (SQLite variant: INTEGER PRIMARY KEY is the rowid, so
-- token IDs are assigned by the engine). Keep in step with 0002_accounts.postgres.sql.
-- Flags are SMALLINT 0/1 rather than BOOLEAN so that one set of queries binds the same
-- Python ints on both engines.

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    -- NULL: the account cannot log in with a password (e.g. guests, wiped on deactivation).
    password_hash TEXT,
    created_ts BIGINT NOT NULL,
    is_admin SMALLINT NOT NULL DEFAULT 0,
    is_guest SMALLINT NOT NULL DEFAULT 0,
    deactivated SMALLINT NOT NULL DEFAULT 0
);

-- One row per profile field (displayname, avatar_url, m.tz, custom keys); value is JSON.
CREATE TABLE profiles (
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);

CREATE TABLE devices (
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE refresh_tokens (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- Set once this token has been exchanged: the token that replaced it. The old one
    -- stays usable until its successor is used (spec: POST /refresh).
    next_token_id BIGINT,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_next ON refresh_tokens (next_token_id);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);

CREATE TABLE access_tokens (
    id INTEGER PRIMARY KEY,
    -- sha256 of the token, hex: a database leak does not leak usable tokens.
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT,
    refresh_token_id BIGINT,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);

CREATE TABLE room_account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX room_account_data_stream ON room_account_data (user_id, stream_id);

CREATE TABLE uiaa_sessions (
    session_id TEXT PRIMARY KEY,
    -- What the session may authorise: an operation name, the user it acts for (NULL for
    -- registration) and a digest of the request's parameters.
    operation TEXT NOT NULL,
    user_id TEXT,
    op_digest TEXT NOT NULL,
    -- JSON object: completed stage type -> its result (e.g. the registration token used).
    completed TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX uiaa_sessions_created ON uiaa_sessions (created_ts);

CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed BIGINT,
    -- Registrations that passed the token stage but have not completed yet.
    pending BIGINT NOT NULL DEFAULT 0,
    completed BIGINT NOT NULL DEFAULT 0,
    expiry_time BIGINT
);
