"""The notifier wakes exactly the waiters a stream change concerns, at once."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.sync.notifier import Notification, Notifier
from homeserver.sync.tokens import SyncToken

T0 = SyncToken({"events": 10, "receipts": 5})
LONG = 60_000  # the tests never wait this long: a pass means a wake-up happened


async def _started(coro: object) -> asyncio.Task[bool]:
    task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
    await asyncio.sleep(0)  # let it register; not a timing assumption, one loop turn
    return task


async def test_relevant_room_event_wakes_at_once() -> None:
    n = Notifier()
    task = await _started(n.wait_for("@a:x", T0, {"!r:x"}, LONG))
    assert not task.done()
    n.notify("events", 11, rooms=["!r:x"])
    assert await task is True
    assert n.waiter_count() == 0


async def test_user_targeted_stream_wakes_that_user() -> None:
    n = Notifier()
    task = await _started(n.wait_for("@a:x", T0, set(), LONG))
    n.notify("to_device", 1, users=["@a:x"])
    assert await task is True


async def test_irrelevant_notifications_do_not_wake() -> None:
    n = Notifier()
    task = await _started(n.wait_for("@a:x", T0, {"!r:x"}, LONG))
    n.notify("events", 11, rooms=["!other:x"])
    n.notify("account_data", 3, users=["@b:x"])
    n.notify("events", 9, rooms=["!r:x"])  # not past the token
    await asyncio.sleep(0)
    assert not task.done()
    n.notify("receipts", 6, rooms=["!r:x"])
    assert await task is True


async def test_timeout_returns_false_and_unregisters() -> None:
    n = Notifier()
    assert await n.wait_for("@a:x", T0, {"!r:x"}, 1) is False
    assert await n.wait_for("@a:x", T0, {"!r:x"}, 0) is False
    assert n.waiter_count() == 0


async def test_change_between_compute_and_wait_is_not_lost() -> None:
    n = Notifier()
    n.notify("events", 11, rooms=["!r:x"])  # happened after the sync computed at T0
    assert await n.wait_for("@a:x", T0, {"!r:x"}, LONG) is True
    assert await n.wait_for("@a:x", T0.copy_with("events", 11), {"!r:x"}, 0) is False


async def test_one_notify_wakes_a_thousand_waiters() -> None:
    n = Notifier(max_waiters_per_user=10)
    tasks = [await _started(n.wait_for(f"@u{i}:x", T0, {"!big:x"}, LONG)) for i in range(1000)]
    assert n.waiter_count() == 1000
    n.notify("events", 11, rooms=["!big:x"])
    assert await asyncio.gather(*tasks) == [True] * 1000
    assert n.waiter_count() == 0


async def test_cancellation_unregisters() -> None:
    n = Notifier()
    task = await _started(n.wait_for("@a:x", T0, {"!r:x", "!s:x"}, LONG))
    assert n.waiter_count() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert n.waiter_count() == 0 and not n._waiters
    n.notify("events", 11, rooms=["!r:x"])  # nothing left to wake, nothing breaks


async def test_too_many_waiters_for_one_user_releases_the_oldest() -> None:
    n = Notifier(max_waiters_per_user=2)
    first = await _started(n.wait_for("@a:x", T0, set(), LONG))
    second = await _started(n.wait_for("@a:x", T0, set(), LONG))
    third = await _started(n.wait_for("@a:x", T0, set(), LONG))
    assert await first is False
    assert not second.done() and not third.done()
    n.notify("presence", 1, users=["@a:x"])
    assert await asyncio.gather(second, third) == [True, True]


async def test_forgotten_keys_wake_conservatively() -> None:
    n = Notifier(max_tracked_keys=2)
    n.notify("events", 11, rooms=["!r1:x"])
    n.notify("events", 12, rooms=["!r2:x"])
    n.notify("events", 13, rooms=["!r3:x"])  # !r1 is forgotten; the floor is 11
    assert n.has_update("@a:x", T0, {"!unrelated:x"}) is True
    assert n.has_update("@a:x", T0.copy_with("events", 11), {"!unrelated:x"}) is False


async def test_publishers_see_local_notifications_and_deliver_feeds_remote_ones() -> None:
    n = Notifier()
    seen: list[Notification] = []
    n.add_publisher(seen.append)
    n.add_publisher(lambda _: (_ for _ in ()).throw(RuntimeError("bridge down")))
    task = await _started(n.wait_for("@a:x", T0, set(), LONG))
    n.deliver(Notification("device_lists", 1, users=frozenset({"@a:x"})))  # from elsewhere
    assert await task is True
    assert seen == []
    n.notify("push_rules", 2, users=["@a:x"])
    assert seen == [Notification("push_rules", 2, users=frozenset({"@a:x"}))]


async def test_unknown_stream_is_refused() -> None:
    with pytest.raises(ValueError):
        Notifier().notify("bogus", 1, users=["@a:x"])


async def test_membership_event_wakes_the_member_before_they_wait_on_the_room() -> None:
    n = Notifier()
    invitee = await _started(n.wait_for("@new:x", T0, set(), LONG))
    n.notify_room_event("!r:x", 11, member="@new:x")
    assert await invitee is True


def test_committed_token_only_while_the_latest_notification_carried_one() -> None:
    n = Notifier()
    assert n.committed_token() is None
    n.notify("receipts", 9, rooms=["!r:x"])
    assert n.committed_token() is None  # nothing vouches for the other streams
    carried = SyncToken({"events": 20, "receipts": 4, "device_lists": 3})
    n.notify_room_event("!r:x", 20, token=carried)
    # The carried token, raised to what was notified: the receipt at 9 committed after
    # the batch's statement saw 4, and was notified before the batch's own notification.
    assert n.committed_token() == SyncToken({"events": 20, "receipts": 9, "device_lists": 3})
    n.notify("to_device", 2, users=["@a:x"])
    assert n.committed_token() is None  # a notification without a token: read again
    n.deliver(Notification("events", 21, rooms=frozenset({"!r:x"}),
                           token=SyncToken({"events": 21})))
    assert n.committed_token() == SyncToken({"events": 21, "receipts": 9, "to_device": 2})


def test_a_token_behind_what_its_stream_already_notified_is_not_taken() -> None:
    """SQLite's group commit: Bob's join joined the transaction of a batch of messages
    after the batch read its positions (so its device-list position, which is never
    notified, is not in the batch's token), and is notified first."""
    n = Notifier()
    n.notify_room_event("!r1:x", 20, member="@bob:x")  # the join: events 20, no token
    batch = SyncToken({"events": 19, "device_lists": 3})  # read before the join's bump to 4
    n.notify_room_event("!r2:x", 18, token=batch)
    n.notify_room_event("!r2:x", 19, token=batch)
    assert n.committed_token() is None  # so the next sync reads device_lists at 4
    # In order, the next batch's token is taken again.
    n.notify_room_event("!r2:x", 21, token=SyncToken({"events": 21, "device_lists": 4}))
    assert n.committed_token() == SyncToken({"events": 21, "device_lists": 4})
