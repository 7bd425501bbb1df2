"""Benchmark: state resolution of a big synthetic fork.

Run: `.venv/bin/python bench/state_res.py [n_state] [n_conflicted] [room_version]`
(defaults 10000, 1000, 12). `make_synthetic_room` returns plain JSON PDUs with real
event IDs (reference hashes from v3 on), so the same room can be fed to another
implementation (the Synapse side of this benchmark).

The room: a trunk of joins with a power-levels change every thousand events (so the
mainline has some length), then two concurrent branches. Both branches rename the same
users (two conflicted events per key) and set a topic; one branch changes the power
levels and kicks a user, the other has a moderator ban a user.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from homeserver.events.hashing import add_content_hash, compute_event_id  # noqa: E402
from homeserver.events.pdu import Pdu  # noqa: E402
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion  # noqa: E402
from homeserver.state.auth_events import auth_types_for_event  # noqa: E402
from homeserver.state.resolution import resolve_state  # noqa: E402

JsonDict = dict[str, Any]
StateMap = dict[tuple[str, str], str]

ADMIN = "@admin:bench.test"
MOD = "@mod:bench.test"


def _user(i: int) -> str:
    return f"@user{i}:server{i % 50}.test"


class _Builder:
    """Emits events in one room, each citing the auth events its branch's state gives."""

    def __init__(self, rv: RoomVersion):
        self.rv = rv
        self.events: dict[str, JsonDict] = {}
        self.depth: dict[str, int] = {}
        self.room_id = "!bench:bench.test"
        self._ts = 1_700_000_000_000
        self._n = 0

    def emit(
        self,
        state: StateMap,
        prev: str | None,
        type: str,
        sender: str,
        content: JsonDict,
        state_key: str,
    ) -> str:
        """Add a state event after `prev`, updating `state` in place; returns its ID."""
        keys = auth_types_for_event(self.rv, type, sender, state_key, content)
        auth = [state[k] for k in keys if k in state]
        prevs = [prev] if prev else []
        self._ts += 1
        self._n += 1
        ev: JsonDict = {
            "type": type,
            "sender": sender,
            "content": content,
            "state_key": state_key,
            "prev_events": self._refs(prevs),
            "auth_events": self._refs(auth),
            "depth": max((self.depth[p] for p in prevs), default=0) + 1,
            "origin_server_ts": self._ts,
        }
        if not (type == "m.room.create" and self.rv.room_id_from_create_event):
            ev["room_id"] = self.room_id
        if self.rv.legacy_event_format:
            ev["event_id"] = f"${self._n}:bench.test"
        ev = add_content_hash(ev)
        event_id = compute_event_id(ev, self.rv)
        if type == "m.room.create" and self.rv.room_id_from_create_event:
            self.room_id = "!" + event_id[1:]
        self.events[event_id] = ev
        self.depth[event_id] = ev["depth"]
        state[(type, state_key)] = event_id
        return event_id

    def _refs(self, ids: list[str]) -> list[Any]:
        if self.rv.legacy_event_format:
            return [[i, {"sha256": self.events[i]["hashes"]["sha256"]}] for i in ids]
        return ids

    def power_levels(self, users: dict[str, int]) -> JsonDict:
        levels = {ADMIN: 100, MOD: 50, **users}
        if self.rv.privileged_creators:
            levels.pop(ADMIN)  # a v12 creator's level is implicit and may not be listed
        return {"users": levels, "state_default": 50, "ban": 50, "kick": 50}


def _trunk(b: _Builder, n_users: int) -> tuple[StateMap, str]:
    state: StateMap = {}
    create: JsonDict = {"room_version": b.rv.identifier}
    if not b.rv.implicit_room_creator:
        create["creator"] = ADMIN
    head = b.emit(state, None, "m.room.create", ADMIN, create, "")
    head = b.emit(state, head, "m.room.member", ADMIN, {"membership": "join"}, ADMIN)
    head = b.emit(state, head, "m.room.power_levels", ADMIN, b.power_levels({}), "")
    head = b.emit(state, head, "m.room.join_rules", ADMIN, {"join_rule": "public"}, "")
    head = b.emit(state, head, "m.room.member", MOD, {"membership": "join"}, MOD)
    for i in range(n_users):
        head = b.emit(state, head, "m.room.member", _user(i), {"membership": "join"}, _user(i))
        if i % 1000 == 999:
            pl = b.power_levels({_user(i): 10})
            head = b.emit(state, head, "m.room.power_levels", ADMIN, pl, "")
    return state, head


def _branch(
    b: _Builder, state: StateMap, head: str, renames: int, tag: str, power: bool
) -> StateMap:
    state = dict(state)
    if power:
        pl = b.power_levels({_user(1): 20})
        head = b.emit(state, head, "m.room.power_levels", ADMIN, pl, "")
        kicked = {"membership": "leave"}
        head = b.emit(state, head, "m.room.member", ADMIN, kicked, _user(renames + 1))
    else:
        head = b.emit(state, head, "m.room.member", MOD, {"membership": "ban"}, _user(renames + 2))
    for i in range(renames):
        content = {"membership": "join", "displayname": f"{tag}{i}"}
        head = b.emit(state, head, "m.room.member", _user(i), content, _user(i))
    b.emit(state, head, "m.room.topic", ADMIN if power else MOD, {"topic": tag}, "")
    return state


def make_synthetic_room(
    n_state: int, n_conflicted: int, room_version: str
) -> tuple[list[StateMap], dict[str, JsonDict]]:
    """Two state maps of about `n_state` entries whose conflicted state set holds about
    `n_conflicted` events, and every event of the room as JSON by event ID."""
    b = _Builder(KNOWN_ROOM_VERSIONS[room_version])
    renames = max(1, (n_conflicted - 6) // 2)
    trunk_users = max(renames + 3, n_state - 6)
    state, head = _trunk(b, trunk_users)
    left = _branch(b, state, head, renames, "left", power=True)
    right = _branch(b, state, head, renames, "right", power=False)
    return [left, right], b.events


def main() -> None:
    n_state = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_conflicted = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    version = sys.argv[3] if len(sys.argv) > 3 else "12"
    rv = KNOWN_ROOM_VERSIONS[version]
    state_sets, events = make_synthetic_room(n_state, n_conflicted, version)
    pdus = {eid: Pdu(ev, rv, event_id=eid) for eid, ev in events.items()}
    conflicted = {
        s[k]
        for k in set(state_sets[0]) | set(state_sets[1])
        for s in state_sets
        if k in s and state_sets[0].get(k) != state_sets[1].get(k)
    }
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        resolved = resolve_state(rv, state_sets, pdus.get)
        timings.append(time.perf_counter() - start)
    print(
        f"room v{version}: {len(events)} events, state {len(state_sets[0])}/"
        f"{len(state_sets[1])}, {len(conflicted)} conflicted, resolved {len(resolved)} "
        f"entries; resolve_state best {min(timings) * 1000:.1f} ms "
        f"(runs: {', '.join(f'{t * 1000:.1f}' for t in timings)} ms)"
    )


if __name__ == "__main__":
    main()
