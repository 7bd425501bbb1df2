"""The federation listener's unauthenticated endpoints, in process."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from federation.app import build_federation_app
from federation.keys import KEY_VALIDITY_MS
from homeserver.clock import FakeClock
from homeserver.events.signing import (
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    verify_json,
)

SIGNING_KEY = generate_signing_key("k1")


async def _client(aiohttp_client: Any, clock: FakeClock) -> TestClient:
    app = build_federation_app("fed.test", SIGNING_KEY, clock, max_body_bytes=1024)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def test_server_keys_are_self_signed(aiohttp_client: Any, clock: FakeClock) -> None:
    client = await _client(aiohttp_client, clock)
    r = await client.get("/_matrix/key/v2/server")
    assert r.status == 200
    body = await r.json()
    verify_key = get_verify_key(SIGNING_KEY)
    assert body["server_name"] == "fed.test"
    assert body["verify_keys"] == {"ed25519:k1": {"key": encode_verify_key_base64(verify_key)}}
    assert body["old_verify_keys"] == {}
    assert body["valid_until_ts"] == clock.now_ms + KEY_VALIDITY_MS
    assert list(body["signatures"]) == ["fed.test"]
    verify_json(body, "fed.test", verify_key)


async def test_validity_moves_with_time(aiohttp_client: Any, clock: FakeClock) -> None:
    client = await _client(aiohttp_client, clock)
    first = await (await client.get("/_matrix/key/v2/server")).json()
    clock.advance(60_000)
    second = await (await client.get("/_matrix/key/v2/server")).json()
    assert second["valid_until_ts"] == first["valid_until_ts"] + 60_000
    verify_json(second, "fed.test", get_verify_key(SIGNING_KEY))


async def test_version(aiohttp_client: Any, clock: FakeClock) -> None:
    client = await _client(aiohttp_client, clock)
    r = await client.get("/_matrix/federation/v1/version")
    assert r.status == 200
    server = (await r.json())["server"]
    assert server["name"] == "DevNet" and server["version"]


async def test_unknown_endpoints_get_matrix_errors(aiohttp_client: Any, clock: FakeClock) -> None:
    client = await _client(aiohttp_client, clock)
    r = await client.get("/_matrix/federation/v1/unknown")
    assert r.status == 404
    assert (await r.json())["errcode"] == "M_UNRECOGNIZED"
    r = await client.post("/_matrix/key/v2/server", json={})
    assert r.status == 405
    assert (await r.json())["errcode"] == "M_UNRECOGNIZED"
