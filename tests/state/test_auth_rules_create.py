"""Rules 1–4 (v12 numbering): the create event, the room/create link, auth event entries,
and m.federate."""

from __future__ import annotations

import pytest

from homeserver.events.pdu import Pdu
from homeserver.state.auth_rules import AuthError, check_auth_events, check_auth_rules
from tests.state.room_factory import ALICE, ALL_VERSIONS, BOB, Room, standard_room


def _create(version: str, content: dict, sender: str = ALICE, **extra) -> Pdu:
    room = Room(version)
    js = dict(room.create.get_json(), content=content, sender=sender, **extra)
    return Pdu(js, room.rv, event_id=room.create.event_id)


# -- rule 1: m.room.create ---------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_event_is_allowed(version):
    room = Room(version)
    check_auth_rules(room.create, {}, room.create)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_with_prev_events_is_rejected(version):
    room = Room(version)
    prev = [["$x:a.test", {}]] if room.rv.legacy_event_format else ["$x"]
    bad = _create(version, room.create.content, prev_events=prev)
    with pytest.raises(AuthError, match="1.1"):
        check_auth_rules(bad, {})


@pytest.mark.parametrize("version", [str(n) for n in range(1, 12)])
def test_create_room_id_domain_must_match_sender(version):
    bad = _create(version, Room(version).create.content, sender="@mallory:evil.test")
    with pytest.raises(AuthError, match="1.2"):
        check_auth_rules(bad, {})


def test_v12_create_with_room_id_is_rejected():
    bad = _create("12", {"room_version": "12"}, room_id="!abc")
    with pytest.raises(AuthError, match="1.2"):
        check_auth_rules(bad, {})


@pytest.mark.parametrize("room_version", ["13", "banana", 12])
def test_create_with_unknown_room_version_is_rejected(room_version):
    bad = _create("10", {"creator": ALICE, "room_version": room_version})
    with pytest.raises(AuthError, match="1.3"):
        check_auth_rules(bad, {})


def test_create_without_room_version_means_v1_and_is_allowed():
    check_auth_rules(_create("1", {"creator": ALICE}), {})


@pytest.mark.parametrize("version", ["1", "6", "10"])
def test_create_without_creator_is_rejected_before_v11(version):
    with pytest.raises(AuthError, match="1.4"):
        check_auth_rules(_create(version, {"room_version": version}), {})


@pytest.mark.parametrize("version", ["11", "12"])
def test_create_without_creator_is_allowed_from_v11(version):
    check_auth_rules(_create(version, {"room_version": version}), {})


@pytest.mark.parametrize(
    "extra, ok",
    [
        ([BOB, "@carol:c.test"], True),
        ([], True),
        ("@bob:b.test", False),
        ([BOB, 3], False),
        (["bob"], False),
        (["@bob"], False),
    ],
)
def test_v12_additional_creators_must_be_user_ids(extra, ok):
    event = _create("12", {"room_version": "12", "additional_creators": extra})
    if ok:
        check_auth_rules(event, {})
    else:
        with pytest.raises(AuthError, match="additional_creators"):
            check_auth_rules(event, {})


def test_additional_creators_is_not_checked_before_v12():
    check_auth_rules(_create("11", {"room_version": "11", "additional_creators": "junk"}), {})


# -- v12 rule 2: the room ID names the create event --------------------------------


def test_v12_needs_the_create_event():
    room = standard_room("12")
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    with pytest.raises(AuthError, match="2: no m.room.create"):
        check_auth_rules(event, room.auth_for(event))


def test_v12_room_id_must_be_the_create_event_id():
    room = standard_room("12")
    other = Room("12")
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    with pytest.raises(AuthError, match="not derived"):
        check_auth_rules(event, room.auth_for(event), other.create)


def test_v12_rejected_create_event_rejects_everything():
    room = standard_room("12")
    room.create.rejected_reason = "bad"
    with pytest.raises(AuthError, match="rejected"):
        room.check(room.event("m.room.message", ALICE, {}))


