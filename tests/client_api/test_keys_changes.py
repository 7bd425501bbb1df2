"""Device-list tracking: GET /keys/changes and the `device_list_changes` function /sync uses."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.e2e.device_lists import DEVICE_LISTS
from homeserver.server import Homeserver
from homeserver.sync.tokens import SyncToken
from tests.client_api.conftest import Connect, MakeHs, error
from tests.client_api.e2e_helpers import C, Device, device_lists_token, ok
from tests.spec_schemas import validate_response


@pytest.fixture
async def hs_client(make_hs: MakeHs, connect: Connect) -> tuple[Homeserver, TestClient]:
    hs = make_hs()
    return hs, await connect(hs)


async def test_key_upload_seen_by_room_members_only(hs_client: Any) -> None:
    hs, client = hs_client
    alice, bob, carol = [await Device.register(client, n) for n in ("alice", "bob", "carol")]
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    since = await device_lists_token(hs)
    await bob.upload_identity()
    await carol.upload_identity()  # shares no room with alice
    to = await device_lists_token(hs)
    changes = await alice.changes(since, to)
    validate_response("keys.yaml", "/keys/changes", "get", changes)
    assert changes == {"changed": [bob.user_id], "left": []}
    # Own device changes are reported too (a new device of one's own).
    assert (await carol.changes(since, to))["changed"] == [carol.user_id]
    # Uploading only one-time keys changes nothing others must re-download.
    await bob.upload(one_time_keys=bob.one_time_keys(2))
    assert await alice.changes(to, await device_lists_token(hs)) == {"changed": [], "left": []}


async def test_joins_and_leaves(hs_client: Any) -> None:
    hs, client = hs_client
    alice, bob = [await Device.register(client, n) for n in ("alice", "bob")]
    room = await alice.create_room(preset="public_chat")
    other = await alice.create_room(preset="public_chat")
    start = await device_lists_token(hs)
    await bob.join(room)
    joined = await device_lists_token(hs)
    # Newly sharing a room: each must download the other's keys.
    assert (await alice.changes(start, joined))["changed"] == [bob.user_id]
    assert alice.user_id in (await bob.changes(start, joined))["changed"]
    await bob.join(other)
    await bob.leave(room)
    still_shared = await device_lists_token(hs)
    assert (await alice.changes(joined, still_shared))["left"] == []
    await bob.leave(other)
    gone = await device_lists_token(hs)
    assert await alice.changes(still_shared, gone) == {"changed": [], "left": [bob.user_id]}
    assert await bob.changes(still_shared, gone) == {"changed": [], "left": [alice.user_id]}
    # A profile change (join -> join) is no device-list change.
    await bob.join(room)
    rejoined = await device_lists_token(hs)
    await ok(await client.put(f"{C}/profile/{bob.user_id}/displayname", headers=bob.headers,
                              json={"displayname": "Bobby"}))
    assert (await alice.changes(rejoined, await device_lists_token(hs)))["changed"] == []
    # The function sync calls.
    changed, left = await hs.device_lists.device_list_changes(
        alice.user_id, SyncToken.parse(start)[DEVICE_LISTS],
        await hs.device_lists.current_position())
    assert changed == {bob.user_id} and left == set()


async def test_device_changes_of_someone_who_left_are_not_sent(hs_client: Any) -> None:
    hs, client = hs_client
    alice, bob = [await Device.register(client, n) for n in ("alice", "bob")]
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    since = await device_lists_token(hs)
    await bob.leave(room)
    await bob.upload_identity()
    changes = await alice.changes(since, await device_lists_token(hs))
    assert changes == {"changed": [], "left": [bob.user_id]}


async def test_cross_signing_and_new_device_bump(hs_client: Any) -> None:
    hs, client = hs_client
    alice = await Device.register(client, "alice")
    since = await device_lists_token(hs)
    phone = await alice.login_again()
    await phone.upload_identity()
    assert (await alice.changes(since, await device_lists_token(hs)))["changed"] == [alice.user_id]


@pytest.mark.parametrize("query", [
    "", "from=s0", "to=s0", "from=garbage&to=s0", "from=s0&to=s-1",
])
async def test_changes_bad_tokens(client: TestClient, query: str) -> None:
    alice = await Device.register(client, "alice")
    resp = await client.get(f"{C}/keys/changes?{query}", headers=alice.headers)
    body = await resp.json()
    assert resp.status == 400, body
    assert body["errcode"] in ("M_MISSING_PARAM", "M_INVALID_PARAM")


async def test_changes_needs_auth(client: TestClient) -> None:
    await error(await client.get(f"{C}/keys/changes?from=s0&to=s0"), 401, "M_MISSING_TOKEN")
