"""Server-side search.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-search .
"""

from __future__ import annotations

from typing import Any

from client_api.endpoint import ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import optional, require
from homeserver.errors import BadJson, InvalidParam
from homeserver.search.criteria import (
    ALL_KEYS,
    DEFAULT_CONTEXT,
    GROUP_KEYS,
    ORDERS,
    EventContextSpec,
    RoomEventsCriteria,
)
from homeserver.search.room_events import RoomEventSearch
from homeserver.sync.filters import parse_room_event_filter

CATEGORIES = ("room_events",)


def _non_negative(body: JsonDict, key: str, default: int) -> int:
    value: int = optional(body, key, int, default)
    if value < 0:
        raise InvalidParam(f"'{key}' must not be negative")
    return value


def _event_context(value: Any) -> EventContextSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadJson("'event_context' must be an object")
    return EventContextSpec(
        before_limit=_non_negative(value, "before_limit", DEFAULT_CONTEXT),
        after_limit=_non_negative(value, "after_limit", DEFAULT_CONTEXT),
        include_profile=optional(value, "include_profile", bool, False))


def _group_by(criteria: JsonDict) -> tuple[str, ...]:
    groupings = optional(criteria, "groupings", dict, {})
    keys = []
    for group in optional(groupings, "group_by", list, []):
        if not isinstance(group, dict) or group.get("key") not in GROUP_KEYS:
            raise BadJson(f"'groupings.group_by' entries must be {{\"key\": one of {GROUP_KEYS}}}")
        keys.append(group["key"])
    return tuple(dict.fromkeys(keys))


def parse_room_events(criteria: JsonDict) -> RoomEventsCriteria:
    keys = optional(criteria, "keys", list, list(ALL_KEYS))
    if not keys or not all(k in ALL_KEYS for k in keys):
        raise BadJson(f"'keys' must be a non-empty list of {', '.join(ALL_KEYS)}")
    order_by = optional(criteria, "order_by", str, "rank")
    if order_by not in ORDERS:
        raise BadJson("'order_by' must be 'rank' or 'recent'")
    if optional(criteria, "filter", dict) is not None:
        limit = criteria["filter"].get("limit")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit < 1:
            raise InvalidParam("'filter.limit' must be at least 1")
    return RoomEventsCriteria(
        search_term=require(criteria, "search_term", str),
        keys=tuple(dict.fromkeys(keys)),
        filter=parse_room_event_filter(criteria.get("filter"), "filter"),
        order_by=order_by,
        event_context=_event_context(criteria.get("event_context")),
        include_state=optional(criteria, "include_state", bool, False),
        group_by=_group_by(criteria))


class Search:
    def __init__(self, room_events: RoomEventSearch):
        self._room_events = room_events

    async def search(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/search"""
        categories = require(request.body, "search_categories", dict)
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown:
            raise BadJson(f"Unknown search categories: {', '.join(unknown)}")
        results: JsonDict = {}
        if "room_events" in categories:
            room_events = require(categories, "room_events", dict)
            results["room_events"] = await self._room_events.search(
                request.user.user_id, request.user.device_id, parse_room_events(room_events),
                request.query.get("next_batch"))
        return {"search_categories": results}

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("POST", v3("/search"), self.search, rate_limit="default")]