def test_v12_create_in_auth_events_is_rejected():
    room = standard_room("12")
    event = room.event("m.room.message", ALICE, {})
    auth = room.auth_for(event) | {("m.room.create", ""): room.create}
    with pytest.raises(AuthError, match="3.2"):
        check_auth_rules(event, auth, room.create)


# -- rule 3 (2 before v12): the auth events themselves -----------------------------


@pytest.mark.parametrize("version", [str(n) for n in range(1, 12)])
def test_missing_create_in_auth_events_is_rejected_before_v12(version):
    room = standard_room(version)
    event = room.event("m.room.message", ALICE, {})
    auth = room.auth_for(event)
    del auth[("m.room.create", "")]
    with pytest.raises(AuthError, match="2.4"):
        check_auth_rules(event, auth, room.create)  # the argument is ignored before v12


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_unselected_auth_event_is_rejected(version):
    room = standard_room(version)
    event = room.event("m.room.message", ALICE, {})
    auth = room.auth_for(event) | {("m.room.join_rules", ""): room.state[("m.room.join_rules", "")]}
    with pytest.raises(AuthError, match="3.2"):
        check_auth_rules(event, auth, room.create)


def test_auth_event_under_the_wrong_key_is_rejected():
    room = standard_room("10")
    event = room.event("m.room.message", ALICE, {})
    auth = room.auth_for(event)
    auth[("m.room.power_levels", "")] = room.state[("m.room.join_rules", "")]
    with pytest.raises(AuthError, match="3.2"):
        check_auth_rules(event, auth)


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_auth_event_from_another_room_is_rejected(version):
    room = standard_room(version)
    other = standard_room(version)
    event = room.event("m.room.message", ALICE, {})
    auth = room.auth_for(event)
    auth[("m.room.power_levels", "")] = other.state[("m.room.power_levels", "")]
    with pytest.raises(AuthError, match="3.5"):
        check_auth_rules(event, auth, room.create)


def test_check_auth_events_rejects_duplicates():
    room = standard_room("10")
    pl = room.state[("m.room.power_levels", "")]
    pl2 = room.add("m.room.power_levels", ALICE, {"users": {ALICE: 100}})
    event = room.event("m.room.message", ALICE, {})
    listed = [room.create, room.state[("m.room.member", ALICE)], pl, pl2]
    with pytest.raises(AuthError, match="3.1"):
        check_auth_events(event, listed)


def test_check_auth_events_rejects_rejected_entries():
    room = standard_room("10")
    event = room.event("m.room.message", ALICE, {})
    listed = list(room.auth_for(event).values())
    listed[-1].rejected_reason = "failed auth"
    with pytest.raises(AuthError, match="3.3"):
        check_auth_events(event, listed)


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_check_auth_events_returns_the_mapping_for_check_auth_rules(version):
    room = standard_room(version)
    event = room.event("m.room.message", ALICE, {})
    auth = check_auth_events(event, room.auth_for(event).values(), room.create)
    assert auth == room.auth_for(event)
    check_auth_rules(event, auth, room.create)


def test_check_auth_events_rejects_unselected_entries():
    room = standard_room("10")
    event = room.event("m.room.message", ALICE, {})
    listed = [*room.auth_for(event).values(), room.state[("m.room.join_rules", "")]]
    with pytest.raises(AuthError, match="3.2"):
        check_auth_events(event, listed)


# -- rule 4 (3 before v12): m.federate ---------------------------------------------


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_unfederated_room_rejects_other_servers(version):
    room = Room(version, create_content={"m.federate": False})
    room.member(ALICE, "join")
    room.add("m.room.join_rules", ALICE, {"join_rule": "public"})
    with pytest.raises(AuthError, match="4: room is not federated"):
        room.check(room.event("m.room.member", BOB, {"membership": "join"}, BOB))
    room.check(room.event("m.room.member", "@dave:a.test", {"membership": "join"}, "@dave:a.test"))


def test_federated_room_accepts_other_servers():
    room = Room("10", create_content={"m.federate": True})
    room.member(ALICE, "join")
    room.add("m.room.join_rules", ALICE, {"join_rule": "public"})
    room.check(room.event("m.room.member", BOB, {"membership": "join"}, BOB))
