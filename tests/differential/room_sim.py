"""A room simulator that grows a random event DAG and checks each step against Synapse.

Every candidate event is authorised by our rules and by Synapse's against the state
before it; they must agree, and only allowed events join the DAG. Every event with
several parents gets its state by state resolution, ours and Synapse's, which must agree
too. So one random history exercises auth rules and state resolution together, on
realistic states (forks, concurrent power-level changes, bans, joins, join-rule changes).

Events are assembled here (not with the builder) so that v1/v2 event IDs are
deterministic: Hypothesis must be able to replay a failing example.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from hypothesis import reject

from homeserver.events.hashing import add_content_hash
from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.state.auth_events import select_auth_event_ids
from homeserver.state.auth_rules import AuthError, check_auth_events, check_auth_rules
from homeserver.state.resolution import resolve_state
from tests.differential.deviations import (
    has_bad_third_party_key,
    pre_v10_undefined_power_levels,
    synapse_auth_crash_expected,
    synapse_stricter_auth,
)
from tests.differential.oracle import OracleError, SynapseOracle

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]

USERS = [
    "@alice:a.example",  # the room creator
    "@bob:b.example",
    "@carol:a.example",
    "@dan:c.example",
    "@erin:b.example",  # never joined at bootstrap
]
CREATOR = USERS[0]
LEGACY_ROOM_ID = "!room:a.example"


class Disagreement(AssertionError):
    """Our verdict differs from Synapse's; the message carries a JSON reproduction."""


def _repro(kind: str, **data: Any) -> str:
    text = json.dumps({"kind": kind, **data}, sort_keys=True, default=str)
    return text if len(text) < 60_000 else text[:60_000] + "...(truncated)"


@attrs.define
class Node:
    pdu: Pdu
    state_after: StateMap
    children: int = 0


@attrs.define
class Outcome:
    """What happened to one candidate event (for test statistics)."""

    allowed: bool
    reason: str | None


