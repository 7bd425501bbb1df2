"""Authorization rules for m.room.member events: join, invite, leave, ban, knock.

Spec: the "If type is `m.room.member`" rule of each room version's authorisation rules,
e.g. https://spec.matrix.org/v1.19/rooms/v12/#authorisation-rules (rule 5; rule 4 in
v6–11, rule 5 in v1–5). Rule numbers in messages follow room version 12.
"""

from __future__ import annotations

from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.state.auth_context import AuthContext, AuthError, server_of
from homeserver.state.power_levels import get_creators


def check_member_event(ctx: AuthContext) -> None:
    """Allow (return) or reject (raise AuthError) an m.room.member event."""
    event = ctx.event
    membership = event.membership
    if event.state_key is None or "membership" not in event.content:
        raise AuthError("5.1: m.room.member without state_key or content.membership")
    if ctx.room_version.restricted_join_rule:
        _check_authoriser_signed(ctx)
    if membership == "join":
        _check_join(ctx)
    elif membership == "invite":
        _check_invite(ctx)
    elif membership == "leave":
        _check_leave(ctx)
    elif membership == "ban":
        _check_ban(ctx)
    elif membership == "knock" and ctx.room_version.knock_join_rule:
        _check_knock(ctx)
    else:
        raise AuthError(f"5.8: unknown membership {membership!r}")


def _check_authoriser_signed(ctx: AuthContext) -> None:
    """Rule 5.2: the authorising user's server must have signed the event.

    Pure code cannot verify a server's signature (that needs its keys): this checks that
    the signature is present; the receipt path verifies every signature cryptographically.
    """
    if "join_authorised_via_users_server" not in ctx.event.content:
        return
    authoriser = ctx.event.content["join_authorised_via_users_server"]
    server = server_of(authoriser) if isinstance(authoriser, str) else None
    signatures = ctx.event.get_json().get("signatures")
    if server is None or not isinstance(signatures, dict) or server not in signatures:
        raise AuthError("5.2.1: not signed by the join_authorised_via_users_server's server")


def _check_join(ctx: AuthContext) -> None:
    event, target = ctx.event, ctx.event.state_key
    assert target is not None
    prev = event.prev_event_ids
    if len(prev) == 1 and prev[0] == ctx.create.event_id and target in _first_creator(ctx):
        return  # 5.3.1: the creator's own join right after the create event
    if event.sender != target:
        raise AuthError("5.3.2: join sender does not match state_key")
    current = ctx.membership(target)
    if current == "ban":
        raise AuthError("5.3.3: sender is banned")
    rule = ctx.join_rule()
    rv = ctx.room_version
    if rule == "invite" or (rule == "knock" and rv.knock_join_rule):
        if current in ("invite", "join"):
            return
        raise AuthError(f"5.3.4: join rule {rule!r} needs an invite")
    if (rule == "restricted" and rv.restricted_join_rule) or (
        rule == "knock_restricted" and rv.knock_restricted_join_rule
    ):
        _check_restricted_join(ctx, current)
        return
    if rule == "public":
        return
    raise AuthError(f"5.3.7: join rule {rule!r} does not allow joining")


def _first_creator(ctx: AuthContext) -> set[str]:
    """Who may join first: `content.creator` (v1–10) or the create sender (v11+). In v12
    only the sender, not the additional creators, as the rule says "the sender"."""
    if ctx.room_version.implicit_room_creator:
        return {ctx.create.sender}
    return get_creators(ctx.create)


def _check_restricted_join(ctx: AuthContext, current: str | None) -> None:
    if current in ("join", "invite"):
        return  # 5.3.5.1
    authoriser = ctx.event.content.get("join_authorised_via_users_server")
    if not isinstance(authoriser, str):
        raise AuthError("5.3.5.2: restricted join without join_authorised_via_users_server")
    if ctx.membership(authoriser) != "join":
        raise AuthError("5.3.5.2: authorising user is not joined")
    if ctx.power_level(authoriser) < ctx.named_level("invite"):
        raise AuthError("5.3.5.2: authorising user cannot invite")


def _check_invite(ctx: AuthContext) -> None:
    event, target = ctx.event, ctx.event.state_key
    assert target is not None
    if "third_party_invite" in event.content:
        _check_third_party_invite(ctx, target)
        return
    if ctx.membership(event.sender) != "join":
        raise AuthError("5.4.2: inviter is not joined")
    if ctx.membership(target) in ("join", "ban"):
        raise AuthError("5.4.3: invitee is joined or banned")
    if ctx.power_level(event.sender) < ctx.named_level("invite"):
        raise AuthError("5.4.4: sender is below the invite level")


