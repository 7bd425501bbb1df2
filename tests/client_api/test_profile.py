"""Profiles: reads by anyone, writes only by the owner."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import bearer, error, register
from tests.spec_schemas import validate_response

V3 = "/_matrix/client/v3"
ALICE = "@alice:test.local"


async def test_profile_roundtrip(client: TestClient) -> None:
    reg = await register(client, "alice")
    headers = bearer(reg["access_token"])
    body = await (await client.get(f"{V3}/profile/{ALICE}")).json()
    assert body == {"displayname": "alice"}
    for key, value in (("displayname", "Alice A."), ("avatar_url", "mxc://test.local/abc"),
                       ("m.tz", "Europe/Paris"), ("org.example.custom", {"any": ["json", 1]})):
        resp = await client.put(f"{V3}/profile/{ALICE}/{key}", headers=headers, json={key: value})
        assert resp.status == 200, await resp.json()
        validate_response("profile.yaml", "/profile/{userId}/{keyName}", "put", await resp.json())
        field = await (await client.get(f"{V3}/profile/{ALICE}/{key}")).json()
        assert field == {key: value}
        validate_response("profile.yaml", "/profile/{userId}/{keyName}", "get", field)
    profile = await (await client.get(f"{V3}/profile/{ALICE}")).json()
    validate_response("profile.yaml", "/profile/{userId}", "get", profile)
    assert profile["displayname"] == "Alice A." and profile["avatar_url"] == "mxc://test.local/abc"
    resp = await client.delete(f"{V3}/profile/{ALICE}/m.tz", headers=headers)
    assert resp.status == 200
    await error(await client.get(f"{V3}/profile/{ALICE}/m.tz"), 404, "M_NOT_FOUND")
    # null clears the typed string fields rather than storing a null.
    await client.put(f"{V3}/profile/{ALICE}/avatar_url", headers=headers, json={"avatar_url": None})
    assert "avatar_url" not in await (await client.get(f"{V3}/profile/{ALICE}")).json()


async def test_profile_bad_input(client: TestClient) -> None:
    reg = await register(client, "alice")
    bob = await register(client, "bob")
    headers = bearer(reg["access_token"])
    url = f"{V3}/profile/{ALICE}/displayname"
    await error(await client.get(f"{V3}/profile/@nobody:test.local"), 404, "M_NOT_FOUND")
    await error(await client.get(f"{V3}/profile/@someone:remote.org"), 404, "M_NOT_FOUND")
    await error(await client.get(f"{V3}/profile/not-a-user-id"), 400, "M_INVALID_PARAM")
    await error(await client.get(f"{V3}/profile/@nobody:test.local/displayname"), 404, "M_NOT_FOUND")
    await error(await client.put(url, headers=bearer(bob["access_token"]), json={"displayname": "Evil"}),
                403, "M_FORBIDDEN")
    await error(await client.delete(url, headers=bearer(bob["access_token"])), 403, "M_FORBIDDEN")
    await error(await client.put(url, json={"displayname": "x"}), 401, "M_MISSING_TOKEN")
    await error(await client.put(url, headers=headers, json={}), 400, "M_MISSING_PARAM")
    await error(await client.put(url, headers=headers, json={"displayname": 5}), 400, "M_BAD_JSON")
    await error(await client.put(url, headers=headers, json={"displayname": "x" * 300}), 400, "M_BAD_JSON")
    await error(await client.put(url, headers=headers, data=b"nope"), 400, "M_NOT_JSON")
    await error(await client.put(f"{V3}/profile/{ALICE}/avatar_url", headers=headers,
                                 json={"avatar_url": "https://example.org/a.png"}), 400, "M_INVALID_PARAM")
    await error(await client.put(f"{V3}/profile/{ALICE}/Bad-Key", headers=headers,
                                 json={"Bad-Key": 1}), 400, "M_INVALID_PARAM")
    long_key = "org." + "k" * 300
    await error(await client.put(f"{V3}/profile/{ALICE}/{long_key}", headers=headers,
                                 json={long_key: 1}), 400, "M_KEY_TOO_LARGE")
    big = "v" * 40_000
    assert (await client.put(f"{V3}/profile/{ALICE}/org.example.a", headers=headers,
                             json={"org.example.a": big})).status == 200
    await error(await client.put(f"{V3}/profile/{ALICE}/org.example.b", headers=headers,
                                 json={"org.example.b": big}), 400, "M_PROFILE_TOO_LARGE")
