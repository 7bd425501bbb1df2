"""The account stores behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from homeserver.storage import streams
from homeserver.storage.access_tokens import AccessTokenStore, token_hash
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Database
from homeserver.storage.devices import DeviceStore
from homeserver.storage.profiles import ProfileStore
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.uiaa_sessions import UiaaSessionStore
from homeserver.storage.users import UserStore

ALICE = "@alice:test.local"


async def _alice_with_device(db: Database) -> None:
    async with db.transaction() as conn:
        assert await UserStore().create(conn, ALICE, "hash", created_ts=1, is_admin=True)
        await DeviceStore().upsert(conn, ALICE, "DEV", display_name="Phone", now_ms=5, ip="10.0.0.1")


async def test_users_create_get_deactivate(database: Database) -> None:
    users = UserStore()
    await _alice_with_device(database)
    async with database.transaction() as conn:
        assert not await users.create(conn, ALICE, None, created_ts=2)  # taken
    user = await users.get(database, ALICE)
    assert user is not None and user.is_admin and not user.is_guest and not user.deactivated
    assert user.password_hash == "hash" and user.created_ts == 1
    async with database.transaction() as conn:
        await users.deactivate(conn, ALICE)
    user = await users.get(database, ALICE)
    assert user is not None and user.deactivated and user.password_hash is None
    assert await users.get(database, "@nobody:test.local") is None
    assert await users.count(database) == 1


async def test_devices_upsert_keeps_name_and_updates_last_seen(database: Database) -> None:
    devices = DeviceStore()
    await _alice_with_device(database)
    async with database.transaction() as conn:
        await devices.upsert(conn, ALICE, "DEV", display_name="Other", now_ms=9, ip="10.0.0.2")
    device = await devices.get(database, ALICE, "DEV")
    assert device is not None
    assert (device.display_name, device.last_seen_ts, device.last_seen_ip, device.created_ts) == \
        ("Phone", 9, "10.0.0.2", 5)
    async with database.transaction() as conn:
        assert await devices.set_display_name(conn, ALICE, "DEV", None)
        assert not await devices.set_display_name(conn, ALICE, "NOPE", "x")
        await devices.touch(conn, ALICE, "DEV", now_ms=20, ip=None)
    device = await devices.get(database, ALICE, "DEV")
    assert device is not None and device.display_name is None and device.last_seen_ts == 20
    assert device.last_seen_ip == "10.0.0.2"
    async with database.transaction() as conn:
        await devices.delete(conn, ALICE, ["DEV", "NOPE"])
    assert await devices.list_for_user(database, ALICE) == []


async def test_access_tokens_stored_hashed(database: Database) -> None:
    store = AccessTokenStore()
    await _alice_with_device(database)
    async with database.transaction() as conn:
        rid = await store.add_refresh(conn, token_hash("r1"), ALICE, "DEV", created_ts=1)
        tid = await store.add_access(conn, token_hash("a1"), ALICE, "DEV", created_ts=1,
                                     expires_ts=100, refresh_token_id=rid)
    assert await database.fetchval("SELECT COUNT(*) FROM access_tokens WHERE token_hash = $1", "a1") == 0
    row = await store.get_access(database, token_hash("a1"))
    assert row is not None and row.id == tid and row.expires_ts == 100 and row.refresh_token_id == rid
    assert row.is_admin and not row.deactivated
    assert await store.get_access(database, token_hash("a2")) is None
    refresh = await store.get_refresh(database, token_hash("r1"))
    assert refresh is not None and refresh.id == rid and refresh.next_token_id is None
    async with database.transaction() as conn:
        await store.delete_refresh(conn, rid)
    assert await store.get_access(database, token_hash("a1")) is None


async def test_deleting_a_device_cascades_to_its_tokens(database: Database) -> None:
    store = AccessTokenStore()
    await _alice_with_device(database)
    async with database.transaction() as conn:
        await store.add_access(conn, token_hash("a1"), ALICE, "DEV", created_ts=1, expires_ts=None,
                               refresh_token_id=None)
        await DeviceStore().delete(conn, ALICE, ["DEV"])
    assert await store.get_access(database, token_hash("a1")) is None


async def test_token_hash_unique(database: Database) -> None:
    store = AccessTokenStore()
    await _alice_with_device(database)
    async with database.transaction() as conn:
        await store.add_access(conn, token_hash("a1"), ALICE, "DEV", created_ts=1, expires_ts=None,
                               refresh_token_id=None)
    with pytest.raises(Exception):  # noqa: B017 - engine-specific IntegrityError types
        async with database.transaction() as conn:
            await store.add_access(conn, token_hash("a1"), ALICE, "DEV", created_ts=1,
                                   expires_ts=None, refresh_token_id=None)


async def test_profiles_fields_roundtrip(database: Database) -> None:
    profiles = ProfileStore()
    await _alice_with_device(database)
    async with database.transaction() as conn:
        await profiles.set_field(conn, ALICE, "displayname", "Alice")
        await profiles.set_field(conn, ALICE, "org.example.x", {"nested": [1, None]})
        await profiles.set_field(conn, ALICE, "org.example.null", None)
    assert await profiles.get(database, ALICE) == {
        "displayname": "Alice", "org.example.x": {"nested": [1, None]}, "org.example.null": None}
    assert await profiles.get_field(database, ALICE, "org.example.null") == (True, None)
    assert await profiles.get_field(database, ALICE, "avatar_url") == (False, None)
    async with database.transaction() as conn:
        await profiles.delete_field(conn, ALICE, "displayname")
    assert "displayname" not in await profiles.get(database, ALICE)


async def test_account_data_numbered_on_the_stream(database: Database) -> None:
    store = AccountDataStore()
    async with database.transaction() as conn:
        s1 = await store.put_global(conn, ALICE, "m.direct", {"a": 1})
        s2 = await store.put_room(conn, ALICE, "!r:test.local", "m.tag", {"tags": {}})
        s3 = await store.put_global(conn, ALICE, "m.direct", {"a": 2})
    assert s1 < s2 < s3
    assert await streams.current_position(database, "account_data") == s3
    assert await store.get_global(database, ALICE, "m.direct") == {"a": 2}
    assert await store.get_room(database, ALICE, "!r:test.local", "m.tag") == {"tags": {}}
    assert await store.get_room(database, ALICE, "!other:test.local", "m.tag") is None
    changes = await store.changes_since(database, ALICE, s1)
    assert [(c.room_id, c.type, c.stream_id) for c in changes] == \
        [("!r:test.local", "m.tag", s2), (None, "m.direct", s3)]
    assert await store.changes_since(database, "@bob:test.local", 0) == []


async def test_uiaa_sessions_and_expiry(database: Database) -> None:
    store = UiaaSessionStore()
    async with database.transaction() as conn:
        await store.create(conn, "s1", operation="register", user_id=None, op_digest="d", created_ts=10)
        await store.create(conn, "s2", operation="password", user_id=ALICE, op_digest="e", created_ts=50)
        await store.set_completed(conn, "s1", {"m.login.dummy": True})
    session = await store.get(database, "s1")
    assert session is not None and session.completed == {"m.login.dummy": True}
    async with database.transaction() as conn:
        expired = await store.pop_expired(conn, 20)
    assert [s.session_id for s in expired] == ["s1"]
    assert await store.get(database, "s1") is None
    assert await store.get(database, "s2") is not None


async def test_registration_tokens_reserve_and_complete(database: Database) -> None:
    store = RegistrationTokenStore()
    async with database.transaction() as conn:
        assert await store.create(conn, "once", uses_allowed=1, expiry_time=None)
        assert not await store.create(conn, "once", uses_allowed=5, expiry_time=None)
        await store.create(conn, "old", uses_allowed=None, expiry_time=100)
        assert await store.reserve(conn, "once", now_ms=0)
        assert not await store.reserve(conn, "once", now_ms=0)  # last use is pending
        await store.release(conn, "once")
        assert await store.reserve(conn, "once", now_ms=0)
        await store.complete(conn, "once")
        assert not await store.reserve(conn, "once", now_ms=0)
        assert await store.reserve(conn, "old", now_ms=99)
        assert not await store.reserve(conn, "old", now_ms=100)
        assert not await store.reserve(conn, "missing", now_ms=0)
    row = await store.get(database, "once")
    assert row is not None and (row.pending, row.completed) == (0, 1)
    assert [t.token for t in await store.list_all(database)] == ["old", "once"]
