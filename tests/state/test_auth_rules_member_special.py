"""Rule 5 (v12 numbering) continued: restricted joins (v8+, with
`join_authorised_via_users_server`) and invites redeeming a third-party invite."""

from __future__ import annotations

import pytest
from signedjson.key import generate_signing_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from tests.state.room_factory import ALICE, BOB, CAROL, DAVE, Room, standard_room
from tests.state.test_auth_rules_member import allowed, member_event, rejected

# -- 5.3.5 restricted joins --------------------------------------------------------


def _restricted(version: str, rule: str = "restricted") -> Room:
    room = standard_room(version, rule, users={CAROL: 0})
    room.member(CAROL, "join")  # joined, but only at level 0
    return room


def _via(room: Room, user: str, authoriser: str, server: str | None = None):
    signer = server or authoriser.split(":", 1)[1]
    event = member_event(room, user, "join", join_authorised_via_users_server=authoriser)
    event.get_json()["signatures"][signer] = {"ed25519:k": "sig"}
    return event


@pytest.mark.parametrize("version", ["8", "9", "10", "11", "12"])
def test_restricted_join_authorised_by_joined_inviter(version):
    room = _restricted(version)
    allowed(room, _via(room, BOB, ALICE))


@pytest.mark.parametrize("version", ["8", "10", "12"])
def test_restricted_join_without_authoriser_is_rejected(version):
    room = _restricted(version)
    rejected(room, member_event(room, BOB, "join"), "5.3.5.2")


def test_restricted_join_authoriser_must_be_joined():
    room = _restricted("10")
    rejected(room, _via(room, BOB, DAVE), "not joined")


def test_restricted_join_authoriser_needs_invite_power():
    room = _restricted("10")
    room.add("m.room.power_levels", ALICE, {"users": {ALICE: 100, CAROL: 0}, "invite": 10})
    rejected(room, _via(room, BOB, CAROL), "cannot invite")


def test_restricted_join_authoriser_must_have_signed():
    room = _restricted("10")
    event = member_event(room, BOB, "join", join_authorised_via_users_server=ALICE)
    rejected(room, event, "5.2.1")


def test_restricted_join_invited_user_needs_no_authoriser():
    room = _restricted("9")
    room.member(BOB, "invite", sender=ALICE)
    allowed(room, member_event(room, BOB, "join"))


def test_restricted_is_unknown_before_v8():
    room = _restricted("7")
    rejected(room, _via(room, BOB, ALICE), "5.3.7")


@pytest.mark.parametrize("version, ok", [("9", False), ("10", True), ("12", True)])
def test_knock_restricted_from_v10(version, ok):
    room = _restricted(version, "knock_restricted")
    event = _via(room, BOB, ALICE)
    if ok:
        allowed(room, event)
    else:
        rejected(room, event, "5.3.7")


def test_authoriser_signature_rule_applies_to_any_membership_from_v8():
    room = standard_room("8", "public")
    event = member_event(room, BOB, "join", join_authorised_via_users_server=ALICE)
    rejected(room, event, "5.2.1")
    old = standard_room("7", "public")
    allowed(old, member_event(old, BOB, "join", join_authorised_via_users_server=ALICE))


# -- 5.4.1 third-party invites -----------------------------------------------------


class ThirdPartyInvite:
    def __init__(self, room: Room, sender: str = ALICE, in_list: bool = False):
        self.key = generate_signing_key("0")
        public = encode_base64(self.key.verify_key.encode())
        content = {"display_name": "b...@example.com", "key_validity_url": "https://id.test/v"}
        if in_list:
            content["public_key"] = encode_base64(generate_signing_key("1").verify_key.encode())
            content["public_keys"] = [{"public_key": "not base64!"}, {"public_key": public}]
        else:
            content["public_key"] = public
        room.add("m.room.third_party_invite", sender, content, "tok")

    def signed(self, mxid: str = BOB, token: str = "tok", key=None) -> dict:
        return sign_json({"mxid": mxid, "token": token}, "id.test", key or self.key)


def _tpi_event(room: Room, signed: dict | None, target: str = BOB, sender: str = ALICE):
    tpi = {"display_name": "b...@example.com"}
    if signed is not None:
        tpi["signed"] = signed
    return member_event(room, target, "invite", sender=sender, third_party_invite=tpi)


@pytest.mark.parametrize("version", ["1", "6", "10", "12"])
def test_third_party_invite_with_valid_signature(version):
    room = standard_room(version)
    invite = ThirdPartyInvite(room)
    allowed(room, _tpi_event(room, invite.signed()))


def test_third_party_invite_key_from_public_keys_list():
    room = standard_room("10")
    invite = ThirdPartyInvite(room, in_list=True)
    allowed(room, _tpi_event(room, invite.signed()))


def test_third_party_invite_with_wrong_key_is_rejected():
    room = standard_room("10")
    invite = ThirdPartyInvite(room)
    rejected(room, _tpi_event(room, invite.signed(key=generate_signing_key("0"))), "5.4.1.8")


def test_third_party_invite_with_tampered_block_is_rejected():
    room = standard_room("10")
    invite = ThirdPartyInvite(room)
    signed = invite.signed()
    signed["extra"] = "x"
    rejected(room, _tpi_event(room, signed), "5.4.1.8")


def test_third_party_invite_for_banned_target_is_rejected():
    room = standard_room("10")
    invite = ThirdPartyInvite(room)
    room.member(BOB, "ban", sender=ALICE)
    rejected(room, _tpi_event(room, invite.signed()), "5.4.1.1")


def test_third_party_invite_without_signed_is_rejected():
    room = standard_room("10")
    ThirdPartyInvite(room)
    rejected(room, _tpi_event(room, None), "5.4.1.2")


def test_third_party_invite_without_token_is_rejected():
    room = standard_room("10")
    invite = ThirdPartyInvite(room)
    signed = invite.signed()
    del signed["token"]
    rejected(room, _tpi_event(room, signed), "5.4.1.3")


def test_third_party_invite_mxid_must_match_state_key():
    room = standard_room("10")
    invite = ThirdPartyInvite(room)
    rejected(room, _tpi_event(room, invite.signed(mxid=CAROL)), "5.4.1.4")


def test_third_party_invite_token_must_exist():
    room = standard_room("10")
    invite = ThirdPartyInvite(room)
    rejected(room, _tpi_event(room, invite.signed(token="other")), "5.4.1.5")


def test_third_party_invite_sender_must_match():
    room = standard_room("10", users={DAVE: 50})
    room.member(DAVE, "join", sender=DAVE)
    invite = ThirdPartyInvite(room, sender=DAVE)
    rejected(room, _tpi_event(room, invite.signed(), sender=ALICE), "5.4.1.6")
