"""The auth-event graph as seen by state resolution: auth chains, the auth difference
and the conflicted state subgraph.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#definitions (auth chain, auth difference)
and https://spec.matrix.org/v1.19/rooms/v12/#definitions (conflicted state subgraph).
Pure code: events come from a caller-supplied lookup; unknown events are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

from homeserver.events.pdu import Pdu

EventLookup = Callable[[str], Pdu | None]


class AuthGraph:
    """A memoising view over `get_event` for one resolution.

    Resolution visits the same events many times (chains, sorting, auth checks); the
    caller's lookup may hit a database cache, so each event is fetched once here.
    """

    __slots__ = ("_get_event", "_events", "_auth_ids")

    def __init__(self, get_event: EventLookup):
        self._get_event = get_event
        self._events: dict[str, Pdu | None] = {}
        self._auth_ids: dict[str, tuple[str, ...]] = {}

    def event(self, event_id: str) -> Pdu | None:
        try:
            return self._events[event_id]
        except KeyError:
            ev = self._events[event_id] = self._get_event(event_id)
            return ev

    def auth_ids(self, event_id: str) -> tuple[str, ...]:
        """The known auth events of an event (unknown ones cannot be walked)."""
        ids = self._auth_ids.get(event_id)
        if ids is None:
            ev = self.event(event_id)
            if ev is None:
                ids = ()
            else:
                ids = tuple(a for a in ev.auth_event_ids if self.event(a) is not None)
            self._auth_ids[event_id] = ids
        return ids

    def closure(
        self,
        seeds: Iterable[str],
        stop: Collection[str] = frozenset(),
        within: Collection[str] | None = None,
    ) -> set[str]:
        """The known seeds plus everything reachable through auth_events, not entering
        (nor walking past) any event in `stop`; with `within`, stepping only onto
        events in `within` (the seeds themselves are always kept)."""
        seen: set[str] = set()
        stack = [s for s in seeds if s not in stop and self.event(s) is not None]
        seen.update(stack)
        while stack:
            for aid in self.auth_ids(stack.pop()):
                if aid not in seen and aid not in stop and (within is None or aid in within):
                    seen.add(aid)
                    stack.append(aid)
        return seen

    def create_event_for(self, room_id: str) -> Pdu | None:
        """The v12 create event of a room: its ID is the room ID with `$` for `!`."""
        return self.event("$" + room_id[1:])


def auth_chain(event_ids: Iterable[str], get_event: EventLookup | AuthGraph) -> set[str]:
    """The auth chain of a set of events, as the spec defines it: everything reachable
    through `auth_events`, *excluding* the starting events themselves (unless one is an
    auth event of another)."""
    graph = get_event if isinstance(get_event, AuthGraph) else AuthGraph(get_event)
    starts = list(event_ids)
    return graph.closure(a for e in starts for a in graph.auth_ids(e))


def auth_difference(
    graph: AuthGraph, unconflicted_ids: Iterable[str], per_set_conflicted: Sequence[set[str]]
) -> set[str]:
    """∪Cᵢ − ∩Cᵢ where Cᵢ is the full auth chain of state set i.

    Cᵢ includes the state events themselves, as Synapse does: otherwise an unconflicted
    event cited only from one side would land in the difference. Every Cᵢ contains the
    closure U of the unconflicted events, so nothing in U can be in the difference and
    the per-set walks stop at U; what remains per set is small (the conflicted part).
    """
    common = graph.closure(unconflicted_ids)
    chains = [graph.closure(ids, stop=common) for ids in per_set_conflicted]
    if not chains:
        return set()
    union: set[str] = set().union(*chains)
    common_to_all = chains[0].intersection(*chains[1:])
    return union - common_to_all


def conflicted_subgraph(graph: AuthGraph, conflicted: set[str]) -> set[str]:
    """Events on some auth_events path from one conflicted event to another, endpoints
    included (room v12, state resolution v2.1).

    Found as (events reachable from the conflicted set) ∩ (events that reach it): walk
    down once recording reverse edges, then walk back up from the conflicted events.
    """
    below: set[str] = set()
    cited_by: dict[str, list[str]] = {}
    stack = [c for c in conflicted if graph.event(c) is not None]
    below.update(stack)
    while stack:
        eid = stack.pop()
        for aid in graph.auth_ids(eid):
            cited_by.setdefault(aid, []).append(eid)
            if aid not in below:
                below.add(aid)
                stack.append(aid)
    # Walking up from a conflicted event only ever reaches events that descend from a
    # conflicted event (the reverse edges were recorded from those walks).
    result: set[str] = set()
    stack = [c for c in conflicted if c in below]
    result.update(stack)
    while stack:
        for parent in cited_by.get(stack.pop(), ()):
            if parent not in result:
                result.add(parent)
                stack.append(parent)
    return result
