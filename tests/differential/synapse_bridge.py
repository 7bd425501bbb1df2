"""Synapse as a test oracle: JSON lines on stdin, JSON lines on stdout.

Run ONLY by the Synapse oracle venv's python (scripts/synapse-oracle-venv), as a separate
process. Synapse is AGPL: it is never imported by product code, and nothing here is
imported by the test process either (the tests talk to this script through a pipe).

Requests (one JSON object per line; an optional "id" is echoed back):

  {"op": "ping"}
      -> {"result": {"synapse_version": "..."}}
  {"op": "redact", "room_version": "11", "event": {...}}
      -> {"result": <redacted event dict>}
  {"op": "event_id", "room_version": "11", "event": {...}}
      -> {"result": "$..."}
  {"op": "auth", "room_version": "11", "event": {...}, "auth_events": [{...}, ...],
   "mode": "state" | "full"}
      "state": the state-dependent auth rules against `auth_events` taken as the room
               state (as state resolution does); create events get the create rules.
      "full":  also the format checks (signatures present, size limits) and the
               state-independent rules (rule 2: the event's own auth_events,
               looked up in `auth_events`), then the state-dependent rules against the
               event's own auth events (as for a PDU received over federation).
      -> {"result": {"allowed": true|false, "reason": "..."}}, plus "crash": "..." when
         Synapse's auth code raised something other than an auth/validation error
  {"op": "resolve", "room_version": "11", "state_sets": [[[type, state_key, event_id],
   ...], ...], "events": [{...}, ...], "repeat": 1}
      -> {"result": [[type, state_key, event_id], ...], "elapsed_s": <seconds per run>}
      `events` holds every event the resolution may need (state and auth chains);
      `elapsed_s` times the resolution alone (no parsing, no IPC), the best of `repeat`.

Any failure answers {"error": "...", "error_type": "..."} and the bridge keeps serving.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Collection, Coroutine, Iterable
from typing import Any

# Synapse logs through `logging`; nothing but replies may reach stdout.
_REPLY = sys.stdout
sys.stdout = sys.stderr
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

import synapse  # noqa: E402
from synapse import event_auth  # noqa: E402
from synapse.api.errors import SynapseError  # noqa: E402
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion  # noqa: E402
from synapse.events import EventBase, make_event_from_dict  # noqa: E402
from synapse.state import v1 as state_v1  # noqa: E402
from synapse.state import v2 as state_v2  # noqa: E402
from synapse.storage.databases.main.event_federation import StateDifference  # noqa: E402
from synapse.synapse_rust.events import redact_event_dict  # noqa: E402
from synapse.synapse_rust.room_versions import StateResolutionVersions  # noqa: E402
from twisted.internet import defer  # noqa: E402


class BridgeError(Exception):
    """A malformed request (reported to the caller, not a Synapse verdict)."""


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never truly waits (our store and clock answer at once)."""
    d = defer.ensureDeferred(coro)
    box: list[Any] = []
    d.addBoth(box.append)
    if not box:
        raise BridgeError("coroutine suspended: the in-memory store should never block")
    result = box[0]
    if hasattr(result, "raiseException"):  # twisted Failure
        result.raiseException()
    return result


def _room_version(req: dict[str, Any]) -> RoomVersion:
    ident = req.get("room_version")
    rv = KNOWN_ROOM_VERSIONS.get(ident) if isinstance(ident, str) else None
    if rv is None:
        raise BridgeError(f"unknown room_version {ident!r}")
    return rv


def _event(event_json: Any, rv: RoomVersion) -> EventBase:
    if not isinstance(event_json, dict):
        raise BridgeError("event must be a JSON object")
    return make_event_from_dict(event_json, rv)


class _Clock:
    async def sleep(self, duration: Any) -> None:
        return None


