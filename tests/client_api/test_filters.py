"""POST/GET /user/{userId}/filter through a real in-process server."""

from __future__ import annotations

from typing import Any

import pytest

from client_api.filters import Filters
from homeserver.storage.database import Database
from homeserver.storage.filters import FilterStore
from homeserver.sync.filter_service import FilterService
from tests.client_api.sync_harness import app_for, auth

FILTER = {"room": {"timeline": {"limit": 10, "types": ["m.room.*"]}}, "event_fields": ["type"]}


@pytest.fixture
async def client(aiohttp_client: Any, database: Database) -> Any:
    return await aiohttp_client(app_for(Filters(FilterService(database, FilterStore())).endpoints()))


async def test_upload_and_download(client: Any) -> None:
    resp = await client.post("/_matrix/client/v3/user/@a:x/filter", json=FILTER, headers=auth("a"))
    assert resp.status == 200
    filter_id = (await resp.json())["filter_id"]
    assert isinstance(filter_id, str) and not filter_id.startswith("{")
    resp = await client.get(f"/_matrix/client/v3/user/@a:x/filter/{filter_id}", headers=auth("a"))
    assert resp.status == 200 and await resp.json() == FILTER
    resp = await client.get(f"/_matrix/client/r0/user/@a:x/filter/{filter_id}", headers=auth("a"))
    assert resp.status == 200


async def test_other_users_filters_are_forbidden(client: Any) -> None:
    resp = await client.post("/_matrix/client/v3/user/@a:x/filter", json=FILTER, headers=auth("b"))
    assert resp.status == 403 and (await resp.json())["errcode"] == "M_FORBIDDEN"
    resp = await client.post("/_matrix/client/v3/user/@a:x/filter", json=FILTER, headers=auth("a"))
    filter_id = (await resp.json())["filter_id"]
    resp = await client.get(f"/_matrix/client/v3/user/@a:x/filter/{filter_id}", headers=auth("b"))
    assert resp.status == 403


async def test_unknown_filter_is_404(client: Any) -> None:
    for filter_id in ("0", "999", "abc"):
        resp = await client.get(f"/_matrix/client/v3/user/@a:x/filter/{filter_id}", headers=auth("a"))
        assert resp.status == 404 and (await resp.json())["errcode"] == "M_NOT_FOUND"


async def test_invalid_filters(client: Any) -> None:
    url = "/_matrix/client/v3/user/@a:x/filter"
    resp = await client.post(url, json={"room": {"timeline": {"limit": "ten"}}}, headers=auth("a"))
    assert resp.status == 400 and (await resp.json())["errcode"] == "M_BAD_JSON"
    resp = await client.post(url, data=b"{not json", headers=auth("a"))
    assert resp.status == 400 and (await resp.json())["errcode"] == "M_NOT_JSON"
    resp = await client.post(url, json=FILTER)
    assert resp.status == 401 and (await resp.json())["errcode"] == "M_MISSING_TOKEN"
