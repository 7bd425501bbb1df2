"""Uploading, downloading and resolving filters.

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from homeserver.errors import BadJson, InvalidParam, NotFound, NotJson
from homeserver.storage.database import Database
from homeserver.storage.filters import FilterStore
from homeserver.sync.filters import DEFAULT_FILTER, Filter, parse_filter

# Filter IDs are decimal and short; anything else cannot be one of ours.
_MAX_ID_DIGITS = 18


def _dump(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _parse_id(filter_id: str) -> int | None:
    if not filter_id.isascii() or not filter_id.isdigit() or len(filter_id) > _MAX_ID_DIGITS:
        return None
    return int(filter_id)


class FilterService:
    """Filters never change once stored, so the parsed ones are cached (bounded LRU)
    without invalidation; /sync resolves its filter on every request. So are inline
    filters, by their text: a client long-polling sends the same one every time."""

    def __init__(self, db: Database, store: FilterStore, *, cache_size: int = 10_000,
                 inline_cache_size: int = 1_000):
        self._db = db
        self._store = store
        self._cache: OrderedDict[tuple[str, int], tuple[dict[str, Any], Filter]] = OrderedDict()
        self._cache_size = cache_size
        self._inline: OrderedDict[str, Filter] = OrderedDict()
        self._inline_size = inline_cache_size

    async def create(self, user_id: str, body: dict[str, Any]) -> str:
        """Validate and store; returns the filter ID (never starting with '{')."""
        parse_filter(body)
        async with self._db.transaction() as conn:
            filter_id = await self._store.add(conn, user_id, _dump(body))
        return str(filter_id)

    async def get_json(self, user_id: str, filter_id: str) -> dict[str, Any]:
        """The filter as uploaded; NotFound when this user has no such filter."""
        return (await self._load(user_id, filter_id))[0]

    async def get(self, user_id: str, filter_id: str) -> Filter:
        return (await self._load(user_id, filter_id))[1]

    async def _load(self, user_id: str, filter_id: str) -> tuple[dict[str, Any], Filter]:
        number = _parse_id(filter_id)
        if number is None:
            raise NotFound("No such filter")
        key = (user_id, number)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        raw = await self._store.get(self._db, user_id, number)
        if raw is None:
            raise NotFound("No such filter")
        body = json.loads(raw)
        entry = (body, parse_filter(body))
        self._cache[key] = entry
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return entry

    async def resolve_sync_param(self, user_id: str, param: str | None) -> Filter:
        """The `filter` query parameter of /sync: inline JSON when it starts with '{',
        otherwise the ID of a filter this user stored.

        An unknown ID is 400 M_INVALID_PARAM rather than 404: the /sync endpoint exists,
        one of its parameters is wrong (Synapse answers the same).
        """
        if param is None or param == "":
            return DEFAULT_FILTER
        if param.startswith("{"):
            return self._inline_filter(param)
        try:
            return await self.get(user_id, param)
        except NotFound:
            raise InvalidParam("No such filter") from None


    def _inline_filter(self, param: str) -> Filter:
        cached = self._inline.get(param)
        if cached is not None:
            self._inline.move_to_end(param)
            return cached
        try:
            body = json.loads(param, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise NotJson("The filter parameter is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadJson("A filter must be a JSON object")
        parsed = parse_filter(body)
        self._inline[param] = parsed
        if len(self._inline) > self._inline_size:
            self._inline.popitem(last=False)
        return parsed


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
