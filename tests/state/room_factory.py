"""A tiny room builder for auth-rule tests: plain dicts turned into Pdus with explicit
event IDs, and the auth state picked with the selection algorithm under test."""

from __future__ import annotations

import itertools
from typing import Any

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.state.auth_events import auth_types_for_event
from homeserver.state.auth_rules import check_auth_rules

ALICE = "@alice:a.test"  # the creator
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:a.test"

ALL_VERSIONS = [str(n) for n in range(1, 13)]

_ids = itertools.count(1)


class Room:
    """A room's state as a dict of Pdus; `add` appends to it without any checks."""

    def __init__(
        self, version: str, creator: str = ALICE, create_content: dict[str, Any] | None = None
    ):
        self.rv: RoomVersion = KNOWN_ROOM_VERSIONS[version]
        self.state: dict[tuple[str, str], Pdu] = {}
        self.last: str | None = None
        content: dict[str, Any] = {"room_version": version}
        if not self.rv.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        create_json: dict[str, Any] = {
            "type": "m.room.create",
            "state_key": "",
            "sender": creator,
            "content": content,
            "prev_events": [],
            "auth_events": [],
        }
        if self.rv.room_id_from_create_event:
            self.create = Pdu(create_json, self.rv, event_id=f"$create{next(_ids)}")
            self.room_id = "!" + self.create.event_id[1:]
        else:
            self.room_id = f"!room{next(_ids)}:{creator.split(':', 1)[1]}"
            create_json["room_id"] = self.room_id
            self.create = Pdu(create_json, self.rv, event_id=self._new_id(creator))
        self.state[("m.room.create", "")] = self.create
        self.last = self.create.event_id

    def _new_id(self, sender: str) -> str:
        if self.rv.legacy_event_format:
            return f"$ev{next(_ids)}:{sender.split(':', 1)[1]}"
        return f"$ev{next(_ids)}"

    def event(
        self,
        type: str,
        sender: str,
        content: dict[str, Any] | None = None,
        state_key: str | None = None,
        prev: list[str] | None = None,
        **extra: Any,
    ) -> Pdu:
        """A new event after the latest one (not added to the state)."""
        prev_ids = [self.last] if prev is None else prev
        event_id = extra.pop("event_id", None) or self._new_id(sender)
        pdu: dict[str, Any] = {
            "type": type,
            "room_id": self.room_id,
            "sender": sender,
            "content": content if content is not None else {},
            "prev_events": [[p, {}] for p in prev_ids] if self.rv.legacy_event_format else prev_ids,
            "auth_events": [],
            "depth": 1,
            "origin_server_ts": 0,
            "signatures": {sender.split(":", 1)[1]: {"ed25519:k": "sig"}},
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        pdu.update(extra)
        return Pdu(pdu, self.rv, event_id=event_id)

    def add(
        self,
        type: str,
        sender: str,
        content: dict[str, Any] | None = None,
        state_key: str = "",
        **extra: Any,
    ) -> Pdu:
        pdu = self.event(type, sender, content, state_key, **extra)
        self.state[pdu.state_pair()] = pdu
        self.last = pdu.event_id
        return pdu

    def member(self, user: str, membership: str, sender: str | None = None, **content: Any) -> Pdu:
        return self.add(
            "m.room.member", sender or user, {"membership": membership, **content}, user
        )

    def auth_for(self, event: Pdu) -> dict[tuple[str, str], Pdu]:
        keys = auth_types_for_event(
            self.rv, event.type, event.sender, event.state_key, event.content
        )
        return {k: self.state[k] for k in keys if k in self.state}

    def check(self, event: Pdu) -> None:
        """Run the auth rules against the current state, as a receiving server would."""
        check_auth_rules(event, self.auth_for(event), self.create)


def standard_room(
    version: str, join_rule: str = "invite", users: dict[str, int] | None = None
) -> Room:
    """Alice creates and joins; power levels give her 100 (v12: implicit, infinite)."""
    room = Room(version)
    room.member(ALICE, "join")
    levels = dict(users or {})
    if not room.rv.privileged_creators:
        levels.setdefault(ALICE, 100)
    room.add("m.room.power_levels", ALICE, {"users": levels})
    room.add("m.room.join_rules", ALICE, {"join_rule": join_rule})
    return room
