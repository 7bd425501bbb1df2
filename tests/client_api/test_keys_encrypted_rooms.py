"""Encrypted rooms need nothing special from the server: m.room.encryption is ordinary
state and m.room.encrypted content passes through untouched."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.client_api.e2e_helpers import C, Device, ok

ENCRYPTION = {"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 604800000,
              "rotation_period_msgs": 100}


async def test_create_encrypted_room_and_send_opaque_content(client: TestClient) -> None:
    alice = await Device.register(client, "alice")
    bob = await Device.register(client, "bob")
    room = await alice.create_room(preset="private_chat", invite=[bob.user_id], initial_state=[
        {"type": "m.room.encryption", "state_key": "", "content": ENCRYPTION}])
    await bob.join(room)
    state = await ok(await client.get(f"{C}/rooms/{room}/state/m.room.encryption/",
                                      headers=bob.headers))
    assert state == ENCRYPTION
    content = {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": alice.curve25519,
               "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg2yyOwAtHaZTwyNg37afzg",
               "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
               "device_id": alice.device_id, "m.relates_to": {"rel_type": "m.thread",
                                                               "event_id": "$abc"},
               "org.example.unknown": {"nested": [1, None, True, "x"]}}
    sent = await ok(await client.put(f"{C}/rooms/{room}/send/m.room.encrypted/t1",
                                     headers=alice.headers, json=content))
    event = await ok(await client.get(f"{C}/rooms/{room}/event/{sent['event_id']}",
                                      headers=bob.headers))
    assert event["type"] == "m.room.encrypted" and event["content"] == content
    history = await ok(await client.get(f"{C}/rooms/{room}/messages?dir=b&limit=1",
                                        headers=bob.headers))
    assert history["chunk"][0]["content"] == content
