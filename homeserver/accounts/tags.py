"""Room tagging: the user's tags of a room, kept as the room's `m.tag` account data so
that /sync reports them like any other account data change.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-tagging
"""

from __future__ import annotations

from typing import Any

from homeserver.accounts.account_data import AccountData
from homeserver.accounts.requester import Requester
from homeserver.errors import BadJson, InvalidParam, NotFound

TAG_TYPE = "m.tag"
MAX_TAG_BYTES = 255


def _tags_of(content: dict[str, Any] | None) -> dict[str, Any]:
    # Anything may have been written through the generic account data API: read leniently.
    tags = content.get("tags") if content is not None else None
    if not isinstance(tags, dict):
        return {}
    return {name: value for name, value in tags.items() if isinstance(value, dict)}


def check_tag(tag: str, content: dict[str, Any]) -> None:
    if not tag or len(tag.encode()) > MAX_TAG_BYTES:
        raise InvalidParam("Invalid tag name")
    if "order" not in content:
        return
    order = content["order"]
    if isinstance(order, bool) or not isinstance(order, (int, float)):
        raise BadJson("'order' must be a number")
    if not 0 <= order <= 1:
        raise InvalidParam("'order' must be between 0 and 1")


class RoomTags:
    def __init__(self, account_data: AccountData):
        self._account_data = account_data

    async def get_tags(self, requester: Requester, user_id: str, room_id: str) -> dict[str, Any]:
        """GET /user/{userId}/rooms/{roomId}/tags — {tag: content}, empty when untagged."""
        try:
            content = await self._account_data.get(requester, user_id, TAG_TYPE, room_id)
        except NotFound:
            return {}
        return _tags_of(content)

    async def set_tag(self, requester: Requester, user_id: str, room_id: str, tag: str,
                      content: dict[str, Any]) -> None:
        """PUT /user/{userId}/rooms/{roomId}/tags/{tag} — adds or replaces one tag."""
        check_tag(tag, content)

        def add(stored: dict[str, Any] | None) -> dict[str, Any]:
            return {**(stored or {}), "tags": {**_tags_of(stored), tag: content}}

        await self._account_data.update_room(requester, user_id, room_id, TAG_TYPE, add)

    async def delete_tag(self, requester: Requester, user_id: str, room_id: str,
                         tag: str) -> None:
        """DELETE /user/{userId}/rooms/{roomId}/tags/{tag} — removing a tag the room does
        not have succeeds and changes nothing (as Synapse answers)."""

        def remove(stored: dict[str, Any] | None) -> dict[str, Any] | None:
            tags = _tags_of(stored)
            if tag not in tags:
                return None
            del tags[tag]
            return {**(stored or {}), "tags": tags}

        await self._account_data.update_room(requester, user_id, room_id, TAG_TYPE, remove)
