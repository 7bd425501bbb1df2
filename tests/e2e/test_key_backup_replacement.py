"""Key backup on both engines: the replacement rule, also under concurrent uploads.

Spec: https://spec.matrix.org/v1.19/client-server-api/#backup-algorithm-mmegolm_backupv1curve25519-aes-sha2
— a stored session key is replaced only by a better one: verified beats unverified,
then a lower first_message_index, then a lower forwarded_count.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from homeserver.e2e.key_backup import MEGOLM_BACKUP_V1, KeyBackup
from homeserver.storage.database import Database
from homeserver.storage.key_backup import BackupKeyRow, KeyBackupStore

USER = "@alice:test.local"
ROOMS = ("!a:test.local", "!b:test.local")
SESSIONS = ("s0", "s1", "s2")
Quality = tuple[bool, int, int]  # is_verified, first_message_index, forwarded_count


def rank(quality: Quality) -> tuple[bool, int, int]:
    """The spec's order as a sort key: the smallest is the key the server keeps."""
    verified, first, forwarded = quality
    return (not verified, first, forwarded)


# Best first: the adversarial order for a read-then-write, where a worse upload that read
# "nothing stored" before the best one committed would then overwrite it.
QUALITIES: list[Quality] = sorted(itertools.product((True, False), range(3), range(3)),
                                  key=rank)


def key_data(quality: Quality) -> dict[str, Any]:
    verified, first, forwarded = quality
    tag = repr(quality)
    return {"first_message_index": first, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ciphertext": tag, "ephemeral": tag, "mac": tag}}


def key_row(session_id: str, quality: Quality, data: str = "{}") -> BackupKeyRow:
    verified, first, forwarded = quality
    return BackupKeyRow("!r:x", session_id, first, forwarded, verified, data)


async def _backup(database: Database) -> tuple[KeyBackup, str]:
    backup = KeyBackup(database, KeyBackupStore())
    return backup, await backup.create_version(USER, MEGOLM_BACKUP_V1, {"public_key": "k"})


def assert_etags_consistent(results: list[dict[str, Any]], before: dict[str, Any],
                            after: dict[str, Any]) -> None:
    """Each upload that stored something reports a new etag of its own, every other one
    an etag already reported (the etag is opaque to clients; ours counts storing writes);
    and an etag always comes with the same count, the final one with the final count."""
    first, last = int(before["etag"]), int(after["etag"])
    assert {int(r["etag"]) for r in results} | {first} == set(range(first, last + 1))
    assert 1 <= last - first <= len(results)
    counts: dict[str, set[int]] = {}
    for result in results:
        counts.setdefault(result["etag"], set()).add(result["count"])
    assert all(len(c) == 1 for c in counts.values()), counts
    assert counts[after["etag"]] == {after["count"]}


async def test_concurrent_uploads_of_one_session_keep_the_best(database: Database) -> None:
    backup, version = await _backup(database)
    before = await backup.get_version(USER, version)
    results: list[dict[str, Any]] = []
    # Several rounds, a new session each: one round may by chance not interleave.
    for n in range(8):
        session = f"s{n}"
        results += await asyncio.gather(*(
            backup.put_keys(USER, version, {ROOMS[0]: {session: key_data(q)}})
            for q in QUALITIES))
        stored = await backup.get_keys(USER, version, room_id=ROOMS[0], session_id=session)
        assert stored == key_data(QUALITIES[0]), f"round {n}"
    after = await backup.get_version(USER, version)
    assert after["count"] == 8
    assert_etags_consistent(results, before, after)

    # Nothing better arrives: neither an equal nor a worse key changes the etag.
    for quality in (QUALITIES[0], QUALITIES[-1]):
        again = await backup.put_keys(USER, version, {ROOMS[0]: {"s0": key_data(quality)}})
        assert again == {"etag": after["etag"], "count": 8}


async def test_concurrent_uploads_and_deletions_in_any_order(database: Database) -> None:
    """Uploads of all sessions at once, half in reverse order, and deletions of one room
    among them: on PostgreSQL writers locking key rows in different orders would deadlock."""
    backup, version = await _backup(database)
    before = await backup.get_version(USER, version)
    pairs = [(r, s) for r in ROOMS for s in SESSIONS]

    async def upload(quality: Quality, reverse: bool) -> dict[str, Any]:
        sessions: dict[str, dict[str, Any]] = {}
        for room_id, session_id in reversed(pairs) if reverse else pairs:
            sessions.setdefault(room_id, {})[session_id] = key_data(quality)
        return await backup.put_keys(USER, version, sessions)

    writes = [upload(q, reverse) for q in QUALITIES for reverse in (False, True)]
    for i in range(4, len(writes), 8):
        writes.insert(i, backup.delete_keys(USER, version, room_id=ROOMS[1]))
    results = await asyncio.gather(*writes)

    stored = await backup.get_keys(USER, version)
    best = key_data(QUALITIES[0])
    # The first room is never deleted from: its best keys stay.
    assert stored["rooms"][ROOMS[0]] == {"sessions": dict.fromkeys(SESSIONS, best)}
    # The other holds, per session, whatever the uploads after the last deletion left.
    for data in stored["rooms"].get(ROOMS[1], {"sessions": {}})["sessions"].values():
        assert data in [key_data(q) for q in QUALITIES]
    after = await backup.get_version(USER, version)
    assert after["count"] == sum(len(r["sessions"]) for r in stored["rooms"].values())
    assert_etags_consistent(results, before, after)


async def test_concurrent_put_key_transactions(database: Database) -> None:
    """The store's upsert alone, without the service's version lock, applies the rule
    atomically: concurrent transactions, best first, and the best stays."""
    store = KeyBackupStore()
    async with database.transaction() as conn:
        version = await store.create_version(conn, USER, MEGOLM_BACKUP_V1, "{}")

    async def put(session_id: str, quality: Quality) -> bool:
        async with database.transaction() as conn:
            return await store.put_key(conn, USER, version, key_row(session_id, quality))

    for n in range(8):
        stored = await asyncio.gather(*(put(f"s{n}", q) for q in QUALITIES))
        key = await store.get_key(database, USER, version, "!r:x", f"s{n}")
        assert key == key_row(f"s{n}", QUALITIES[0]), f"round {n}"
        assert stored[0] is True  # whichever ran first, the best was better


async def test_replacement_rule_for_every_pair(database: Database) -> None:
    """Every ordered pair of qualities: the store keeps the better of the two (the stored
    one on a tie) and says whether it stored the new one."""
    store = KeyBackupStore()
    pairs = list(itertools.product(QUALITIES, QUALITIES))
    async with database.transaction() as conn:
        version = await store.create_version(conn, USER, MEGOLM_BACKUP_V1, "{}")
        for i, (old, _) in enumerate(pairs):
            assert await store.put_key(conn, USER, version, key_row(f"s{i}", old, '"old"'))
    async with database.transaction() as conn:
        stored_new = [await store.put_key(conn, USER, version, key_row(f"s{i}", new, '"new"'))
                      for i, (_, new) in enumerate(pairs)]
    keys = {k.session_id: k for k in await store.all_keys(database, USER, version)}
    for i, (old, new) in enumerate(pairs):
        better = rank(new) < rank(old)
        assert stored_new[i] is better, (old, new)
        key = keys[f"s{i}"]
        kept = new if better else old
        assert (key.is_verified, key.first_message_index, key.forwarded_count) == kept
        assert key.session_data == ('"new"' if better else '"old"')
