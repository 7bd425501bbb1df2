"""E2EE stores on both engines: one-time key claims under real concurrent transactions,
fallback keys, to-device acknowledgement and cascade on device deletion."""

from __future__ import annotations

import asyncio

from homeserver.storage.database import Database
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2e_keys import ClaimedKey, E2eKeyStore
from homeserver.storage.to_device import NewMessage, ToDeviceStore
from homeserver.storage.users import UserStore

USER = "@alice:test.local"


async def _device(db: Database, device_id: str = "DEV") -> None:
    async with db.transaction() as conn:
        await UserStore().create(conn, USER, None, created_ts=0)
        await DeviceStore().upsert(conn, USER, device_id, display_name=None, now_ms=0, ip=None)


async def test_concurrent_claims_in_parallel_transactions(database: Database) -> None:
    await _device(database)
    store = E2eKeyStore()
    async with database.transaction() as conn:
        await store.add_one_time_keys(conn, USER, "DEV", [
            ("signed_curve25519", f"K{i}", f'{{"key":"{i}"}}') for i in range(5)], upload_seq=1)

    async def claim() -> ClaimedKey | None:
        async with database.transaction() as conn:
            key = await store.claim_one_time_key(conn, USER, "DEV", "signed_curve25519")
            await asyncio.sleep(0.01)  # hold the row lock while others try
            return key

    claimed = [k for k in await asyncio.gather(*(claim() for _ in range(20))) if k is not None]
    ids = [k.key_id for k in claimed]
    assert len(ids) == len(set(ids)) == 5
    assert await store.one_time_key_counts(database, USER, "DEV") == {}


async def test_claim_order_follows_uploads(database: Database) -> None:
    await _device(database)
    store = E2eKeyStore()
    async with database.transaction() as conn:
        await store.add_one_time_keys(conn, USER, "DEV", [("alg", "Z", "{}")], upload_seq=1)
        await store.add_one_time_keys(conn, USER, "DEV", [("alg", "A", "{}")], upload_seq=2)
        first = await store.claim_one_time_key(conn, USER, "DEV", "alg")
    assert first is not None and first.key_id == "alg:Z"


async def test_device_deletion_cascades(database: Database) -> None:
    await _device(database)
    keys, to_device = E2eKeyStore(), ToDeviceStore()
    async with database.transaction() as conn:
        await keys.set_device_keys(conn, USER, "DEV", key_json="{}", ed25519="e", curve25519="c")
        await keys.add_one_time_keys(conn, USER, "DEV", [("alg", "A", "{}")], upload_seq=1)
        await keys.set_fallback_key(conn, USER, "DEV", "alg", "F", "{}")
        await to_device.add(conn, [NewMessage(USER, "DEV", 1, USER, "m.x", "{}")])
        await DeviceStore().delete(conn, USER, ["DEV"])
    assert await keys.device_keys(database, USER, "DEV") is None
    assert await keys.one_time_key_counts(database, USER, "DEV") == {}
    assert await keys.unused_fallback_key_types(database, USER, "DEV") == []
    assert await to_device.pending(database, USER, "DEV", after=0, up_to=10, limit=10) == []