class _MemoryStore:
    """The parts of Synapse's storage that state resolution and event auth read.

    Auth chains include the events themselves and the conflicted subgraph is the
    intersection of what conflicted events reach and what reaches them, as Synapse's
    database implementation computes them.
    """

    def __init__(self, events: dict[str, EventBase]):
        self.events = events
        self._chains: dict[str, frozenset[str]] = {}

    async def get_events(
        self, event_ids: Collection[str], allow_rejected: bool = False, **_kw: Any
    ) -> dict[str, EventBase]:
        return {e: self.events[e] for e in event_ids if e in self.events}

    def auth_chain(self, event_id: str) -> frozenset[str]:
        """The event and every event reachable through auth_events (iteratively)."""
        done = self._chains.get(event_id)
        if done is not None:
            return done
        result: set[str] = set()
        stack = [event_id]
        while stack:
            eid = stack.pop()
            if eid in result:
                continue
            cached = self._chains.get(eid)
            if cached is not None:
                result |= cached
                continue
            result.add(eid)
            ev = self.events.get(eid)
            if ev is not None:
                stack.extend(ev.auth_event_ids())
        chain = frozenset(result)
        self._chains[event_id] = chain
        return chain

    def _chain_of_set(self, ids: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for eid in ids:
            out |= self.auth_chain(eid)
        return out

    async def get_auth_chain_difference(
        self,
        room_id: str,
        state_sets: list[set[str]],
        conflicted_state: set[str] | None,
        additional_backwards_reachable_conflicted_events: set[str] | None,
    ) -> StateDifference:
        chains = [self._chain_of_set(s) for s in state_sets]
        diff = set().union(*chains) - set(chains[0]).intersection(*chains[1:])
        subgraph: set[str] | None = None
        if conflicted_state is not None:
            backwards = self._chain_of_set(conflicted_state)
            backwards |= self._chain_of_set(additional_backwards_reachable_conflicted_events or ())
            conflicted = set(conflicted_state)
            subgraph = {
                eid
                for eid in backwards
                if eid in conflicted or not self.auth_chain(eid).isdisjoint(conflicted)
            }
        return StateDifference(auth_difference=diff, conflicted_subgraph=subgraph)


def op_ping(req: dict[str, Any]) -> Any:
    return {"synapse_version": synapse.__version__}


def op_redact(req: dict[str, Any]) -> Any:
    rv = _room_version(req)
    event = req.get("event")
    if not isinstance(event, dict):
        raise BridgeError("event must be a JSON object")
    return redact_event_dict(rv, event)


def op_event_id(req: dict[str, Any]) -> Any:
    rv = _room_version(req)
    return _event(req.get("event"), rv).event_id


def op_auth(req: dict[str, Any]) -> Any:
    rv = _room_version(req)
    event = _event(req.get("event"), rv)
    auth_events = [_event(e, rv) for e in req.get("auth_events", [])]
    mode = req.get("mode", "state")
    try:
        if mode == "state":
            if event.type == "m.room.create":
                event_auth._check_create(event)
            else:
                event_auth.check_state_dependent_auth_rules(event, auth_events)
        elif mode == "full":
            # Signature presence (sender's server; a restricted join's authorising
            # server) and size limits: rule 5.2.1 lives here in Synapse.
            event_auth.validate_event_for_room_version(event)
            by_id = {e.event_id: e for e in auth_events}
            _run(event_auth.check_state_independent_auth_rules(_MemoryStore(by_id), event))
            own = [by_id[eid] for eid in event.auth_event_ids() if eid in by_id]
            event_auth.check_state_dependent_auth_rules(event, own)
        else:
            raise BridgeError(f"unknown auth mode {mode!r}")
    except SynapseError as e:  # AuthError and the 400s some content checks raise
        return {"allowed": False, "reason": f"{type(e).__name__}: {e.msg}"}
    except BridgeError:
        raise
    except Exception as e:  # Synapse's auth code itself blew up on this event
        return {"allowed": False, "reason": None, "crash": f"{type(e).__name__}: {e}"}
    return {"allowed": True, "reason": None}


def _state_sets(raw: Any) -> list[dict[tuple[str, str], str]]:
    if not isinstance(raw, list) or not raw:
        raise BridgeError("state_sets must be a non-empty list")
    sets = []
    for s in raw:
        sets.append({(t, k): eid for t, k, eid in s})
    return sets


def op_resolve(req: dict[str, Any]) -> Any:
    rv = _room_version(req)
    state_sets = _state_sets(req.get("state_sets"))
    events: dict[str, EventBase] = {}
    for ej in req.get("events", []):
        ev = _event(ej, rv)
        events[ev.event_id] = ev
    missing = {eid for s in state_sets for eid in s.values()} - events.keys()
    if missing:
        raise BridgeError(f"state_sets name events Synapse does not know: {sorted(missing)[:5]}")
    room_ids = {ev.room_id for ev in events.values()}
    if len(room_ids) != 1:
        raise BridgeError(f"events span {len(room_ids)} rooms")
    room_id = room_ids.pop()
    repeat = max(1, int(req.get("repeat", 1)))

    best = float("inf")
    result: Any = None
    for _ in range(repeat):
        store = _MemoryStore(events)
        start = time.perf_counter()
        if rv.state_res == StateResolutionVersions.V1:

            async def factory(ids: Collection[str], store: _MemoryStore = store) -> Any:
                return await store.get_events(ids)

            coro = state_v1.resolve_events_with_store(room_id, rv, state_sets, None, factory)
        else:
            coro = state_v2.resolve_events_with_store(
                _Clock(), room_id, rv, state_sets, None, store
            )
        result = _run(coro)
        best = min(best, time.perf_counter() - start)
    resolved = sorted([t, k, eid] for (t, k), eid in dict(result).items())
    return {"_result": resolved, "elapsed_s": best}


OPS = {
    "ping": op_ping,
    "redact": op_redact,
    "event_id": op_event_id,
    "auth": op_auth,
    "resolve": op_resolve,
}


def handle(line: str) -> dict[str, Any]:
    req_id = None
    try:
        req = json.loads(line)
        if not isinstance(req, dict):
            raise BridgeError("request must be a JSON object")
        req_id = req.get("id")
        op = OPS.get(req.get("op"))  # type: ignore[arg-type]
        if op is None:
            raise BridgeError(f"unknown op {req.get('op')!r}")
        out = op(req)
        if isinstance(out, dict) and "_result" in out:
            reply = {"result": out.pop("_result"), **out}
        else:
            reply = {"result": out}
    except Exception as e:  # one bad request must not take the oracle down
        reply = {
            "error": f"{type(e).__name__}: {e}",
            "error_type": type(e).__name__,
            "traceback": traceback.format_exc(limit=8),
        }
    if req_id is not None:
        reply["id"] = req_id
    return reply


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = handle(line)
        _REPLY.write(json.dumps(reply, ensure_ascii=False) + "\n")
        _REPLY.flush()


if __name__ == "__main__":
    main()
