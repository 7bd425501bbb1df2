"""Bundled aggregations: what `unsigned.m.relations` says about each event's children.

Spec: https://spec.matrix.org/v1.19/client-server-api/#aggregations-of-child-events .
Bundled since v1.7: `m.replace` (the most recent valid edit, as the whole event),
`m.thread` (latest reply, reply count, whether the requester took part) and
`m.reference` (the referring event IDs). `m.annotation` (reactions) is not bundled;
clients read it from /relations.

Everything is read for a whole batch of events at once (the relations in the statement
that reads the batch's redactions, RelationStore.redactions_and_relations, plus one to
load the edits and latest replies), so sync and every room endpoint pay the same cost
for one event or a page of them. The result is raw; ClientEventLoader formats it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import attrs

from homeserver.rooms.relations import ANNOTATION, REFERENCE, REPLACE, relation_of
from homeserver.rooms.stores import RoomStores
from homeserver.storage.database import Connection
from homeserver.storage.events import StoredEvent
from homeserver.storage.relations import FormatRead, ParentRelationRow

ENCRYPTED = "m.room.encrypted"


@attrs.frozen
class ThreadBundle:
    latest: StoredEvent
    count: int
    participated: bool


@attrs.frozen
class Bundle:
    replace: StoredEvent | None = None
    thread: ThreadBundle | None = None
    references: tuple[str, ...] = ()


def may_have_bundle(event: StoredEvent) -> bool:
    """State events, edits and reactions carry no aggregations (an edit's own edits or
    a reaction's thread make no sense to a client)."""
    if event.pdu.is_state():
        return False
    relation = relation_of(event.pdu.content)
    return relation is None or relation.rel_type not in (REPLACE, ANNOTATION)


def _valid_edit(original: StoredEvent, edit: StoredEvent) -> bool:
    """The spec's conditions on a replacement (#validity-of-replacement-events): same
    room, sender and type, neither a state event, and new content to show (inside the
    ciphertext for encrypted events, which the server cannot check)."""
    o, e = original.pdu, edit.pdu
    if o.room_id != e.room_id or o.sender != e.sender or o.type != e.type:
        return False
    if o.is_state() or e.is_state():
        return False
    return e.type == ENCRYPTED or isinstance(e.content.get("m.new_content"), dict)


class Aggregations:
    def __init__(self, stores: RoomStores):
        self._stores = stores

    async def bundles(self, conn: Connection, user_id: str, parents: Sequence[StoredEvent],
                      read: FormatRead, *, redacted: Collection[str] = ()) -> dict[str, Bundle]:
        """`event_id -> Bundle` for the `parents` (events that `may_have_bundle`) that have
        something to bundle, from their relations as read for `user_id`.
        `redacted`: events whose redaction applies (their edits are not bundled)."""
        by_id = {e.event_id: e for e in parents}
        threads = read.threads
        references: dict[str, list[str]] = {}
        edit_candidates: dict[str, list[ParentRelationRow]] = {}
        for row in read.edits_and_references:
            parent = by_id[row.relates_to_id]
            if row.rel_type == REFERENCE:
                references.setdefault(row.relates_to_id, []).append(row.event_id)
            elif (row.rel_type == REPLACE and row.relates_to_id not in redacted
                  and row.sender == parent.pdu.sender and row.type == parent.pdu.type):
                edit_candidates.setdefault(row.relates_to_id, []).append(row)
        wanted = [r.event_id for rs in edit_candidates.values() for r in rs]
        wanted += [t.latest_event_id for t in threads.values()]
        loaded = await self._stores.events.get_many(conn, wanted) if wanted else {}
        out: dict[str, Bundle] = {}
        for parent_id, parent in by_id.items():
            replace = self._latest_edit(parent, edit_candidates.get(parent_id, []), loaded)
            thread = None
            summary = threads.get(parent_id)
            if summary is not None and summary.latest_event_id in loaded:
                thread = ThreadBundle(loaded[summary.latest_event_id], summary.count,
                                      parent.pdu.sender == user_id or summary.own_replies > 0)
            refs = tuple(references.get(parent_id, ()))
            if replace is not None or thread is not None or refs:
                out[parent_id] = Bundle(replace, thread, refs)
        return out

    @staticmethod
    def _latest_edit(parent: StoredEvent, candidates: list[ParentRelationRow],
                     loaded: dict[str, StoredEvent]) -> StoredEvent | None:
        """The most recent valid edit: latest origin_server_ts, ties broken by the
        lexicographically greatest event ID (spec, server-side aggregation of m.replace)."""
        best: tuple[int, str] | None = None
        chosen = None
        for row in candidates:
            edit = loaded.get(row.event_id)
            if edit is None or not _valid_edit(parent, edit):
                continue
            rank = (row.origin_server_ts, row.event_id)
            if best is None or rank > best:
                best, chosen = rank, edit
        return chosen


def bundle_json(bundle: Bundle, formatted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`unsigned.m.relations` for one event, given its edit and latest reply formatted."""
    relations: dict[str, Any] = {}
    if bundle.replace is not None and bundle.replace.event_id in formatted:
        relations[REPLACE] = formatted[bundle.replace.event_id]
    if bundle.thread is not None and bundle.thread.latest.event_id in formatted:
        relations["m.thread"] = {
            "latest_event": formatted[bundle.thread.latest.event_id],
            "count": bundle.thread.count,
            "current_user_participated": bundle.thread.participated,
        }
    if bundle.references:
        relations[REFERENCE] = {"chunk": [{"event_id": e} for e in bundle.references]}
    return relations
