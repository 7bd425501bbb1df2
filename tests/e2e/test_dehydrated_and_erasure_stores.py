"""The dehydrated-device store and the deactivation erasure of E2EE rows, on both engines."""

from __future__ import annotations

from homeserver.storage.cross_signing import CrossSigningStore, SignatureRow
from homeserver.storage.database import Database
from homeserver.storage.dehydrated_devices import DehydratedDeviceStore
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2e_deactivation import E2eDeactivationStore
from homeserver.storage.e2e_keys import E2eKeyStore
from homeserver.storage.key_backup import BackupKeyRow, KeyBackupStore
from homeserver.storage.to_device import NewMessage, ToDeviceStore
from homeserver.storage.users import UserStore

ALICE = "@alice:test.local"
BOB = "@bob:test.local"
TABLES = ["e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "e2e_cross_signing_keys",
          "room_key_backup_keys", "room_key_backup_versions", "to_device_messages",
          "to_device_txns", "dehydrated_devices"]


async def _devices(db: Database, *pairs: tuple[str, str]) -> None:
    async with db.transaction() as conn:
        for user_id in {u for u, _ in pairs}:
            await UserStore().create(conn, user_id, None, created_ts=0)
        for user_id, device_id in pairs:
            await DeviceStore().upsert(conn, user_id, device_id, display_name=None, now_ms=0,
                                       ip=None)


async def test_one_dehydrated_device_per_user_gone_with_its_device(database: Database) -> None:
    await _devices(database, (ALICE, "OLD"), (ALICE, "NEW"), (ALICE, "PHONE"))
    store = DehydratedDeviceStore()
    assert await store.for_user(database, ALICE) is None
    async with database.transaction() as conn:
        await store.lock_user(conn, ALICE)
        await store.set(conn, ALICE, "OLD", '{"algorithm":"a"}', now_ms=5)
    row = await store.for_user(database, ALICE)
    assert row is not None and (row.device_id, row.device_data, row.created_ts) == \
        ("OLD", '{"algorithm":"a"}', 5)
    async with database.transaction() as conn:
        await store.set(conn, ALICE, "NEW", '{"algorithm":"b"}', now_ms=6)
    assert await store.is_dehydrated(database, ALICE, "NEW")
    assert not await store.is_dehydrated(database, ALICE, "OLD")
    assert not await store.is_dehydrated(database, ALICE, "PHONE")
    # Any deletion of the device row (DELETE /devices, logout/all, ...) unmarks it.
    async with database.transaction() as conn:
        await DeviceStore().delete(conn, ALICE, ["NEW"])
    assert await store.for_user(database, ALICE) is None


async def _count(db: Database, table: str) -> int:
    # Table names come from the constant list above, never from input.
    return int(await db.fetchval(f"SELECT COUNT(*) FROM {table}"))


async def test_erasure_deletes_only_the_users_rows(database: Database) -> None:
    await _devices(database, (ALICE, "A1"), (BOB, "B1"))
    keys, cs, backup, td = E2eKeyStore(), CrossSigningStore(), KeyBackupStore(), ToDeviceStore()
    async with database.transaction() as conn:
        for user, device in ((ALICE, "A1"), (BOB, "B1")):
            await keys.set_device_keys(conn, user, device, key_json="{}", ed25519="e",
                                       curve25519="c")
            await keys.add_one_time_keys(conn, user, device, [("alg", "K", "{}")], upload_seq=1)
            await keys.set_fallback_key(conn, user, device, "alg", "F", "{}")
            await cs.set_key(conn, user, "master", f"pub-{user}", "{}")
            version = await backup.create_version(conn, user, "m.megolm_backup.v1", "{}")
            await backup.put_key(conn, user, version, BackupKeyRow("!r:x", "s", 0, 0, False, "{}"))
            await td.add(conn, [NewMessage(user, device, 1 if user == ALICE else 2, BOB, "m.x",
                                           "{}")])
            await td.claim_txn(conn, user, device, "txn", 0)
            await DehydratedDeviceStore().set(conn, user, device, "{}", now_ms=0)
        # Alice signed Bob's master key, Bob signed Alice's, Bob signed his own device.
        await cs.add_signature(conn, SignatureRow(BOB, f"pub-{BOB}", ALICE, "ed25519:usk", "s1"))
        await cs.add_signature(conn, SignatureRow(ALICE, f"pub-{ALICE}", BOB, "ed25519:usk", "s2"))
        await cs.add_signature(conn, SignatureRow(BOB, "B1", BOB, "ed25519:ssk", "s3"))

    async with database.transaction() as conn:
        await E2eDeactivationStore().delete_user_data(conn, ALICE)

    for table in TABLES:
        assert await _count(database, table) == 1, table  # Bob's row only
    async with database.transaction() as conn:
        left = await cs.signatures_for_users(conn, [ALICE, BOB])
    assert [(s.target_key_id, s.signature) for s in left] == [("B1", "s3")]
    assert await keys.device_keys(database, BOB, "B1") is not None
