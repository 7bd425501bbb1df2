"""Which rooms a sync reports, and over which range (pure planning)."""

from __future__ import annotations

from homeserver.storage.memberships import Membership
from homeserver.sync.filters import RoomFilter
from homeserver.sync.room_plan import INVITE, JOIN, KNOCK, LEAVE, RoomPlan, plan_rooms


def _m(room: str, membership: str, position: int, forgotten: bool = False) -> Membership:
    return Membership(room, "@u:x", membership, f"$e{position}", "@u:x", position, forgotten)


def _plan(memberships: list[Membership], since: int | None, *, full_state: bool = False,
          room_filter: RoomFilter | None = None) -> dict[str, RoomPlan]:
    plans = plan_rooms(memberships, since=since, current=100,
                       room_filter=room_filter or RoomFilter(), full_state=full_state)
    return {p.room_id: p for p in plans}


def test_initial_sync_sees_joined_invited_and_knocked_rooms() -> None:
    plans = _plan([_m("!j", "join", 5), _m("!i", "invite", 6), _m("!k", "knock", 7),
                   _m("!l", "leave", 8)], None)
    assert {r: (p.section, p.full, p.low, p.high) for r, p in plans.items()} == {
        "!j": (JOIN, True, 0, 100), "!i": (INVITE, True, 0, 6), "!k": (KNOCK, True, 0, 7)}


def test_incremental_sync_is_incremental_except_for_newly_joined_rooms() -> None:
    plans = _plan([_m("!old", "join", 5), _m("!new", "join", 60), _m("!i", "invite", 6),
                   _m("!left", "leave", 70), _m("!gone", "leave", 8)], 50)
    assert {r: (p.section, p.full, p.low, p.high) for r, p in plans.items()} == {
        "!old": (JOIN, False, 50, 100), "!new": (JOIN, True, 0, 100),
        "!left": (LEAVE, False, 50, 70)}


def test_full_state_keeps_the_timeline_incremental() -> None:
    plans = _plan([_m("!old", "join", 5)], 50, full_state=True)
    assert (plans["!old"].full, plans["!old"].low) == (True, 50)


def test_include_leave_forgotten_rooms_and_room_filters() -> None:
    memberships = [_m("!l", "leave", 8), _m("!b", "ban", 9), _m("!f", "leave", 10, forgotten=True),
                   _m("!j", "join", 3)]
    plans = _plan(memberships, None, room_filter=RoomFilter(include_leave=True))
    assert set(plans) == {"!l", "!b", "!j"}
    assert plans["!l"].high == 8
    plans = _plan(memberships, None, room_filter=RoomFilter(not_rooms=frozenset({"!j"})))
    assert set(plans) == set()
