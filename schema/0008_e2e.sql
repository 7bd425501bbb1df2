-- End-to-end encryption: device keys, one-time and fallback keys, cross-signing, device
-- list tracking, to-device messages and server-side key backup.
-- Rows that belong to a device cascade with it, so deleting a device (logout, DELETE
-- /devices, deactivation) removes its keys and its pending messages in the same
-- transaction without the accounts code knowing about E2EE.

CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- The uploaded object minus `unsigned` (display names come from `devices`), as
    -- canonical JSON; its own signatures are part of it.
    key_json TEXT NOT NULL,
    -- The identity keys, kept apart so that a change of identity can be refused.
    ed25519 TEXT NOT NULL,
    curve25519 TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    -- Keys are claimed in upload order (spec: /keys/claim); one number per upload call.
    upload_seq BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX e2e_one_time_keys_order ON e2e_one_time_keys (user_id, device_id, algorithm, upload_seq);

CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    -- 0/1: handed out by /keys/claim since it was uploaded (reported by /sync).
    used SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- One row per user and usage (master, self_signing, user_signing).
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload, attached to the target key when
-- it is queried. target_key_id is a device ID or a cross-signing public key.
CREATE TABLE e2e_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- Device-list stream (stream "device_lists"): a user's devices or cross-signing keys
-- changed at this position.
CREATE TABLE device_list_changes (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id);

-- Same stream: a user started (joined = 1) or stopped (0) being joined to a room, so
-- that device-list changes can report users who newly share, or no longer share, a room.
CREATE TABLE device_list_room_changes (
    stream_id BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    joined SMALLINT NOT NULL,
    PRIMARY KEY (stream_id, room_id, user_id)
);
CREATE INDEX device_list_room_changes_room ON device_list_room_changes (room_id, stream_id);
CREATE INDEX device_list_room_changes_user ON device_list_room_changes (user_id, stream_id);

-- Pending to-device messages (stream "to_device"), deleted once the device acknowledges
-- them by syncing with a later token.
CREATE TABLE to_device_messages (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- PUT /sendToDevice/{eventType}/{txnId} is idempotent per sending user, device and txn ID.
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Server-side key backup. Versions are per-user integers; a deleted version keeps its
-- row (deleted = 1) so that its number is never reused.
CREATE TABLE room_key_backup_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    -- Bumped whenever the keys in this version change (the `etag` of the spec).
    etag BIGINT NOT NULL DEFAULT 0,
    deleted SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE room_key_backup_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified SMALLINT NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
