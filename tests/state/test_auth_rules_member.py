"""Rule 5 (v12 numbering): m.room.member — join, invite, leave, ban, knock, restricted
joins and third-party invites, per room version where they differ."""

from __future__ import annotations

import pytest

from homeserver.state.auth_rules import AuthError
from tests.state.room_factory import ALICE, ALL_VERSIONS, BOB, CAROL, Room, standard_room


def member_event(room: Room, user: str, membership: str, sender: str | None = None, **content):
    return room.event("m.room.member", sender or user, {"membership": membership, **content}, user)


def allowed(room: Room, event) -> None:
    room.check(event)


def rejected(room: Room, event, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        room.check(event)


# -- 5.1 shape ---------------------------------------------------------------------


def test_member_without_membership_is_rejected():
    room = standard_room("10", "public")
    rejected(room, room.event("m.room.member", BOB, {}, BOB), "5.1")


def test_member_without_state_key_is_rejected():
    room = standard_room("10", "public")
    rejected(room, room.event("m.room.member", BOB, {"membership": "join"}), "5.1")


@pytest.mark.parametrize("membership", ["dance", 5])
def test_unknown_membership_is_rejected(membership):
    room = standard_room("10", "public")
    rejected(room, member_event(room, BOB, membership), "5.8")


def test_knock_is_an_unknown_membership_before_v7():
    room = standard_room("6", "knock")
    rejected(room, member_event(room, BOB, "knock"), "5.8")


# -- 5.3 join ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_creator_joins_right_after_create(version):
    room = Room(version)
    allowed(room, member_event(room, ALICE, "join"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_non_creator_cannot_join_right_after_create(version):
    room = Room(version)
    rejected(room, member_event(room, BOB, "join"), "5.3")


def test_v12_additional_creator_is_not_the_first_joiner():
    room = Room("12", create_content={"additional_creators": [BOB]})
    rejected(room, member_event(room, BOB, "join"), "5.3")


def test_first_join_uses_content_creator_before_v11():
    room = Room("10", creator=ALICE, create_content={"creator": BOB})
    allowed(room, member_event(room, BOB, "join"))
    rejected(room, member_event(room, ALICE, "join"), "5.3")


def test_first_join_uses_create_sender_from_v11():
    room = Room("11", creator=ALICE, create_content={"creator": BOB})
    allowed(room, member_event(room, ALICE, "join"))
    rejected(room, member_event(room, BOB, "join"), "5.3")


def test_join_for_someone_else_is_rejected():
    room = standard_room("10", "public")
    rejected(room, member_event(room, BOB, "join", sender=ALICE), "5.3.2")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_public_room_join(version):
    room = standard_room(version, "public")
    allowed(room, member_event(room, BOB, "join"))


def test_banned_user_cannot_join_public_room():
    room = standard_room("10", "public")
    room.member(BOB, "ban", sender=ALICE)
    rejected(room, member_event(room, BOB, "join"), "5.3.3")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite_only_room_needs_an_invite(version):
    room = standard_room(version, "invite")
    rejected(room, member_event(room, BOB, "join"), "5.3.4")
    room.member(BOB, "invite", sender=ALICE)
    allowed(room, member_event(room, BOB, "join"))


def test_joined_user_may_rejoin_invite_room():
    room = standard_room("10", "invite")
    allowed(room, member_event(room, ALICE, "join", displayname="Al"))


def test_missing_join_rules_reads_as_invite():
    room = Room("10")
    room.member(ALICE, "join")
    rejected(room, member_event(room, BOB, "join"), "5.3.4")
    room.member(BOB, "invite", sender=ALICE)
    allowed(room, member_event(room, BOB, "join"))


@pytest.mark.parametrize("rule", ["private", "nonsense"])
def test_other_join_rules_reject(rule):
    room = standard_room("10", rule)
    room.member(BOB, "invite", sender=ALICE)
    rejected(room, member_event(room, BOB, "join"), "5.3.7")


def test_knock_join_rule_acts_as_invite_from_v7():
    room = standard_room("7", "knock")
    rejected(room, member_event(room, BOB, "join"), "5.3.4")
    room.member(BOB, "invite", sender=ALICE)
    allowed(room, member_event(room, BOB, "join"))


def test_knock_join_rule_is_unknown_before_v7():
    room = standard_room("6", "knock")
    room.member(BOB, "invite", sender=ALICE)
    rejected(room, member_event(room, BOB, "join"), "5.3.7")


# -- 5.4 invite --------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_joined_member_invites(version):
    room = standard_room(version)
    allowed(room, member_event(room, BOB, "invite", sender=ALICE))


def test_inviter_must_be_joined():
    room = standard_room("10")
    rejected(room, member_event(room, BOB, "invite", sender=CAROL), "5.4.2")


@pytest.mark.parametrize("membership", ["join", "ban"])
def test_cannot_invite_joined_or_banned(membership):
    room = standard_room("10", "public")
    room.member(BOB, membership, sender=BOB if membership == "join" else ALICE)
    rejected(room, member_event(room, BOB, "invite", sender=ALICE), "5.4.3")


def test_invite_needs_invite_level():
    room = standard_room("10", "public", users={CAROL: 5})
    room.add("m.room.power_levels", ALICE, {"users": {ALICE: 100, CAROL: 5}, "invite": 10})
    room.member(CAROL, "join")
    rejected(room, member_event(room, BOB, "invite", sender=CAROL), "5.4.4")
    room.add("m.room.power_levels", ALICE, {"users": {ALICE: 100, CAROL: 10}, "invite": 10})
    allowed(room, member_event(room, BOB, "invite", sender=CAROL))


# -- 5.5 leave ---------------------------------------------------------------------


@pytest.mark.parametrize("prior", ["join", "invite"])
def test_user_leaves_or_rejects_invite(prior):
    room = standard_room("10", "public")
    room.member(BOB, prior, sender=BOB if prior == "join" else ALICE)
    allowed(room, member_event(room, BOB, "leave"))


@pytest.mark.parametrize("prior", [None, "leave", "ban"])
def test_user_cannot_leave_from_elsewhere(prior):
    room = standard_room("10", "public")
    if prior:
        room.member(BOB, prior, sender=ALICE if prior == "ban" else BOB)
    rejected(room, member_event(room, BOB, "leave"), "5.5.1")


@pytest.mark.parametrize("version", ["7", "10", "12"])
def test_knocking_user_may_retract_from_v7(version):
    room = standard_room(version, "knock")
    room.member(BOB, "knock")
    allowed(room, member_event(room, BOB, "leave"))


def test_kick_needs_kick_level_and_higher_power():
    room = standard_room("10", "public", users={CAROL: 50, BOB: 50})
    for user in (BOB, CAROL):
        room.member(user, "join")
    rejected(room, member_event(room, BOB, "leave", sender=CAROL), "5.5.4")
    allowed(room, member_event(room, BOB, "leave", sender=ALICE))
    rejected(room, member_event(room, ALICE, "leave", sender=CAROL), "5.5.4")


def test_kicker_must_be_joined():
    room = standard_room("10", "public")
    room.member(BOB, "join")
    room.member(ALICE, "leave")
    rejected(room, member_event(room, BOB, "leave", sender=ALICE), "5.5.2")


def test_unban_needs_ban_level():
    room = standard_room("10", "public", users={CAROL: 60})
    room.add(
        "m.room.power_levels", ALICE, {"users": {ALICE: 100, CAROL: 60}, "ban": 70, "kick": 50}
    )
    room.member(CAROL, "join")
    room.member(BOB, "ban", sender=ALICE)
    rejected(room, member_event(room, BOB, "leave", sender=CAROL), "5.5.3")
    allowed(room, member_event(room, BOB, "leave", sender=ALICE))


# -- 5.6 ban -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_ban(version):
    room = standard_room(version, "public", users={CAROL: 10})
    room.member(CAROL, "join")
    allowed(room, member_event(room, BOB, "ban", sender=ALICE))
    allowed(room, member_event(room, CAROL, "ban", sender=ALICE))
    rejected(room, member_event(room, BOB, "ban", sender=CAROL), "5.6.2")
    rejected(room, member_event(room, ALICE, "ban", sender=CAROL), "5.6.2")


def test_banner_must_be_joined():
    room = standard_room("10", "public")
    room.member(ALICE, "leave")
    rejected(room, member_event(room, BOB, "ban", sender=ALICE), "5.6.1")


def test_equal_power_cannot_ban():
    room = standard_room("10", "public", users={CAROL: 100})
    room.member(CAROL, "join")
    rejected(room, member_event(room, CAROL, "ban", sender=ALICE), "5.6.2")


# -- 5.7 knock ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["7", "10", "12"])
def test_knock_on_knock_room(version):
    room = standard_room(version, "knock")
    allowed(room, member_event(room, BOB, "knock"))


@pytest.mark.parametrize("version, ok", [("7", False), ("9", False), ("10", True), ("12", True)])
def test_knock_on_knock_restricted_room(version, ok):
    room = standard_room(version, "knock_restricted")
    event = member_event(room, BOB, "knock")
    if ok:
        allowed(room, event)
    else:
        rejected(room, event, "5.7.1")


@pytest.mark.parametrize("rule", ["public", "invite", "restricted"])
def test_knock_on_other_rooms_is_rejected(rule):
    room = standard_room("10", rule)
    rejected(room, member_event(room, BOB, "knock"), "5.7.1")


def test_knock_for_someone_else_is_rejected():
    room = standard_room("10", "knock")
    rejected(room, member_event(room, BOB, "knock", sender=ALICE), "5.7.2")


@pytest.mark.parametrize("prior", ["ban", "invite", "join"])
def test_knock_by_banned_invited_or_joined_is_rejected(prior):
    room = standard_room("10", "knock")
    room.member(BOB, prior, sender=ALICE if prior in ("ban", "invite") else BOB)
    rejected(room, member_event(room, BOB, "knock"), "5.7.4")


@pytest.mark.parametrize("prior", ["leave", "knock"])
def test_knock_again_after_leave_or_knock(prior):
    room = standard_room("10", "knock")
    room.member(BOB, prior)
    allowed(room, member_event(room, BOB, "knock"))


# -- v12 creators in membership --------------------------------------------------


def test_v12_creator_cannot_be_kicked_or_banned_by_anyone():
    room = Room("12", create_content={"additional_creators": [BOB]})
    room.member(ALICE, "join")
    room.add("m.room.join_rules", ALICE, {"join_rule": "public"})
    room.add("m.room.power_levels", ALICE, {"users": {CAROL: 100}})
    room.member(BOB, "join")
    room.member(CAROL, "join")
    rejected(room, member_event(room, BOB, "ban", sender=CAROL), "5.6.2")
    rejected(room, member_event(room, BOB, "ban", sender=ALICE), "5.6.2")  # inf < inf is false
    allowed(room, member_event(room, CAROL, "ban", sender=BOB))
    allowed(room, member_event(room, CAROL, "leave", sender=BOB))


def test_v12_creator_passes_every_level():
    room = Room("12")
    room.member(ALICE, "join")
    room.add("m.room.power_levels", ALICE, {"invite": 10**15, "ban": 10**15})
    allowed(room, member_event(room, BOB, "invite", sender=ALICE))
    allowed(room, member_event(room, BOB, "ban", sender=ALICE))
