"""Auth events selection per room version."""

from __future__ import annotations

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.state.auth_events import auth_types_for_event, select_auth_event_ids
from tests.state.room_factory import ALICE, BOB, CAROL

V = KNOWN_ROOM_VERSIONS
CREATE = ("m.room.create", "")
PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")


def _member(user):
    return ("m.room.member", user)


def test_create_has_no_auth_events():
    assert auth_types_for_event(V["10"], "m.room.create", ALICE, "", {}) == []


def test_message_before_v12():
    assert auth_types_for_event(V["10"], "m.room.message", ALICE, None, {}) == [
        CREATE,
        PL,
        _member(ALICE),
    ]


def test_message_v12_has_no_create():
    assert auth_types_for_event(V["12"], "m.room.message", ALICE, None, {}) == [PL, _member(ALICE)]


def test_self_join_lists_member_once_and_join_rules():
    got = auth_types_for_event(V["10"], "m.room.member", BOB, BOB, {"membership": "join"})
    assert got == [CREATE, PL, _member(BOB), JR]


def test_invite_and_knock_need_join_rules_but_leave_does_not():
    invite = auth_types_for_event(V["10"], "m.room.member", ALICE, BOB, {"membership": "invite"})
    assert invite == [CREATE, PL, _member(ALICE), _member(BOB), JR]
    knock = auth_types_for_event(V["7"], "m.room.member", BOB, BOB, {"membership": "knock"})
    assert JR in knock
    leave = auth_types_for_event(V["10"], "m.room.member", ALICE, BOB, {"membership": "leave"})
    assert leave == [CREATE, PL, _member(ALICE), _member(BOB)]


def test_third_party_invite_token():
    content = {
        "membership": "invite",
        "third_party_invite": {"signed": {"token": "tok", "mxid": BOB}},
    }
    got = auth_types_for_event(V["10"], "m.room.member", ALICE, BOB, content)
    assert got[-1] == ("m.room.third_party_invite", "tok")
    broken = {"membership": "invite", "third_party_invite": {"signed": {"token": 5}}}
    assert len(auth_types_for_event(V["10"], "m.room.member", ALICE, BOB, broken)) == 5


def test_restricted_authoriser_from_v8():
    content = {"membership": "join", "join_authorised_via_users_server": CAROL}
    assert _member(CAROL) in auth_types_for_event(V["8"], "m.room.member", BOB, BOB, content)
    assert _member(CAROL) not in auth_types_for_event(V["7"], "m.room.member", BOB, BOB, content)
    leave = dict(content, membership="leave")
    assert _member(CAROL) not in auth_types_for_event(V["8"], "m.room.member", BOB, BOB, leave)


def test_select_auth_event_ids_picks_present_state():
    state = {CREATE: "$c", PL: "$p", _member(ALICE): "$a", JR: "$j", ("m.room.name", ""): "$n"}
    fields = {
        "type": "m.room.member",
        "sender": ALICE,
        "state_key": BOB,
        "content": {"membership": "invite"},
    }
    assert select_auth_event_ids(V["10"], fields, state) == ["$c", "$p", "$a", "$j"]
    assert select_auth_event_ids(V["12"], fields, state) == ["$p", "$a", "$j"]
    message = {"type": "m.room.message", "sender": BOB, "content": {}}
    assert select_auth_event_ids(V["10"], message, state) == ["$c", "$p"]
