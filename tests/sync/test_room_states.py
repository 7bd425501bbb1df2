"""RoomStateLog: which rooms' members may have changed after a position, told late and
never claiming to know more than it observed."""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.sync.notifier import Notifier
from homeserver.sync.room_states import RoomStateLog

R = "!r:x"


class _Room:
    """Events of one room on a linear chain, observed by a log."""

    def __init__(self, log: RoomStateLog, room_id: str = R):
        self.log = log
        self.room_id = room_id
        self.last: str | None = None

    def event(self, position: int, snapshot: int | None, *, state: bool = False,
              member: bool = False, prev: Sequence[str] | None = None) -> None:
        event_id = f"${position}"
        prevs = prev if prev is not None else ([] if self.last is None else [self.last])
        self.log.observe(self.room_id, position, snapshot, event_id=event_id,
                         prev_events=prevs, state=state or member, member=member)
        self.last = event_id


def _created(log: RoomStateLog, room_id: str = R) -> _Room:
    room = _Room(log, room_id)
    room.event(1, 1, state=True)  # m.room.create
    room.event(2, 2, member=True)  # the creator's join
    return room


def test_members_change_with_member_events_only() -> None:
    log = RoomStateLog()
    assert log.changed_after(R, 0) is None  # never observed: not known
    room = _created(log)
    assert log.changed_after(R, 1) is True and log.member_changed_after(R, 1)
    assert log.changed_after(R, 2) is False and not log.member_changed_after(R, 2)
    room.event(3, 2)  # a message
    room.event(4, 3, state=True)  # a topic on the only extremity: that key alone changed
    assert log.changed_after(R, 2) is False
    room.event(5, 4, member=True)
    assert log.changed_after(R, 4) is True and log.member_changed_after(R, 4)
    assert log.changed_after(R, 5) is False


def test_state_not_built_on_the_known_tip_makes_the_room_not_known() -> None:
    log = RoomStateLog()
    room = _created(log)
    room.event(3, 2, prev=["$2", "$elsewhere"])  # a merge that kept the state
    assert log.changed_after(R, 2) is False
    room.event(4, 3, state=True)  # the tip is no longer known: a resolution may hide here
    assert log.changed_after(R, 4) is None
    assert not log.member_changed_after(R, 3)
    room.event(5, 4, member=True)  # still not known, but certainly changed
    assert log.changed_after(R, 5) is None and log.member_changed_after(R, 4)


def test_a_changed_snapshot_under_a_message_makes_the_room_not_known() -> None:
    log = RoomStateLog()
    room = _created(log)
    room.event(3, 7)  # a state resolution under a plain message
    assert log.changed_after(R, 3) is None


def test_a_change_observed_after_a_token_past_it_was_handed_out_is_sent_again() -> None:
    log = RoomStateLog()
    room = _created(log)
    # A sync read position 12 (the events up to 12 committed) before 10 was observed:
    # it may have left the change out, so the token it hands out must not hide it.
    log.note_handed_out(12)
    room.event(10, 3, member=True)
    assert log.changed_after(R, 12) is True and log.member_changed_after(R, 12)
    assert log.changed_after(R, 13) is False


def test_a_room_first_seen_mid_history_counts_as_changed_then() -> None:
    log = RoomStateLog(size=2)
    log.note_handed_out(40)
    _Room(log).event(50, 9, prev=["$49"])  # after a restart
    assert log.member_changed_after(R, 49) and not log.changed_after(R, 50)
    log.observe(R, 51, 10, event_id="$51", prev_events=["$50"], state=True, member=False)
    assert log.changed_after(R, 51) is None  # no known tip: not known


def test_evicted_rooms_are_not_known() -> None:
    log = RoomStateLog(size=2)
    a, b = _created(log, "!a:x"), _created(log, "!b:x")
    a.event(3, 2)  # used: b is now the oldest
    _created(log, "!c:x")
    assert log.changed_after("!b:x", 10) is None
    assert log.changed_after("!a:x", 3) is False
    b.event(11, 2)  # observed again: a new entry, changed at its first observation
    assert log.changed_after("!b:x", 10) is True and log.changed_after("!b:x", 11) is False


def test_an_event_out_of_order_is_not_reasoned_about() -> None:
    log = RoomStateLog()
    room = _created(log)
    room.event(5, 2)
    room.event(4, 2)
    assert log.changed_after(R, 5) is None


def test_a_notification_the_log_did_not_observe_makes_the_room_not_known() -> None:
    notifier = Notifier()
    room = _created(notifier.room_states)
    notifier.notify_room_event(R, 2)  # observed first: nothing new
    assert notifier.room_states.changed_after(R, 2) is False
    notifier.notify("events", 7, rooms=[R])  # another process's event
    assert notifier.room_states.changed_after(R, 2) is None
    room.event(8, 2)
    assert notifier.room_states.changed_after(R, 100) is None
