"""What every table route does around its handler (client_api/registrar.py): CORS on
every answer, the Matrix error format, request IDs, and body reading however the body
arrives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonResponse
from homeserver.errors import NotFound
from homeserver.log_context import request_id
from tests.client_api.sync_harness import app_for, auth

V3 = "/_matrix/client/v3"


async def echo(request: ClientRequest) -> dict[str, Any]:
    return {"body": request.body, "params": dict(request.path_params), "request_id": request_id.get()}


async def created(request: ClientRequest) -> JsonResponse:
    return JsonResponse({"ok": True}, status=201, headers={"X-Extra": "1"})


async def crash(request: ClientRequest) -> dict[str, Any]:
    raise RuntimeError("boom")


async def missing(request: ClientRequest) -> dict[str, Any]:
    raise NotFound("no such thing")


async def redirect(request: ClientRequest) -> dict[str, Any]:
    raise web.HTTPFound("/elsewhere")


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(app_for([
        Endpoint("PUT", ("/v3/echo/{thing}/{rest:.*}",), echo),
        Endpoint("POST", ("/v3/created",), created, auth=Auth.NONE),
        Endpoint("GET", ("/v3/crash",), crash, auth=Auth.NONE),
        Endpoint("GET", ("/v3/missing",), missing, auth=Auth.NONE),
        Endpoint("GET", ("/v3/redirect",), redirect, auth=Auth.NONE),
    ]))


async def test_success_carries_cors_and_json_headers(client: Any) -> None:
    resp = await client.put(f"{V3}/echo/a%2Fb/c/d", json={"k": "é"}, headers=auth("a"))
    body = await resp.json()
    assert resp.status == 200
    assert body["body"] == {"k": "é"} and body["params"] == {"thing": "a/b", "rest": "c/d"}
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await client.post(f"{V3}/created")
    assert resp.status == 201 and await resp.json() == {"ok": True}
    assert resp.headers["X-Extra"] == "1" and resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_errors_are_matrix_errors_with_cors(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="client_api.registrar"):
        resp = await client.get(f"{V3}/crash")
    assert resp.status == 500
    assert await resp.json() == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)
    for path, status, errcode in ((f"{V3}/missing", 404, "M_NOT_FOUND"),
                                  (f"{V3}/echo/x/y", 401, "M_MISSING_TOKEN"),
                                  (f"{V3}/nowhere", 404, "M_UNRECOGNIZED"),
                                  (f"{V3}/created", 405, "M_UNRECOGNIZED")):
        resp = await client.put(path) if "echo" in path else await client.get(path)
        assert resp.status == status and (await resp.json())["errcode"] == errcode, path
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_non_error_http_exceptions_pass_through(client: Any) -> None:
    resp = await client.get(f"{V3}/redirect", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/elsewhere"


async def test_bodies_that_arrive_in_pieces(client: Any) -> None:
    async def slowly() -> AsyncIterator[bytes]:
        for piece in (b'{"a": ', b'[1, 2]', b"}"):
            yield piece
            await asyncio.sleep(0.01)

    # Chunked, and with a Content-Length but sent in three writes.
    resp = await client.put(f"{V3}/echo/x/", data=slowly(), headers=auth("a"))
    assert resp.status == 200 and (await resp.json())["body"] == {"a": [1, 2]}
    resp = await client.put(f"{V3}/echo/x/", data=slowly(),
                            headers={**auth("a"), "Content-Length": "13"})
    assert resp.status == 200 and (await resp.json())["body"] == {"a": [1, 2]}
    resp = await client.put(f"{V3}/echo/x/", data=b"  ", headers=auth("a"))
    assert resp.status == 200 and (await resp.json())["body"] == {}
    for bad, errcode in ((b'{"a": NaN}', "M_NOT_JSON"), (b"\xff", "M_NOT_JSON"), (b"[1]", "M_BAD_JSON")):
        resp = await client.put(f"{V3}/echo/x/", data=bad, headers=auth("a"))
        assert resp.status == 400 and (await resp.json())["errcode"] == errcode


async def test_each_request_has_its_own_id(client: Any) -> None:
    ids = []
    for _ in range(2):
        resp = await client.put(f"{V3}/echo/x/", json={}, headers=auth("a"))
        ids.append((await resp.json())["request_id"])
    assert ids[0] != ids[1]
    assert all(i.startswith("PUT-") and len(i) == len("PUT-") + 8 for i in ids)
    assert request_id.get() == "-"
