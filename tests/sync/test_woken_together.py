"""Long-polls woken by the same event read their per-user values in one batch: each
user and device still gets its own unread counts (consistent with the events of the same
response) and its own key counts, on a real in-process server on both engines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.server import Homeserver
from homeserver.storage import e2e_keys, notifications, sync_batch_reads
from homeserver.storage.postgres_engine import PostgresConnection
from homeserver.storage.sqlite_engine import SqliteConnection
from homeserver.sync.e2e_sync import E2eSync
from homeserver.sync.room_sync import RoomSync
from homeserver.sync.sync_extras import SyncExtras
from homeserver.sync.sync_service import SyncService
from tests.client_api.conftest import Connect, MakeHs, connect, make_hs  # noqa: F401 (fixtures)
from tests.client_api.e2e_helpers import Device
from tests.client_api.sync_helpers import C, User, ok, timeline, woken_by

BATCHED_ALL = "batched memberships, unread and key counts"
SINGLE_READS = "single-user count reads"
_KINDS = {
    sync_batch_reads.PERSONAL_ROWS_PG: BATCHED_ALL,
    sync_batch_reads.PERSONAL_ROWS_SQLITE: BATCHED_ALL,
    notifications.SELECT_COUNTS: SINGLE_READS,
    e2e_keys.COUNT_OTKS: SINGLE_READS,
    e2e_keys.SELECT_UNUSED_FALLBACK_TYPES: SINGLE_READS,
}


def _own_counts_sync(hs: Homeserver) -> SyncService:
    """The homeserver's SyncService without a counts port: it reads unread counts itself,
    batched with the key counts."""
    return SyncService(hs.db, hs.rooms.stores, hs.rooms.loader,
                       SyncExtras(hs.account_data_store, hs.typing, hs.receipts, hs.presence),
                       hs.typing, hs.presence, hs.notifier, ignored=hs.account_data,
                       e2e=E2eSync(hs.to_device, hs.device_lists, hs.device_keys))


@pytest.fixture
async def setup(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:  # noqa: F811
    hs = make_hs()
    hs.sync = _own_counts_sync(hs)
    return hs, await connect(hs)


def _count_statements(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()
    for engine in (SqliteConnection, PostgresConnection):
        for name in ("fetch", "fetchrow"):
            original = getattr(engine, name)

            async def counting(self: Any, sql: str, *args: Any, _original: Any = original) -> Any:
                if sql in _KINDS:
                    counts[_KINDS[sql]] += 1
                return await _original(self, sql, *args)
            monkeypatch.setattr(engine, name, counting)
    return counts


async def _woken_by(hs: Homeserver, polls: list[Awaitable[dict[str, Any]]],
                    wake: Awaitable[Any]) -> list[dict[str, Any]]:
    return await woken_by(hs.notifier, polls, wake)


def _counts(body: dict[str, Any], room: str) -> dict[str, int]:
    return body["rooms"]["join"][room]["unread_notifications"]  # type: ignore[no-any-return]


async def _receipt(user: User, room: str, event_id: str) -> None:
    await ok(await user.client.post(f"{C}/rooms/{room}/receipt/m.read/{event_id}",
                                    headers=user.headers, json={}))


async def test_users_woken_together_get_their_own_counts(
        setup: tuple[Homeserver, TestClient], engine: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    hs, client = setup
    alice = await User.register(client, "alice")
    bob = await User.register(client, "bob")
    carol = await User.register(client, "carol")
    room = await carol.create_room(preset="public_chat")
    await alice.join(room)
    await bob.join(room)
    first = await carol.send(room, "one")
    await _receipt(bob, room, first)  # Bob read it; Alice did not
    since = {u.user_id: (await u.sync())["next_batch"] for u in (alice, bob)}
    statements = _count_statements(monkeypatch)
    woken = await _woken_by(hs, [u.sync(since=since[u.user_id], timeout_ms=30_000)
                                 for u in (alice, bob)], carol.send(room, "two"))
    for body in woken:
        assert [e["content"]["body"] for e in timeline(body, room)] == ["two"]
    # Each count includes the message of its own response.
    assert _counts(woken[0], room) == {"notification_count": 2, "highlight_count": 0}
    assert _counts(woken[1], room) == {"notification_count": 1, "highlight_count": 0}
    assert statements[SINGLE_READS] == 0
    # Unread and key counts together (with the memberships), in one statement per batch.
    assert 1 <= statements[BATCHED_ALL] <= 2
    if engine == "sqlite":  # statements run inline: the two syncs move in lock-step
        assert statements[BATCHED_ALL] == 1


async def test_a_count_changed_after_one_wake_is_seen_by_the_next(
        setup: tuple[Homeserver, TestClient]) -> None:
    hs, client = setup
    alice = await User.register(client, "alice")
    carol = await User.register(client, "carol")
    room = await carol.create_room(preset="public_chat")
    await alice.join(room)
    since = (await alice.sync())["next_batch"]
    [woken] = await _woken_by(hs, [alice.sync(since=since, timeout_ms=30_000)],
                              carol.send(room, "one"))
    assert _counts(woken, room) == {"notification_count": 1, "highlight_count": 0}
    event_id = timeline(woken, room)[0]["event_id"]
    [again] = await _woken_by(hs, [alice.sync(since=woken["next_batch"], timeout_ms=30_000)],
                              _receipt(alice, room, event_id))
    assert _counts(again, room) == {"notification_count": 0, "highlight_count": 0}


async def test_thread_counts_through_the_batched_read(
        setup: tuple[Homeserver, TestClient]) -> None:
    hs, client = setup
    alice = await User.register(client, "alice")
    carol = await User.register(client, "carol")
    room = await carol.create_room(preset="public_chat")
    await alice.join(room)
    root = await carol.send(room, "root")
    resp = await carol.client.put(f"{C}/rooms/{room}/send/m.room.message/thread-reply",
                                  headers=carol.headers, json={
                                      "msgtype": "m.text", "body": "reply",
                                      "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    await ok(resp)
    threads = {"room": {"timeline": {"unread_thread_notifications": True}}}
    body = await alice.sync(filter=threads)
    joined = body["rooms"]["join"][room]
    assert joined["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert joined["unread_thread_notifications"] == {
        root: {"notification_count": 1, "highlight_count": 0}}
    assert _counts(await alice.sync(), room) == {"notification_count": 2, "highlight_count": 0}


async def _sync(device: Device, since: str | None = None,
                timeout_ms: int = 0) -> dict[str, Any]:
    query = {"timeout": str(timeout_ms), "set_presence": "offline"}
    if since is not None:
        query["since"] = since
    return await ok(await device.client.get(f"{C}/sync", headers=device.headers,  # type: ignore[no-any-return]
                                            params=query))


async def test_devices_woken_together_get_their_own_key_counts(
        setup: tuple[Homeserver, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    hs, client = setup
    alice = await Device.register(client, "alice")
    phone = await alice.login_again()
    bob = await Device.register(client, "bob")
    room = await bob.create_room(preset="public_chat")
    await alice.join(room)
    await alice.upload_identity(otks=3)
    await phone.upload_identity(otks=1)
    await ok(await phone.upload(fallback_keys=phone.one_time_keys(1, fallback=True)))
    await ok(await bob.claim(alice.user_id, alice.device_id))  # Alice's laptop: 2 left
    since = {d.device_id: (await _sync(d))["next_batch"] for d in (alice, phone)}
    statements = _count_statements(monkeypatch)

    async def message() -> None:
        await ok(await bob.client.put(f"{C}/rooms/{room}/send/m.room.message/t1",
                                      headers=bob.headers, json={"msgtype": "m.text", "body": "hi"}))

    laptop_body, phone_body = await _woken_by(
        hs, [_sync(d, since[d.device_id], 30_000) for d in (alice, phone)], message())
    assert laptop_body["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert laptop_body["device_unused_fallback_key_types"] == []
    assert phone_body["device_one_time_keys_count"] == {"signed_curve25519": 1}
    assert phone_body["device_unused_fallback_key_types"] == ["signed_curve25519"]
    assert statements[SINGLE_READS] == 0
    # A key claimed after that wake is missing from the next sync of that device only.
    await ok(await bob.claim(alice.user_id, phone.device_id))
    assert (await _sync(phone, phone_body["next_batch"]))["device_one_time_keys_count"] == {
        "signed_curve25519": 0}
    assert (await _sync(alice, laptop_body["next_batch"]))["device_one_time_keys_count"] == {
        "signed_curve25519": 2}


async def test_a_rooms_events_are_chosen_once_for_the_syncs_woken_together(
        setup: tuple[Homeserver, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    hs, client = setup
    carol = await User.register(client, "carol")
    room = await carol.create_room(preset="public_chat")
    users = [await User.register(client, f"user{i}") for i in range(4)]
    for user in users:
        await user.join(room)
    lazy = {"room": {"state": {"lazy_load_members": True}}}
    since = {u.user_id: (await u.sync(filter=lazy))["next_batch"] for u in users}
    chosen: list[int] = []
    original = RoomSync._choose_shared

    async def recording(self: RoomSync, db: Any, keys: Any, *args: Any) -> Any:
        chosen.append(len(keys))
        return await original(self, db, keys, *args)

    monkeypatch.setattr(RoomSync, "_choose_shared", recording)
    woken = await _woken_by(hs, [u.sync(since=since[u.user_id], timeout_ms=30_000, filter=lazy)
                                 for u in users], carol.send(room, "hello"))
    assert chosen == [1]
    for body in woken:
        joined = body["rooms"]["join"][room]
        assert [e["content"]["body"] for e in joined["timeline"]["events"]] == ["hello"]
        # Lazy-loaded members: the sender's membership comes along, for every user.
        assert [(e["type"], e["state_key"]) for e in joined["state"]["events"]] == [
            ("m.room.member", carol.user_id)]
    # A user who does not lazy-load gets no state (the timeline is not limited) and makes
    # a choice of their own: the filter is part of what is shared.
    since_plain = (await users[0].sync())["next_batch"]
    [plain] = await _woken_by(hs, [users[0].sync(since=since_plain, timeout_ms=30_000)],
                              carol.send(room, "again"))
    assert plain["rooms"]["join"][room]["state"]["events"] == []
    assert chosen == [1, 1]
