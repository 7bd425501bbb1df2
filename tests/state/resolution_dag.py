"""A room-DAG builder for state-resolution tests.

Each event names its prev events; the state before it is the resolution of the states
after them (computed with the code under test), and its auth events are picked from
that state with the auth-events selection algorithm, as a real server would. Event IDs
are explicit and short (`$PA`, `$T1`); timestamps follow the order events are added.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.state.auth_events import auth_types_for_event
from homeserver.state.auth_rules import check_auth_rules
from homeserver.state.resolution import resolve_state

StateMap = dict[tuple[str, str], str]

ALICE = "@alice:a.test"  # creates the room
BOB = "@bob:b.test"
CHARLIE = "@charlie:c.test"
EVE = "@eve:e.test"
ZARA = "@zara:z.test"

PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")
TOPIC = ("m.room.topic", "")


def member_key(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


class Dag:
    """Events of one room, with the state after each."""

    def __init__(self, version: str):
        self.rv: RoomVersion = KNOWN_ROOM_VERSIONS[version]
        self.events: dict[str, Pdu] = {}
        self.state_after: dict[str, StateMap] = {}
        self._clock = itertools.count(1000, 10)
        self.room_id = "!CREATE" if self.rv.room_id_from_create_event else "!room:a.test"

    def id(self, name: str) -> str:
        """`$NAME` (v3+) or `$NAME:a.test` (v1–2 IDs carry a server name)."""
        return f"${name}:a.test" if self.rv.legacy_event_format else f"${name}"

    def get(self, event_id: str) -> Pdu | None:
        return self.events.get(event_id)

    def resolve(self, *names: str) -> StateMap:
        """The resolved state across the states after the named events."""
        return resolve_state(self.rv, [self.state_after[self.id(n)] for n in names], self.get)

    def resolve_maps(self, state_maps: Sequence[Mapping[tuple[str, str], str]]) -> StateMap:
        return resolve_state(self.rv, state_maps, self.get)

    def add(
        self,
        name: str,
        type: str,
        sender: str,
        content: dict[str, Any] | None = None,
        state_key: str | None = None,
        prev: list[str] | None = None,
        auth: list[str] | None = None,
        valid: bool = True,
    ) -> Pdu:
        """Add an event after `prev` (names); `auth` (names) overrides the selection.

        With `valid`, the event must pass the auth rules against its auth events, so a
        scenario cannot silently rest on an event no server would have accepted.
        """
        prev_ids = [self.id(p) for p in (prev or [])]
        before = resolve_state(self.rv, [self.state_after[p] for p in prev_ids], self.get)
        content = content if content is not None else {}
        if auth is None:
            keys = auth_types_for_event(self.rv, type, sender, state_key, content)
            auth_ids = [before[k] for k in keys if k in before]
        else:
            auth_ids = [self.id(a) for a in auth]
        event_id = self.id(name)
        pdu = self._json(event_id, type, sender, content, state_key, prev_ids, auth_ids)
        event = Pdu(pdu, self.rv, event_id=event_id)
        self.events[event_id] = event
        if valid:
            self._check(event)
        after = dict(before)
        if state_key is not None:
            after[(type, state_key)] = event_id
        self.state_after[event_id] = after
        return event

    def _check(self, event: Pdu) -> None:
        cited = {self.events[a].state_pair(): self.events[a] for a in event.auth_event_ids}
        create = None
        if not self.rv.create_event_in_auth_events:
            create = self.events.get(self.id("CREATE"))
        check_auth_rules(event, cited, create)

    def _json(
        self,
        event_id: str,
        type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None,
        prev_ids: list[str],
        auth_ids: list[str],
    ) -> dict[str, Any]:
        depth = max((self.events[p].depth for p in prev_ids), default=0) + 1

        def refs(ids: list[str]) -> list[Any]:
            return [[i, {"sha256": ""}] for i in ids] if self.rv.legacy_event_format else ids

        pdu: dict[str, Any] = {
            "type": type,
            "sender": sender,
            "content": content,
            "prev_events": refs(prev_ids),
            "auth_events": refs(auth_ids),
            "depth": depth,
            "origin_server_ts": next(self._clock),
        }
        if not (type == "m.room.create" and self.rv.room_id_from_create_event):
            pdu["room_id"] = self.room_id
        if self.rv.legacy_event_format:
            pdu["event_id"] = event_id
        if state_key is not None:
            pdu["state_key"] = state_key
        return pdu

    # -- shorthands -------------------------------------------------------------------
    def member(
        self,
        name: str,
        user: str,
        membership: str,
        prev: list[str],
        sender: str | None = None,
        **kw: Any,
    ) -> Pdu:
        return self.add(
            name, "m.room.member", sender or user, {"membership": membership}, user, prev, **kw
        )

    def power_levels(
        self, name: str, sender: str, users: dict[str, int], prev: list[str], **kw: Any
    ) -> Pdu:
        """Power levels with `users`; before v12 Alice (the creator) is kept at 100,
        from v12 creators must not be listed (their level is implicit and infinite)."""
        levels = dict(users)
        if not self.rv.privileged_creators:
            levels.setdefault(ALICE, 100)
        extra = kw.pop("content", {})
        return self.add(
            name, "m.room.power_levels", sender, {"users": levels, **extra}, "", prev, **kw
        )

    def topic(self, name: str, sender: str, prev: list[str]) -> Pdu:
        return self.add(name, "m.room.topic", sender, {"topic": name}, "", prev)


def classic_room(version: str) -> Dag:
    """The usual opening: Alice creates the room and joins, sets power levels and a
    public join rule; Bob, Charlie and Zara join. The last event is named START."""
    dag = Dag(version)
    create: dict[str, Any] = {"room_version": version}
    if not dag.rv.implicit_room_creator:
        create["creator"] = ALICE
    dag.add("CREATE", "m.room.create", ALICE, create, "")
    dag.member("IMA", ALICE, "join", ["CREATE"])
    dag.power_levels("IPOWER", ALICE, {}, ["IMA"])
    dag.add("IJR", "m.room.join_rules", ALICE, {"join_rule": "public"}, "", ["IPOWER"])
    dag.member("IMB", BOB, "join", ["IJR"])
    dag.member("IMC", CHARLIE, "join", ["IMB"])
    dag.member("START", ZARA, "join", ["IMC"])
    return dag
