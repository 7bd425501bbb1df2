"""The published room directory: GET/POST /publicRooms, GET/PUT /directory/list/room/{roomId}.

Spec: https://spec.matrix.org/v1.19/client-server-api/#published-room-directory .
Entries are read from current state when listed, so they are never stale. Only rooms a
visitor could actually look into are listed (join rule public or knock, or
world-readable history): publishing an invite-only room would only show a dead end.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

import attrs

from homeserver.errors import Forbidden, InvalidParam, NotFound
from homeserver.events.redaction import redact
from homeserver.rooms.access import NOT_IN_ROOM, RoomAccess
from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection, Database
from homeserver.storage.room_directory import RoomDirectoryStore
from homeserver.types import is_valid_server_name

JsonDict = dict[str, Any]
LISTABLE_JOIN_RULES = ("public", "knock", "knock_restricted")
MAX_LIMIT = 1000
# A room_types entry of None selects rooms without a type (spec: POST /publicRooms).
NO_TYPE = None


@attrs.frozen
class PublicRoomsQuery:
    limit: int | None = None
    since: str | None = None
    search_term: str | None = None
    # None: any type; otherwise the wanted m.room.create `type`s (None for untyped rooms).
    room_types: tuple[str | None, ...] | None = None
    server: str | None = None


def _sort_key(entry: JsonDict) -> tuple[int, str]:
    # Largest rooms first (what clients have always shown), then a stable tiebreak.
    return (-entry["num_joined_members"], entry["room_id"])


def encode_since(direction: str, entry: JsonDict) -> str:
    raw = json.dumps([entry["num_joined_members"], entry["room_id"]], separators=(",", ":"))
    return direction + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_since(token: str) -> tuple[str, tuple[int, str]]:
    """('n' | 'p', sort key of the entry the page starts after / ends before)."""
    direction, body = token[:1], token[1:]
    try:
        joined, room_id = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if direction not in ("n", "p") or not isinstance(joined, int) or not isinstance(room_id, str):
            raise ValueError(token)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidParam("Invalid 'since' token") from None
    return direction, (-joined, room_id)


class RoomDirectory:
    def __init__(self, db: Database, stores: RoomStores, store: RoomDirectoryStore,
                 access: RoomAccess, loader: ClientEventLoader, *, server_name: str):
        self._db = db
        self._stores = stores
        self._store = store
        self._access = access
        self._loader = loader
        self._server_name = server_name

    async def get_visibility(self, room_id: str) -> str:
        """GET /directory/list/room/{roomId}"""
        async with self._db.connection() as conn:
            room = await self._stores.rooms.get(conn, room_id)
        if room is None:
            raise NotFound("Room not found")
        return "public" if room.is_public else "private"

    async def set_visibility(self, user_id: str, room_id: str, visibility: str, *,
                             is_admin: bool = False) -> None:
        """PUT /directory/list/room/{roomId} — by server admins, or joined members with
        the power to set m.room.canonical_alias (the room's public face), as Synapse does."""
        async with self._db.transaction() as conn:
            if await self._stores.rooms.get(conn, room_id) is None:
                raise NotFound("Room not found")
            if not is_admin:
                await self._check_may_publish(conn, user_id, room_id)
            await self._stores.rooms.set_public(conn, room_id, visibility == "public")

    async def _check_may_publish(self, conn: Connection, user_id: str, room_id: str) -> None:
        membership = await self._access.membership(conn, room_id, user_id)
        if membership is None or membership.membership != "join":
            raise Forbidden(NOT_IN_ROOM)
        power = await self._access.power(conn, room_id)
        if power.level(user_id) < power.required("m.room.canonical_alias", True):
            raise Forbidden("You need the power to change the room's canonical alias to publish it")

    async def list_public_rooms(self, query: PublicRoomsQuery) -> JsonDict:
        """GET/POST /publicRooms"""
        if query.server is not None and query.server != self._server_name:
            if not is_valid_server_name(query.server):
                raise InvalidParam("Invalid 'server'")
            # Another server's directory is fetched over federation, not available here.
            raise NotFound(f"The room directory of {query.server} is not reachable from this server")
        async with self._db.connection() as conn:
            entries = await self._entries(conn)
        total = len(entries)
        entries = [e for e in entries if _matches(e, query)]
        entries.sort(key=_sort_key)
        body = _page(entries, query)
        body["total_room_count_estimate"] = total
        return body

    async def _entries(self, conn: Connection) -> list[JsonDict]:
        state = await self._store.published_state(conn)
        joined = await self._store.joined_counts(conn)
        event_ids = [e for types in state.values() for e in types.values()]
        stored = await self._stores.events.get_many(conn, event_ids)
        pdus = [s.pdu for s in stored.values()]
        redacted = await self._loader.applied_redactions(conn, pdus)
        contents: dict[str, JsonDict] = {}
        for pdu in pdus:
            source = redact(pdu.get_json(), pdu.room_version) if pdu.event_id in redacted else pdu.get_json()
            content = source.get("content")
            contents[pdu.event_id] = content if isinstance(content, dict) else {}
        entries = []
        for room_id, types in state.items():
            room_state = {t: contents.get(event_id, {}) for t, event_id in types.items()}
            entry = directory_entry(room_id, room_state, joined.get(room_id, 0))
            if entry.get("join_rule") in LISTABLE_JOIN_RULES or entry["world_readable"]:
                entries.append(entry)
        return entries


def directory_entry(room_id: str, state: dict[str, JsonDict], num_joined: int) -> JsonDict:
    """A PublishedRoomsChunk from the contents of the room's current state events."""
    def text(event_type: str, key: str) -> str | None:
        value = state.get(event_type, {}).get(key)
        return value if isinstance(value, str) else None

    entry: JsonDict = {
        "room_id": room_id,
        "num_joined_members": num_joined,
        "world_readable": text("m.room.history_visibility", "history_visibility") == "world_readable",
        "guest_can_join": text("m.room.guest_access", "guest_access") == "can_join",
    }
    optional = {
        "name": text("m.room.name", "name"),
        "topic": text("m.room.topic", "topic"),
        "canonical_alias": text("m.room.canonical_alias", "alias"),
        "avatar_url": text("m.room.avatar", "url"),
        "join_rule": text("m.room.join_rules", "join_rule"),
        "room_type": text("m.room.create", "type"),
    }
    if optional["canonical_alias"] is not None and not optional["canonical_alias"].startswith("#"):
        optional["canonical_alias"] = None
    if optional["avatar_url"] is not None and not optional["avatar_url"].startswith("mxc://"):
        optional["avatar_url"] = None
    entry.update({k: v for k, v in optional.items() if v})
    return entry


def _matches(entry: JsonDict, query: PublicRoomsQuery) -> bool:
    if query.room_types is not None and entry.get("room_type", NO_TYPE) not in query.room_types:
        return False
    term = (query.search_term or "").strip().casefold()
    if not term:
        return True
    if entry["room_id"] == query.search_term:
        return True
    return any(term in entry.get(k, "").casefold() for k in ("name", "topic", "canonical_alias"))


def _page(entries: Sequence[JsonDict], query: PublicRoomsQuery) -> JsonDict:
    """One page of the sorted entries, after/before the `since` token's entry."""
    start, end = 0, len(entries)
    if query.since is not None:
        direction, key = decode_since(query.since)
        split = next((i for i, e in enumerate(entries) if _sort_key(e) >= key), len(entries))
        if direction == "n":
            start = split + (1 if split < len(entries) and _sort_key(entries[split]) == key else 0)
        else:
            end = split
    limit = min(query.limit, MAX_LIMIT) if query.limit is not None else MAX_LIMIT
    if query.since is not None and query.since.startswith("p"):
        start = max(0, end - limit)
    else:
        end = min(end, start + limit)
    page = list(entries[start:end])
    body: JsonDict = {"chunk": page}
    if page and end < len(entries):
        body["next_batch"] = encode_since("n", page[-1])
    if page and start > 0:
        body["prev_batch"] = encode_since("p", page[0])
    return body