def _check_third_party_invite(ctx: AuthContext, target: str) -> None:
    """Rule 5.4.1: an invite that redeems an m.room.third_party_invite."""
    if ctx.membership(target) == "ban":
        raise AuthError("5.4.1.1: invitee is banned")
    invite = ctx.event.content["third_party_invite"]
    signed = invite.get("signed") if isinstance(invite, dict) else None
    if not isinstance(signed, dict):
        raise AuthError("5.4.1.2: third_party_invite has no signed block")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("5.4.1.3: signed block lacks mxid or token")
    if mxid != target:
        raise AuthError("5.4.1.4: signed mxid does not match state_key")
    tpi = ctx.auth_events.get(("m.room.third_party_invite", token))
    if tpi is None:
        raise AuthError("5.4.1.5: no m.room.third_party_invite for this token")
    if tpi.sender != ctx.event.sender:
        raise AuthError("5.4.1.6: sender did not send the m.room.third_party_invite")
    if not _signed_by_any(signed, _public_keys(tpi.content)):
        raise AuthError("5.4.1.8: no signature in signed matches the invite's public keys")


def _public_keys(content: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    if isinstance(content.get("public_key"), str):
        keys.append(content["public_key"])
    entries = content.get("public_keys")
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


def _signed_by_any(signed: dict[str, Any], public_keys: list[str]) -> bool:
    """True when some ed25519 signature in `signed` verifies under one of the keys.

    The signature's key ID is the identity server's, unrelated to the invite's keys, so
    every (signature, key) pair is tried.
    """
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    for server, server_sigs in signatures.items():
        if not isinstance(server_sigs, dict):
            continue
        for key_id in server_sigs:
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                continue
            for public_key in public_keys:
                if _verifies(signed, server, key_id, public_key):
                    return True
    return False


def _verifies(signed: dict[str, Any], server: str, key_id: str, public_key: str) -> bool:
    try:
        verify_key = decode_verify_key_bytes(key_id, decode_base64(public_key))
        verify_signed_json(signed, server, verify_key)
    except (SignatureVerifyException, ValueError, TypeError):
        # Malformed base64 or key bytes are ValueErrors (binascii and nacl both).
        return False
    return True


def _check_leave(ctx: AuthContext) -> None:
    event, target = ctx.event, ctx.event.state_key
    assert target is not None
    if event.sender == target:
        allowed = (
            ("invite", "join", "knock") if ctx.room_version.knock_join_rule else ("invite", "join")
        )
        if ctx.membership(target) in allowed:
            return
        raise AuthError("5.5.1: cannot leave without being invited, joined or knocking")
    if ctx.membership(event.sender) != "join":
        raise AuthError("5.5.2: kicker is not joined")
    sender_level = ctx.power_level(event.sender)
    if ctx.membership(target) == "ban" and sender_level < ctx.named_level("ban"):
        raise AuthError("5.5.3: unban needs the ban level")
    if sender_level >= ctx.named_level("kick") and ctx.power_level(target) < sender_level:
        return
    raise AuthError("5.5.4: sender below the kick level or not above the target")


def _check_ban(ctx: AuthContext) -> None:
    event, target = ctx.event, ctx.event.state_key
    assert target is not None
    if ctx.membership(event.sender) != "join":
        raise AuthError("5.6.1: banner is not joined")
    sender_level = ctx.power_level(event.sender)
    if sender_level >= ctx.named_level("ban") and ctx.power_level(target) < sender_level:
        return
    raise AuthError("5.6.2: sender below the ban level or not above the target")


def _check_knock(ctx: AuthContext) -> None:
    rule = ctx.join_rule()
    knock_rules = (
        ("knock", "knock_restricted") if ctx.room_version.knock_restricted_join_rule else ("knock",)
    )
    if rule not in knock_rules:
        raise AuthError(f"5.7.1: join rule {rule!r} does not allow knocking")
    if ctx.event.sender != ctx.event.state_key:
        raise AuthError("5.7.2: knock sender does not match state_key")
    if ctx.membership(ctx.event.sender) in ("ban", "invite", "join"):
        raise AuthError("5.7.4: knocking user is banned, invited or joined")
