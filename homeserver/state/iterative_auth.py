"""The iterative auth checks of state resolution v2 / v2.1, and the auth-event lookups
they share with the orderings.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#definitions ("Iterative auth checks").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from homeserver.events.pdu import Pdu
from homeserver.events.room_versions import RoomVersion
from homeserver.state.auth_events import auth_types_for_event
from homeserver.state.auth_graph import AuthGraph
from homeserver.state.auth_rules import AuthError, check_auth_rules
from homeserver.state.power_levels import get_user_power_level

StateMap = dict[tuple[str, str], str]

CREATE = ("m.room.create", "")
POWER_LEVELS = ("m.room.power_levels", "")


class RoomContext:
    """What every auth check in one resolution needs besides the event itself."""

    __slots__ = ("graph", "room_version", "_create")

    def __init__(self, graph: AuthGraph, room_version: RoomVersion, room_id: str | None):
        self.graph = graph
        self.room_version = room_version
        # v12 events do not cite the create event; it is found through the room ID.
        self._create: Pdu | None = None
        if not room_version.create_event_in_auth_events and room_id is not None:
            self._create = graph.create_event_for(room_id)

    def create_for(self, cited: Mapping[tuple[str, str], Pdu]) -> Pdu | None:
        if self._create is not None:
            return self._create
        return cited.get(CREATE)

    def cited_auth_events(self, event: Pdu) -> dict[tuple[str, str], Pdu]:
        """The event's own auth events by state key, skipping rejected and unknown ones
        (the spec excludes rejected auth events: they are not re-authed here)."""
        cited: dict[tuple[str, str], Pdu] = {}
        for aid in event.auth_event_ids:
            ev = self.graph.event(aid)
            if ev is not None and ev.rejected_reason is None and ev.is_state():
                cited[ev.state_pair()] = ev
        return cited

    def is_allowed(
        self, event: Pdu, state: Mapping[tuple[str, str], str], use_cited: bool = True
    ) -> bool:
        """The auth rules against `state`; with `use_cited` (v2), a required key the
        state lacks is taken from the event's own non-rejected auth events. v1 checks
        "for a room in state R" only."""
        keys = auth_types_for_event(
            self.room_version, event.type, event.sender, event.state_key, event.content
        )
        cited = self.cited_auth_events(event) if use_cited else {}
        auth: dict[tuple[str, str], Pdu] = {}
        for key in keys:
            # Only the keys the rules need: the spec takes "the appropriate state
            # event" from auth_events, not everything the event happens to cite.
            sid = state.get(key)
            ev = self.graph.event(sid) if sid is not None else None
            if ev is None:
                ev = cited.get(key)
            if ev is not None:
                auth[key] = ev
        try:
            check_auth_rules(event, auth, self._create)
        except AuthError:
            return False
        return True

    def sender_power(self, event: Pdu) -> float:
        """The sender's power level according to the event's own auth events."""
        cited: dict[tuple[str, str], Pdu] = {}
        for aid in self.graph.auth_ids(event.event_id):
            ev = self.graph.event(aid)
            if ev is not None and ev.is_state():
                cited[ev.state_pair()] = ev
        return get_user_power_level(event.sender, cited.get(POWER_LEVELS), self.create_for(cited))


def iterative_auth_checks(
    ctx: RoomContext, event_ids: Iterable[str], base_state: Mapping[tuple[str, str], str]
) -> StateMap:
    """Apply each event in order to a copy of `base_state` when the auth rules allow
    it against the state built so far; events that fail are skipped."""
    state: StateMap = dict(base_state)
    for eid in event_ids:
        event = ctx.graph.event(eid)
        if event is None or not event.is_state():
            continue
        # Events rejected earlier are re-checked here, as the spec says ("handled as
        # usual"): Synapse instead keeps them out, which can differ in rare forks.
        if ctx.is_allowed(event, state):
            state[event.state_pair()] = eid
    return state
