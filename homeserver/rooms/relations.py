"""Event relationships as derived rows: parsed from `content.m.relates_to` and written in
the persist transaction (ARCHITECTURE.md, "persist in ONE transaction").

Spec: https://spec.matrix.org/v1.19/client-server-api/#forming-relationships-between-events .
A redacted event loses `m.relates_to` (the redaction algorithm strips content), so a
redaction that applies deletes the row in the redaction's own transaction; reads then
never need to re-check redactions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from homeserver.events.pdu import Pdu
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection
from homeserver.storage.relations import RelationRow

ANNOTATION = "m.annotation"
REPLACE = "m.replace"
REFERENCE = "m.reference"
THREAD = "m.thread"

# `(conn, pdus) -> {event_id: redaction}` for the redactions that apply (the loader's rule).
AppliedRedactions = Callable[[Connection, Sequence[Pdu]], Awaitable[Mapping[str, Pdu]]]


@attrs.frozen
class Relation:
    parent_id: str
    rel_type: str
    key: str | None


def relation_of(content: Mapping[str, Any]) -> Relation | None:
    """The relationship an event's content declares, if well-formed. Rich-reply-only
    `m.in_reply_to` (no rel_type) is not a relationship."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, Mapping):
        return None
    rel_type, parent_id = relates.get("rel_type"), relates.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent_id, str) or not parent_id.startswith("$"):
        return None
    key = relates.get("key") if rel_type == ANNOTATION else None
    if rel_type == ANNOTATION and not isinstance(key, str):
        return None
    return Relation(parent_id, rel_type, key)


class RelationWriter:
    """The persister's derived writer for `event_relations`."""

    def __init__(self, stores: RoomStores, applied_redactions: AppliedRedactions):
        self._stores = stores
        self._applied_redactions = applied_redactions

    async def __call__(self, conn: Connection, pdu: Pdu, stream_ordering: int) -> None:
        if pdu.rejected_reason is not None:
            return
        if pdu.type == "m.room.redaction":
            await self._on_redaction(conn, pdu)
            return
        relation = relation_of(pdu.content)
        if relation is None:
            return
        # A redaction can arrive before its target (federation): then the target never
        # had a usable relation.
        if pdu.event_id in await self._applied_redactions(conn, [pdu]):
            return
        await self._stores.relations.insert(conn, RelationRow(
            pdu.event_id, relation.parent_id, relation.rel_type, relation.key, pdu.room_id,
            pdu.sender, pdu.type, stream_ordering))

    async def _on_redaction(self, conn: Connection, redaction: Pdu) -> None:
        target_id = redaction.redacts
        if target_id is None or await self._stores.relations.get(conn, target_id) is None:
            return
        target = await self._stores.events.get(conn, target_id)
        if target is not None and target_id in await self._applied_redactions(conn, [target.pdu]):
            await self._stores.relations.delete(conn, target_id)
