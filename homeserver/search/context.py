"""Context around a search result (`event_context`) and rooms' current state
(`include_state`), both limited to what the searcher may see."""

from __future__ import annotations

from typing import Any

from homeserver.rooms.event_loader import ClientEventLoader
from homeserver.rooms.stores import RoomStores
from homeserver.rooms.tokens import stream_token
from homeserver.rooms.visibility import VisibilityFilter
from homeserver.search.criteria import MAX_CONTEXT, EventContextSpec
from homeserver.storage.database import Connection
from homeserver.storage.events import StoredEvent

JsonDict = dict[str, Any]
_END = 2**62


class ContextLoader:
    def __init__(self, stores: RoomStores, loader: ClientEventLoader, visibility: VisibilityFilter):
        self._stores = stores
        self._loader = loader
        self._visibility = visibility

    async def context(self, conn: Connection, user_id: str, device_id: str | None,
                      event: StoredEvent, spec: EventContextSpec) -> JsonDict:
        """events_before (newest first, as /context returns them), events_after, and
        /messages tokens for paginating on from either end."""
        events = self._stores.events
        room_id, position = event.pdu.room_id, event.stream_ordering or 0
        before = await events.room_events_backward(conn, room_id, position - 1, 0,
                                                   min(spec.before_limit, MAX_CONTEXT))
        after = await events.room_events_forward(conn, room_id, position, _END,
                                                 min(spec.after_limit, MAX_CONTEXT))
        before = await self._visibility.filter(conn, user_id, before)
        after = await self._visibility.filter(conn, user_id, after)
        start = (before[-1].stream_ordering or 1) - 1 if before else position - 1
        end = after[-1].stream_ordering or position if after else position
        context: JsonDict = {
            "events_before": await self._loader.format(conn, before, user_id=user_id, device_id=device_id),
            "events_after": await self._loader.format(conn, after, user_id=user_id, device_id=device_id),
            "start": stream_token(start),
            "end": stream_token(end),
        }
        if spec.include_profile:
            senders = {e.pdu.sender for e in (*before, event, *after)}
            context["profile_info"] = await self._profiles_at(conn, event, senders)
        return context

    async def _profiles_at(self, conn: Connection, event: StoredEvent, senders: set[str]) -> JsonDict:
        """Each sender's displayname and avatar from their membership in the state
        before the result event (the spec's "historic profile information")."""
        event_state = await self._stores.state.get_event_state(conn, event.event_id)
        if event_state is None:
            return {}
        member_ids = {}
        for sender in sorted(senders):
            member_id = await self._stores.state.get_entry(conn, event_state.before, "m.room.member", sender)
            if member_id is not None:
                member_ids[sender] = member_id
        pdus = await self._stores.events.get_pdus(conn, list(member_ids.values()))
        redacted = await self._loader.applied_redactions(conn, list(pdus.values()))
        profiles: JsonDict = {}
        for sender, member_id in member_ids.items():
            pdu = pdus.get(member_id)
            if pdu is None or member_id in redacted:
                continue
            profile = {k: pdu.content[k] for k in ("displayname", "avatar_url")
                       if isinstance(pdu.content.get(k), str)}
            if "avatar_url" in profile and not profile["avatar_url"].startswith("mxc://"):
                del profile["avatar_url"]
            profiles[sender] = profile
        return profiles

    async def current_state(self, conn: Connection, user_id: str, room_id: str) -> list[JsonDict]:
        """The room's current state (the searcher is joined, so all of it is visible)."""
        state = await self._stores.current_state.get_state(conn, room_id)
        stored = await self._stores.events.get_many(conn, list(state.values()))
        return await self._loader.format(conn, list(stored.values()), user_id=user_id, device_id=None)
