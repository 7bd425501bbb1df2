"""POST /account/deactivate removes the account's E2EE data: device, one-time and fallback
keys, cross-signing keys and signatures, key backups, pending to-device messages and the
dehydrated device; the user's contacts see a device-list change."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from tests.client_api.conftest import Connect, MakeHs, password_auth
from tests.client_api.e2e_helpers import C, Device, cross_signing_key, ok, public_key, sign
from tests.client_api.test_dehydrated_devices import Dehydrated, put, send_to_device

# Every E2EE table, with the column naming the user whose data a row is.
USER_COLUMNS = [("e2e_device_keys", "user_id"), ("e2e_one_time_keys", "user_id"),
                ("e2e_fallback_keys", "user_id"), ("e2e_cross_signing_keys", "user_id"),
                ("e2e_signatures", "target_user_id"), ("e2e_signatures", "signer_user_id"),
                ("room_key_backup_versions", "user_id"), ("room_key_backup_keys", "user_id"),
                ("to_device_messages", "user_id"), ("to_device_txns", "user_id"),
                ("dehydrated_devices", "user_id")]
BACKUP = {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
          "auth_data": {"public_key": "abc", "signatures": {}}}
SESSION = {"first_message_index": 0, "forwarded_count": 0, "is_verified": False,
           "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"}}


@pytest.fixture
async def hs_client(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:
    hs = make_hs()
    return hs, await connect(hs)


async def rows_of(hs: Homeserver, user_id: str) -> dict[str, int]:
    found = {}
    for table, column in USER_COLUMNS:
        # Names from the constant list above; the user ID is a parameter.
        n = await hs.db.fetchval(f"SELECT COUNT(*) FROM {table} WHERE {column} = $1", user_id)
        found[f"{table}.{column}"] = int(n)
    return found


async def upload_cross_signing(device: Device) -> dict[str, Any]:
    """Master, self-signing and user-signing keys; returns the signing keys by usage."""
    keys = {usage: cross_signing_key() for usage in ("master", "self_signing", "user_signing")}
    body = {}
    for usage, key in keys.items():
        pub = public_key(key)
        obj = {"user_id": device.user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}
        body[f"{usage}_key"] = obj if usage == "master" else \
            sign(obj, device.user_id, keys["master"])
    await ok(await device.post("/keys/device_signing/upload", body))
    return {"keys": keys, "body": body}


async def deactivate(client: TestClient, user_id: str, headers: dict[str, str] | None) -> None:
    await ok(await client.post(f"{C}/account/deactivate", headers=headers or {},
                               json={"auth": password_auth(user_id)}))


async def test_deactivation_erases_e2ee_data(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await alice.upload_identity(otks=3)
    await ok(await alice.upload(fallback_keys=alice.one_time_keys(1, fallback=True)))
    await bob.upload_identity()
    a_cs, b_cs = await upload_cross_signing(alice), await upload_cross_signing(bob)
    # Alice verifies Bob (her user-signing key over his master key), and Bob Alice.
    b_master = public_key(b_cs["keys"]["master"])
    a_master = public_key(a_cs["keys"]["master"])
    result = await ok(await alice.post("/keys/signatures/upload", {bob.user_id: {
        b_master: sign(b_cs["body"]["master_key"], alice.user_id, a_cs["keys"]["user_signing"])}}))
    assert result == {"failures": {}}
    result = await ok(await bob.post("/keys/signatures/upload", {alice.user_id: {
        a_master: sign(a_cs["body"]["master_key"], bob.user_id, b_cs["keys"]["user_signing"])}}))
    assert result == {"failures": {}}
    version = (await ok(await alice.post("/room_keys/version", BACKUP)))["version"]
    await ok(await client.put(f"{C}/room_keys/keys/{room}/s1?version={version}",
                              headers=alice.headers, json=SESSION))
    await ok(await put(alice, Dehydrated(alice).body()))
    await send_to_device(bob, "t1", {alice.user_id: {"*": {"k": 1}}})
    await ok(await client.put(f"{C}/sendToDevice/m.x/t2", headers=alice.headers,
                              json={"messages": {bob.user_id: {bob.device_id: {}}}}))
    assert all((await rows_of(hs, alice.user_id)).values())  # a row in every table
    bob_rows = await rows_of(hs, bob.user_id)

    before = await hs.device_lists.current_position()
    seen: list[Any] = []
    hs.notifier.add_publisher(seen.append)
    await deactivate(client, alice.user_id, alice.headers)

    assert not any((await rows_of(hs, alice.user_id)).values()), await rows_of(hs, alice.user_id)
    # Bob keeps his own data, less Alice's signature over his master key.
    bob_after = await rows_of(hs, bob.user_id)
    assert bob_after == {**bob_rows, "e2e_signatures.target_user_id": 0,
                         "e2e_signatures.signer_user_id": 0,
                         # Alice's message to Bob was sent, it is his to receive.
                         "to_device_messages.user_id": bob_rows["to_device_messages.user_id"]}
    queried = await bob.query(alice.user_id, bob.user_id)
    assert queried["device_keys"][alice.user_id] == {}
    assert alice.user_id not in queried["master_keys"]
    assert alice.user_id not in queried["master_keys"][bob.user_id].get("signatures", {})
    # Bob's client hears that Alice's devices changed, and is woken for it.
    changed, _ = await hs.device_lists.device_list_changes(
        bob.user_id, before, await hs.device_lists.current_position())
    assert alice.user_id in changed
    assert any(n.stream == "device_lists" and room in n.rooms for n in seen)


async def test_deactivation_without_devices_still_announces_the_change(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await upload_cross_signing(alice)
    await ok(await alice.post("/logout", {}))  # her only device goes
    before = await hs.device_lists.current_position()
    await deactivate(client, alice.user_id, None)  # the password stage names the account
    assert (await rows_of(hs, alice.user_id))["e2e_cross_signing_keys.user_id"] == 0
    changed, _ = await hs.device_lists.device_list_changes(
        bob.user_id, before, await hs.device_lists.current_position())
    assert alice.user_id in changed
