"""Media tests run on the client API's in-process server fixtures (both engines)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import bearer, client, connect, make_hs  # noqa: F401

UPLOAD = "/_matrix/media/v3/upload"
MEDIA = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"


async def upload(http: TestClient, token: str, data: Any, content_type: str = "text/plain",
                 filename: str | None = None) -> str:
    """Upload and return the media ID (asserting success)."""
    params = {"filename": filename} if filename is not None else {}
    resp = await http.post(UPLOAD, data=data, params=params,
                             headers={**bearer(token), "Content-Type": content_type})
    body = await resp.json()
    assert resp.status == 200, body
    server, _, media_id = body["content_uri"].removeprefix("mxc://").partition("/")
    assert server == "test.local"
    return media_id
