-- Dehydrated devices (MSC3814): at most one per user. The device itself is an ordinary
-- row in `devices`, so its identity keys, one-time and fallback keys and its pending
-- to-device messages live in the usual tables and go with it by the usual cascades;
-- this row only says which device is the dehydrated one and keeps the client's opaque
-- (encrypted) `device_data`. Deleting the device in any way (PUT of a replacement,
-- DELETE /dehydrated_device, DELETE /devices/{id}, /logout/all, deactivation) removes it.
CREATE TABLE dehydrated_devices (
    user_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    -- Canonical JSON, given back unchanged by GET /dehydrated_device.
    device_data TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Account deactivation deletes the signatures a user made on other users' keys; without
-- this index that is a scan of every signature on the server.
CREATE INDEX e2e_signatures_signer ON e2e_signatures (signer_user_id);
