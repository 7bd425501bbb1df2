"""The fast path for users with the server-default rules gives exactly the plain
evaluator's actions, for random events and users (one plan per event, many users)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.push.conditions import EventContext
from homeserver.push.default_plan import DefaultPlan
from homeserver.push.evaluator import CompiledRuleset
from homeserver.push.rules import default_rules

# Glob metacharacters, word boundaries, case folding (the Kelvin sign and long s match k
# and s case-insensitively) and non-ASCII.
_LOCAL = st.text("abkKsSz09_.=-/*?\u212a\u017fé", min_size=1, max_size=6)
_SERVER = st.sampled_from(["test.local", "Other.example", "x.y:8448"])
_USER = st.builds(lambda local, server: f"@{local}:{server}", _LOCAL, _SERVER)
_NAME = st.none() | st.text("abkKs zé\u212a@.", max_size=8)
_WORDS = st.sampled_from(["hello", "@room", "lunch", "K", "s", "!", " ", "é", "a.b"])


@st.composite
def _body(draw: st.DrawFn, users: list[tuple[str, str | None]]) -> str:
    """Text mixing plain words with the users' localparts, IDs and display names, in
    random case, so the personal rules both match and miss."""
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        user_id, name = draw(st.sampled_from(users))
        piece = draw(st.sampled_from([user_id, user_id[1:].split(":", 1)[0], name or "",
                                      draw(_WORDS)]))
        if draw(st.booleans()):
            piece = piece.upper() if draw(st.booleans()) else piece.lower()
        parts.append(piece + draw(st.sampled_from(["", " ", ":", "_", "x"])))
    return "".join(parts)


@st.composite
def _case(draw: st.DrawFn) -> tuple[EventContext, list[tuple[str, str | None]]]:
    users = draw(st.lists(st.tuples(_USER, _NAME), min_size=1, max_size=4,
                          unique_by=lambda u: u[0]))
    user_ids = [u for u, _ in users]
    event_type = draw(st.sampled_from([
        "m.room.message", "m.room.member", "m.room.encrypted", "m.call.invite", "m.reaction",
        "m.room.tombstone", "m.room.server_acl", "m.room.name"]))
    content: dict[str, Any] = {}
    if draw(st.booleans()):
        content["body"] = draw(_body(users))
    if draw(st.booleans()):
        content["msgtype"] = draw(st.sampled_from(["m.text", "m.notice", "m.emote"]))
    if event_type == "m.room.member":
        content["membership"] = draw(st.sampled_from(["invite", "join", "leave"]))
    if draw(st.booleans()):
        mentions: dict[str, Any] = {}
        if draw(st.booleans()):
            mentions["user_ids"] = draw(st.lists(
                st.sampled_from([*user_ids, user_ids[0].upper(), "@x:y"]), max_size=3))
        if draw(st.booleans()):
            mentions["room"] = draw(st.sampled_from([True, False, 1, "true"]))
        content["m.mentions"] = draw(st.sampled_from([mentions, [], None]))
    if draw(st.booleans()):
        content["m.relates_to"] = {"rel_type": draw(st.sampled_from(["m.replace", "m.thread"])),
                                   "event_id": "$x"}
    event: dict[str, Any] = {"type": event_type, "room_id": "!r:test.local",
                             "sender": "@sender:test.local", "content": content}
    if draw(st.booleans()):
        key = draw(st.sampled_from([*user_ids, "", user_ids[0].upper(), "@other:test.local"]))
        event["state_key"] = key
    levels = draw(st.sampled_from([{}, {"room": 0}, {"room": 100}, {"room": True},
                                   {"room": "50"}]))
    ctx = EventContext(event=event, member_count=draw(st.integers(1, 4)),
                       sender_power=draw(st.sampled_from([0, 50, 100])),
                       notification_levels=levels)
    return ctx, users


@settings(max_examples=1500, deadline=None)
@given(_case())
def test_plan_matches_full_evaluation(case: tuple[EventContext, list[tuple[str, str | None]]]) -> None:
    ctx, users = case
    plan = DefaultPlan(ctx)
    for user_id, name in users:
        ruleset = CompiledRuleset(default_rules(user_id), default_only=True)
        assert plan.evaluate(ruleset, name) == ruleset.evaluate(ctx, name)


def _ctx(content: dict[str, Any], event_type: str = "m.room.message", members: int = 3,
         **fields: Any) -> EventContext:
    event = {"type": event_type, "room_id": "!r:x", "sender": "@s:x", "content": content,
             **fields}
    return EventContext(event=event, member_count=members, sender_power=100,
                        notification_levels={})


ME = "@me:x"
TABLE: list[tuple[EventContext, str | None]] = [
    (_ctx({"msgtype": "m.text", "body": "hello"}), None),
    (_ctx({"msgtype": "m.text", "body": "hello"}, members=2), None),
    (_ctx({"msgtype": "m.text", "body": "hi Me Myself"}), "me myself"),
    (_ctx({"msgtype": "m.text", "body": "hi ME"}), None),
    (_ctx({"msgtype": "m.notice", "body": "me"}), "me"),
    (_ctx({"body": "x", "m.mentions": {"user_ids": [ME]}}), None),
    (_ctx({"body": "me", "m.mentions": {}}), "me"),
    (_ctx({"body": "@room", "m.mentions": {"room": True}}), None),
    (_ctx({"body": "@room"}), None),
    (_ctx({"membership": "invite"}, "m.room.member", state_key=ME), None),
    (_ctx({"membership": "invite"}, "m.room.member", state_key="@ME:X"), None),
    (_ctx({"membership": "join"}, "m.room.member", state_key=ME), None),
    (_ctx({}, "m.room.tombstone", state_key=""), None),
    (_ctx({"body": "me", "m.relates_to": {"rel_type": "m.replace"}}), "me"),
    (_ctx({"ciphertext": "..."}, "m.room.encrypted", members=2), None),
    (_ctx({}, "m.call.invite"), None),
    (_ctx({}, "org.example.custom"), None),
]


def test_table() -> None:
    ruleset = CompiledRuleset(default_rules(ME), default_only=True)
    for ctx, name in TABLE:
        assert DefaultPlan(ctx).evaluate(ruleset, name) == ruleset.evaluate(ctx, name), ctx.event


def test_an_ordinary_message_leaves_two_personal_rules() -> None:
    """What makes the fast path fast: per user, only the name rules are left to check."""
    plan = DefaultPlan(_ctx({"msgtype": "m.text", "body": "hello"}))
    assert len(plan._checks) == 2 and plan.needs_display_name
    mention = DefaultPlan(_ctx({"body": "x", "m.mentions": {"user_ids": []}}))
    assert len(mention._checks) == 1 and not mention.needs_display_name
    member = DefaultPlan(_ctx({"membership": "join"}, "m.room.member", state_key=ME))
    assert member._checks == ()