class RoomSim:
    def __init__(self, room_version: str, oracle: SynapseOracle):
        self.rv: RoomVersion = KNOWN_ROOM_VERSIONS[room_version]
        self.oracle = oracle
        self.events: dict[str, Pdu] = {}
        self.nodes: list[Node] = []
        self.create: Pdu | None = None
        self.room_id = LEGACY_ROOM_ID
        self._ts = 1_700_000_000_000
        self._serial = 0
        self.outcomes: list[Outcome] = []
        self.resolutions = 0
        self.deviations: collections.Counter[str] = collections.Counter()

    # -- assembling events -------------------------------------------------------------
    def build(
        self,
        parents: Sequence[Node],
        state_before: StateMap,
        *,
        type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None = None,
        ts_step: int = 1,
        extra_signers: Sequence[str] = (),
        top_level: dict[str, Any] | None = None,
    ) -> Pdu:
        self._serial += 1
        self._ts += ts_step
        rv = self.rv
        event: dict[str, Any] = {
            "type": type,
            "sender": sender,
            "content": content,
            "depth": max((p.pdu.depth for p in parents), default=0) + 1,
            "origin_server_ts": self._ts,
        }
        if state_key is not None:
            event["state_key"] = state_key
        if not (rv.room_id_from_create_event and type == "m.room.create"):
            event["room_id"] = self.room_id
        if not rv.updated_redaction_rules:
            event["origin"] = _server(sender)
        event.update(top_level or {})
        auth_ids = select_auth_event_ids(rv, event, state_before)
        prev_ids = [p.pdu.event_id for p in parents]
        if rv.legacy_event_format:
            event["event_id"] = f"${self._serial}:{_server(sender)}"
            event["prev_events"] = [[e, {"sha256": "AAAA"}] for e in prev_ids]
            event["auth_events"] = [[e, {"sha256": "AAAA"}] for e in auth_ids]
        else:
            event["prev_events"] = prev_ids
            event["auth_events"] = auth_ids
        event = add_content_hash(event)
        # Auth rules never verify signatures cryptographically; their presence matters
        # (sender's server, and the authorising server of a restricted join).
        event["signatures"] = {
            s: {"ed25519:k": "c2ln"} for s in dict.fromkeys([_server(sender), *extra_signers])
        }
        return Pdu(event, rv)

    # -- auth ----------------------------------------------------------------------------
    def authorise(self, pdu: Pdu) -> Outcome:
        """Our verdict and Synapse's on `pdu` against its own auth events; they must
        agree, up to the documented deviations (deviations.py)."""
        own = [self.events[e] for e in pdu.auth_event_ids]
        create = self.create if not self.rv.create_event_in_auth_events else None
        reason: str | None = None
        try:
            by_key = check_auth_events(pdu, own, create)
            check_auth_rules(pdu, by_key, create)
        except AuthError as e:
            reason = str(e)
        sent = [e.get_json() for e in own]
        if create is not None:
            sent.append(create.get_json())
        event = pdu.get_json()
        theirs = self.oracle.call(
            "auth", room_version=self.rv.identifier, event=event, auth_events=sent, mode="full"
        )
        outcome = Outcome(reason is None, reason)
        deviation = self._auth_deviation(event, sent, reason, theirs)
        if deviation is not None:
            # Known Synapse deviation: count it and keep the event out of the history.
            self.deviations[deviation] += 1
            outcome = Outcome(False, f"{deviation}: known Synapse deviation")
        elif outcome.allowed != theirs["allowed"] or "crash" in theirs:
            ours_text = "allow" if reason is None else f"reject ({reason})"
            theirs_text = theirs.get("crash") or theirs["reason"] or "allow"
            raise Disagreement(
                f"auth disagreement in room v{self.rv.identifier} on {pdu.type}: "
                f"ours={ours_text}, synapse={theirs_text}\n"
                + _repro("auth", room_version=self.rv.identifier, event=event, auth_events=sent)
            )
        self.outcomes.append(outcome)
        return outcome

    def _auth_deviation(
        self,
        event: dict[str, Any],
        auth_events: list[dict[str, Any]],
        reason: str | None,
        theirs: dict[str, Any],
    ) -> str | None:
        if pre_v10_undefined_power_levels(self.rv.identifier, event):
            return "D5"  # nothing the spec leaves undefined is compared or kept
        if "crash" in theirs:
            return synapse_auth_crash_expected(event, auth_events) if reason is not None else None
        if reason is None and not theirs["allowed"]:
            assert self.create is not None
            return synapse_stricter_auth(event, self.create.get_json(), theirs["reason"])
        return None

    # -- state resolution --------------------------------------------------------------
    def resolve(self, state_sets: Sequence[StateMap]) -> StateMap:
        """Our resolution and Synapse's; must agree (no documented deviation applies:
        D7 and D8 were resolved by following Synapse)."""
        ours = resolve_state(self.rv, state_sets, self.events.get)
        wire_sets = [[[t, k, e] for (t, k), e in sorted(s.items())] for s in state_sets]
        events = [e.get_json() for e in self.events.values()]
        try:
            theirs_list = self.oracle.call(
                "resolve", room_version=self.rv.identifier, state_sets=wire_sets, events=events)
        except OracleError as e:
            # D6 in Synapse's iterative auth checks: it raises where the spec rejects,
            # so it cannot judge this history (ours rejects; tests/differential/test_auth.py).
            if "binascii.Error" in str(e) and has_bad_third_party_key(events):
                reject()
            raise
        theirs = {(t, k): e for t, k, e in theirs_list}
        self.resolutions += 1
        if ours != theirs:
            diff = {
                f"{k[0]}|{k[1]}": {"ours": ours.get(k), "synapse": theirs.get(k)}
                for k in sorted(set(ours) | set(theirs))
                if ours.get(k) != theirs.get(k)
            }
            raise Disagreement(
                f"state resolution disagreement in room v{self.rv.identifier}: {diff}\n"
                + _repro(
                    "resolve",
                    room_version=self.rv.identifier,
                    state_sets=wire_sets,
                    events=[e.get_json() for e in self.events.values()],
                )
            )
        return ours

    def state_before(self, parents: Sequence[Node]) -> StateMap:
        if len(parents) == 1:
            return parents[0].state_after
        return self.resolve([p.state_after for p in parents])

    # -- growing the DAG ---------------------------------------------------------------
    def add(
        self, parents: Sequence[Node], make: Callable[[StateMap], dict[str, Any] | None]
    ) -> Node | None:
        """Build an event on `parents` from `make(state_before)` (the keyword arguments of
        `build`, or None to skip); keep it if both implementations allow it."""
        parents = list({id(p): p for p in parents}.values())
        before = self.state_before(parents) if parents else {}
        fields = make(before)
        if fields is None:
            return None
        pdu = self.build(parents, before, **fields)
        if pdu.event_id in self.events:
            return None  # an identical event (same content, same parents): nothing new
        self.events[pdu.event_id] = pdu  # the oracle looks auth events up by ID
        if not self.authorise(pdu).allowed:
            del self.events[pdu.event_id]
            return None
        after = dict(before)
        if pdu.is_state():
            after[pdu.state_pair()] = pdu.event_id
        node = Node(pdu, after)
        for p in parents:
            p.children += 1
        self.nodes.append(node)
        if pdu.type == "m.room.create" and not parents:
            self.create = pdu
            if self.rv.room_id_from_create_event:
                self.room_id = pdu.room_id
        return node

    def leaves(self) -> list[Node]:
        return [n for n in self.nodes if n.children == 0]

    def content_in(self, state: StateMap, key: StateKey) -> dict[str, Any]:
        """A copy of the content of the state event at `key` (empty when absent)."""
        event_id = state.get(key)
        return json.loads(json.dumps(self.events[event_id].content)) if event_id else {}


def _server(user_id: str) -> str:
    return user_id.partition(":")[2]
