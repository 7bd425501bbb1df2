"""Loading stored events in client format for one requester: redactions applied, the
sender's transaction IDs, the replaced state's content and the bundled aggregations
(`unsigned.m.relations`) added. Shared by the room endpoints and sync."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from homeserver.clock import Clock
from homeserver.events.pdu import Pdu
from homeserver.rooms.aggregations import Aggregations, bundle_json, may_have_bundle
from homeserver.rooms.client_format import JsonDict, format_client_event
from homeserver.rooms.stores import RoomStores
from homeserver.state.auth_context import server_of
from homeserver.storage.database import Connection
from homeserver.storage.events import Redaction, StoredEvent
from homeserver.storage.relations import FormatRead

# Top-level events bundle their children; a thread's latest reply bundles its own edit;
# the events bundled there bundle nothing (a reply cannot itself be a thread root).
_BUNDLE_DEPTH = 2


class ClientEventLoader:
    def __init__(self, stores: RoomStores, clock: Clock, aggregations: Aggregations | None = None):
        self._stores = stores
        self._clock = clock
        self._aggregations = aggregations

    def now_ms(self) -> int:
        """The clock `unsigned.age` is computed with."""
        return self._clock.time_ms()

    async def format(self, conn: Connection, events: Sequence[StoredEvent], *, user_id: str,
                     device_id: str | None, include_room_id: bool = True,
                     bundle_aggregations: bool = True) -> list[JsonDict]:
        """The events in client format, in the given order, with their bundled
        aggregations unless `bundle_aggregations` is False. Batched: the query count does
        not grow with the number of events."""
        return await self._format(conn, events, user_id=user_id, device_id=device_id,
                                  include_room_id=include_room_id,
                                  depth=_BUNDLE_DEPTH if bundle_aggregations else 0)

    def format_unreferenced(self, events: Sequence[StoredEvent], *,
                            include_room_id: bool = True) -> list[JsonDict]:
        """The events in client format for nobody in particular (no transaction IDs),
        with nothing read: the caller knows that no event redacts or relates to any of
        them (sync/local_batches.py) and that none replaced state."""
        now = self._clock.time_ms()
        out = []
        for e in events:
            assert e.replaces_state is None, "a replaced state event's content is read"
            out.append(format_client_event(e.pdu, now_ms=now, include_room_id=include_room_id))
        return out

    async def _format(self, conn: Connection, events: Sequence[StoredEvent], *, user_id: str,
                      device_id: str | None, include_room_id: bool, depth: int) -> list[JsonDict]:
        if not events:
            return []
        bundling = depth > 0 and self._aggregations is not None
        parents = list({e.event_id: e for e in events if may_have_bundle(e)}.values()) if bundling else []
        event_ids = [e.event_id for e in events]
        read = None
        if parents:
            # One round trip for the redactions and the relations together (on every woken
            # /sync); with no possible parent, relations are not read at all.
            read = await self._stores.relations.redactions_and_relations(
                conn, event_ids, parent_ids=[e.event_id for e in parents], user_id=user_id)
            by_target = read.redactions
        else:
            by_target = await self._stores.events.redactions_of(conn, event_ids)
        redacted_by = await self._apply_redactions(conn, [e.pdu for e in events], by_target)
        own = [e.event_id for e in events if e.pdu.sender == user_id]
        txn_ids = await self._stores.txn_ids.for_events(conn, user_id, device_id, own) if own else {}
        replaced_ids = [e.replaces_state for e in events if e.replaces_state]
        replaced = await self._stores.events.get_pdus(conn, replaced_ids) if replaced_ids else {}
        replaced_redactions = await self.applied_redactions(conn, list(replaced.values()))
        now = self._clock.time_ms()
        out = []
        for e in events:
            prev_content = None
            if e.replaces_state in replaced:
                prev = replaced[e.replaces_state]
                prev_content = (format_client_event(prev, now_ms=now, redacted_by=replaced_redactions.get(prev.event_id))["content"])
            out.append(format_client_event(
                e.pdu, now_ms=now, redacted_by=redacted_by.get(e.event_id),
                transaction_id=txn_ids.get(e.event_id), replaces_state=e.replaces_state,
                prev_content=prev_content, include_room_id=include_room_id))
        if read is not None:
            await self._add_bundles(conn, events, out, parents, read, set(redacted_by),
                                    user_id=user_id, device_id=device_id,
                                    include_room_id=include_room_id, depth=depth)
        return out

    async def _add_bundles(self, conn: Connection, events: Sequence[StoredEvent], out: list[JsonDict],
                           parents: Sequence[StoredEvent], read: FormatRead, redacted: set[str], *,
                           user_id: str, device_id: str | None, include_room_id: bool,
                           depth: int) -> None:
        assert self._aggregations is not None
        bundles = await self._aggregations.bundles(conn, user_id, parents, read, redacted=redacted)
        if not bundles:
            return
        nested: dict[str, StoredEvent] = {}
        for found in bundles.values():
            if found.replace is not None:
                nested[found.replace.event_id] = found.replace
            if found.thread is not None:
                nested[found.thread.latest.event_id] = found.thread.latest
        formatted = await self._format(conn, list(nested.values()), user_id=user_id,
                                       device_id=device_id, include_room_id=include_room_id,
                                       depth=depth - 1)
        by_id = dict(zip(nested, formatted, strict=True))
        for event, client_event in zip(events, out, strict=True):
            bundle = bundles.get(event.event_id)
            relations = bundle_json(bundle, by_id) if bundle is not None else None
            if relations:
                client_event["unsigned"]["m.relations"] = relations

    async def applied_redactions(self, conn: Connection, pdus: Sequence[Pdu]) -> dict[str, Pdu]:
        """`event_id -> redaction` for the events a redaction applies to.

        A redaction applies when its sender had the redact level, or comes from the
        redacted event's server (spec: rooms v3+ "Handling redactions")."""
        by_target = await self._stores.events.redactions_of(conn, [p.event_id for p in pdus])
        return await self._apply_redactions(conn, pdus, by_target)

    async def _apply_redactions(self, conn: Connection, pdus: Sequence[Pdu],
                                by_target: Mapping[str, Sequence[Redaction]]) -> dict[str, Pdu]:
        if not by_target:
            return {}
        redaction_pdus = await self._stores.events.get_pdus(
            conn, [r.redaction_id for rs in by_target.values() for r in rs])
        applied: dict[str, Pdu] = {}
        for pdu in pdus:
            for r in by_target.get(pdu.event_id, []):
                redaction = redaction_pdus.get(r.redaction_id)
                if redaction is None:
                    continue
                if r.validated or server_of(redaction.sender) == server_of(pdu.sender):
                    applied[pdu.event_id] = redaction
                    break
        return applied
