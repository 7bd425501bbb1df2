"""Behaviour every endpoint shares: routing errors, CORS, body limits, rate limits."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import Connect, MakeHs, bearer, error, register

V3 = "/_matrix/client/v3"


async def test_unknown_endpoint_is_404_unrecognized(client: TestClient) -> None:
    await error(await client.get(f"{V3}/no/such/endpoint"), 404, "M_UNRECOGNIZED")
    await error(await client.post("/_matrix/client/v99/login", json={}), 404, "M_UNRECOGNIZED")
    await error(await client.get("/not-matrix-at-all"), 404, "M_UNRECOGNIZED")


async def test_wrong_method_is_405_unrecognized(client: TestClient) -> None:
    await error(await client.put(f"{V3}/login", json={}), 405, "M_UNRECOGNIZED")
    await error(await client.get(f"{V3}/logout"), 405, "M_UNRECOGNIZED")
    await error(await client.delete(f"{V3}/account/whoami"), 405, "M_UNRECOGNIZED")
    await error(await client.get(f"{V3}/delete_devices"), 405, "M_UNRECOGNIZED")


async def test_cors_headers_and_preflight(client: TestClient) -> None:
    for path in (f"{V3}/login", f"{V3}/account/whoami", f"{V3}/devices/X", "/_matrix/client/versions"):
        resp = await client.options(path, headers={"Origin": "https://app.example",
                                                   "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "authorization"})
        assert resp.status in (200, 204)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    resp = await client.get(f"{V3}/login", headers={"Origin": "https://app.example"})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await client.get(f"{V3}/account/whoami")  # errors carry CORS headers too
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_oversized_bodies_are_413(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs(max_request_body_bytes=2048))
    reg = await register(client, "alice")
    big = {"padding": "x" * 4096}
    await error(await client.post(f"{V3}/login", json={"type": "m.login.password", **big}), 413, "M_TOO_LARGE")
    await error(await client.post(f"{V3}/register", json=big), 413, "M_TOO_LARGE")
    await error(await client.put(f"{V3}/user/@alice:test.local/account_data/x",
                                 headers=bearer(reg["access_token"]), json=big), 413, "M_TOO_LARGE")
    # Far beyond aiohttp's own cap as well, and with chunked encoding (no Content-Length).
    await error(await client.post(f"{V3}/login", data=b"x" * 100_000), 413, "M_TOO_LARGE")

    async def chunks():
        for _ in range(10):
            yield b"y" * 1024

    await error(await client.post(f"{V3}/login", data=chunks()), 413, "M_TOO_LARGE")


async def test_rate_limits(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs(rate_limits={
        "register": {"per_second": 0.01, "burst": 2},
        "register_available": {"per_second": 0.01, "burst": 1},
        "default": {"per_second": 0.01, "burst": 3},
    }))
    statuses = [(await client.post(f"{V3}/register", json={})).status for _ in range(3)]
    assert statuses[:2] == [401, 401]
    assert statuses[2] == 429
    assert (await client.get(f"{V3}/register/available?username=a")).status == 200
    body = await error(await client.get(f"{V3}/register/available?username=b"), 429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] >= 1
    for _ in range(3):
        assert (await client.get(f"{V3}/login")).status == 200
    await error(await client.get(f"{V3}/login"), 429, "M_LIMIT_EXCEEDED")


async def test_rate_limit_recovers_with_time(make_hs: MakeHs, connect: Connect, clock) -> None:
    client = await connect(make_hs(rate_limits={"login": {"per_second": 1, "burst": 1}}))
    payload = {"type": "m.login.password", "user": "x", "password": "y"}
    assert (await client.post(f"{V3}/login", json=payload)).status == 403
    body = await error(await client.post(f"{V3}/login", json=payload), 429, "M_LIMIT_EXCEEDED")
    clock.advance(body["retry_after_ms"])
    assert (await client.post(f"{V3}/login", json=payload)).status == 403


async def test_every_account_endpoint_rejects_bad_tokens(client: TestClient) -> None:
    endpoints = [
        ("GET", f"{V3}/account/whoami"), ("POST", f"{V3}/logout"), ("POST", f"{V3}/logout/all"),
        ("GET", f"{V3}/devices"), ("GET", f"{V3}/devices/X"), ("PUT", f"{V3}/devices/X"),
        ("DELETE", f"{V3}/devices/X"), ("POST", f"{V3}/delete_devices"),
        ("PUT", f"{V3}/profile/@a:test.local/displayname"),
        ("GET", f"{V3}/user/@a:test.local/account_data/t"),
        ("PUT", f"{V3}/user/@a:test.local/account_data/t"),
        ("GET", f"{V3}/user/@a:test.local/rooms/!r:t/account_data/t"),
        ("PUT", f"{V3}/user/@a:test.local/rooms/!r:t/account_data/t"),
        # Optional-auth endpoints still refuse a token that is present but wrong.
        ("POST", f"{V3}/account/password"), ("POST", f"{V3}/account/deactivate"),
    ]
    for method, path in endpoints:
        await error(await client.request(method, path, headers=bearer("bogus"), json={}),
                    401, "M_UNKNOWN_TOKEN")
        if "password" not in path and "deactivate" not in path:
            await error(await client.request(method, path, json={}), 401, "M_MISSING_TOKEN")
