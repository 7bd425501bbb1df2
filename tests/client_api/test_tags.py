"""Room tagging: tags are the room's m.tag account data."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import bearer, error, register
from tests.spec_schemas import validate_request, validate_response

C = "/_matrix/client/v3"
ALICE = "@alice:test.local"
TAGS = "/user/{userId}/rooms/{roomId}/tags"


async def _ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def test_tags_put_get_delete(client: TestClient) -> None:
    alice = bearer((await register(client, "alice"))["access_token"])
    room = (await _ok(await client.post(f"{C}/createRoom", headers=alice, json={})))["room_id"]
    url = f"{C}/user/{ALICE}/rooms/{room}/tags"
    empty = await _ok(await client.get(url, headers=alice))
    assert empty == {"tags": {}}
    validate_response("tags.yaml", TAGS, "get", empty)

    for tag, content in (("u.work", {"order": 0.25}), ("m.favourite", {}), ("u.edge", {"order": 1}),
                         ("u.keep", {"order": 0, "org.example.colour": "red"})):
        validate_request("tags.yaml", TAGS + "/{tag}", "put", content)
        put = await _ok(await client.put(f"{url}/{tag}", headers=alice, json=content))
        validate_response("tags.yaml", TAGS + "/{tag}", "put", put)
    # Replacing a tag replaces its content.
    await _ok(await client.put(f"{url}/u.work", headers=alice, json={"order": 0.5}))
    body = await _ok(await client.get(url, headers=alice))
    validate_response("tags.yaml", TAGS, "get", body)
    assert body == {"tags": {"u.work": {"order": 0.5}, "m.favourite": {}, "u.edge": {"order": 1},
                             "u.keep": {"order": 0, "org.example.colour": "red"}}}

    deleted = await _ok(await client.delete(f"{url}/u.work", headers=alice))
    validate_response("tags.yaml", TAGS + "/{tag}", "delete", deleted)
    # Deleting a tag the room does not have is not an error.
    await _ok(await client.delete(f"{url}/u.never", headers=alice))
    body = await _ok(await client.get(url, headers=alice))
    assert set(body["tags"]) == {"m.favourite", "u.edge", "u.keep"}
    # Stored as the m.tag room account data event, which is what /sync reports.
    stored = await _ok(await client.get(f"{C}/user/{ALICE}/rooms/{room}/account_data/m.tag", headers=alice))
    assert stored == body
    synced = await _ok(await client.get(f"{C}/sync", headers=alice))
    room_data = synced["rooms"]["join"][room]["account_data"]["events"]
    assert {"type": "m.tag", "content": body} in room_data


async def test_tags_bad_input(client: TestClient) -> None:
    alice = bearer((await register(client, "alice"))["access_token"])
    bob = bearer((await register(client, "bob"))["access_token"])
    room = (await _ok(await client.post(f"{C}/createRoom", headers=alice, json={})))["room_id"]
    url = f"{C}/user/{ALICE}/rooms/{room}/tags"
    await _ok(await client.put(f"{url}/u.work", headers=alice, json={"order": 0.5}))
    for order in (1.5, -0.1, 100):
        await error(await client.put(f"{url}/u.x", headers=alice, json={"order": order}),
                    400, "M_INVALID_PARAM")
    bad_types: list[Any] = ["0.5", True, None, [0.5], {"n": 1}]
    for bad in bad_types:
        await error(await client.put(f"{url}/u.x", headers=alice, json={"order": bad}),
                    400, "M_BAD_JSON")
    await error(await client.put(f"{url}/u.x", headers=alice, data=b"[0.5]"), 400, "M_BAD_JSON")
    await error(await client.put(f"{url}/u.x", headers=alice, data=b"{nope"), 400, "M_NOT_JSON")
    await error(await client.put(f"{url}/{'t' * 300}", headers=alice, json={}), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{C}/user/{ALICE}/rooms/not-a-room/tags", headers=alice),
                400, "M_INVALID_PARAM")
    # Another user's tags can be neither read nor changed.
    await error(await client.get(url, headers=bob), 403, "M_FORBIDDEN")
    await error(await client.put(f"{url}/u.bob", headers=bob, json={}), 403, "M_FORBIDDEN")
    await error(await client.delete(f"{url}/u.work", headers=bob), 403, "M_FORBIDDEN")
    await error(await client.get(url), 401, "M_MISSING_TOKEN")
    assert await _ok(await client.get(url, headers=alice)) == {"tags": {"u.work": {"order": 0.5}}}


async def test_tags_survive_junk_written_as_account_data(client: TestClient) -> None:
    alice = bearer((await register(client, "alice"))["access_token"])
    room = "!somewhere:test.local"
    data_url = f"{C}/user/{ALICE}/rooms/{room}/account_data/m.tag"
    await _ok(await client.put(data_url, headers=alice, json={"tags": {"u.bad": 5, "u.ok": {}},
                                                             "org.example": 1}))
    url = f"{C}/user/{ALICE}/rooms/{room}/tags"
    assert await _ok(await client.get(url, headers=alice)) == {"tags": {"u.ok": {}}}
    await _ok(await client.put(f"{url}/u.new", headers=alice, json={}))
    stored = await _ok(await client.get(data_url, headers=alice))
    # Other keys of the event survive a tag change.
    assert stored == {"tags": {"u.ok": {}, "u.new": {}}, "org.example": 1}
