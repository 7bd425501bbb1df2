"""The server-default rules as evaluated: mentions, display name, DMs, keywords, edits,
reactions, room mentions (spec: #predefined-rules)."""

from __future__ import annotations

from typing import Any

from homeserver.push.conditions import EventContext
from homeserver.push.evaluator import CompiledRuleset, highlights, notifies
from homeserver.push.rules import (
    CONTENT,
    KINDS,
    OVERRIDE,
    ROOM,
    UNDERRIDE,
    DefaultChange,
    PushRule,
    default_rules,
    merge_ruleset,
    ruleset_json,
)
from tests.spec_schemas import validate_response

ME = "@alice:test.local"
BOB = "@bob:test.local"
ROOM_ID = "!room:test.local"


def message(body: str, **content: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "sender": BOB, "room_id": ROOM_ID,
            "content": {"msgtype": "m.text", "body": body, **content}}


def evaluate(event: dict[str, Any], *, members: int = 5, sender_power: float = 0,
             user_rules: dict[str, list[PushRule]] | None = None,
             changes: dict[str, DefaultChange] | None = None,
             name: str | None = "Alice Liddell") -> list[Any] | None:
    ruleset = CompiledRuleset(merge_ruleset(ME, user_rules or {}, changes or {}))
    return ruleset.evaluate(EventContext(event, members, sender_power, {}), name)


def test_default_rule_ids_in_spec_order() -> None:
    rules = default_rules(ME)
    assert [r.rule_id for r in rules[OVERRIDE]] == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
        ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.contains_display_name",
        ".m.rule.is_room_mention", ".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction",
        ".m.rule.room.server_acl", ".m.rule.suppress_edits"]
    assert [r.rule_id for r in rules[CONTENT]] == [".m.rule.contains_user_name"]
    assert rules[CONTENT][0].pattern == "alice"
    assert [r.rule_id for r in rules[UNDERRIDE]] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
        ".m.rule.message", ".m.rule.encrypted"]
    body = {"global": ruleset_json(merge_ruleset(ME, {}, {}))}
    assert set(body["global"]) == set(KINDS)
    validate_response("pushrules.yaml", "/pushrules/", "get", body)


def test_plain_message_notifies_without_highlight() -> None:
    actions = evaluate(message("hello"))
    assert notifies(actions) and not highlights(actions)


def test_user_mention_highlights() -> None:
    actions = evaluate(message("hey", **{"m.mentions": {"user_ids": [ME]}}))
    assert notifies(actions) and highlights(actions)


def test_legacy_mention_rules_apply_only_without_m_mentions() -> None:
    assert highlights(evaluate(message("ping Alice Liddell")))
    assert highlights(evaluate(message("ping alice!")))
    assert not highlights(evaluate(message("ping Alice Liddell", **{"m.mentions": {}})))
    assert not highlights(evaluate(message("ping alice", **{"m.mentions": {"user_ids": [BOB]}})))


def test_dm_notifies_with_sound() -> None:
    actions = evaluate(message("hi"), members=2)
    assert actions == ["notify", {"set_tweak": "sound", "value": "default"}]
    encrypted = {"type": "m.room.encrypted", "sender": BOB, "room_id": ROOM_ID,
                 "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}}
    assert evaluate(encrypted, members=2) == actions
    assert evaluate(encrypted, members=3) == ["notify"]


def test_keyword_through_a_content_rule() -> None:
    cake = PushRule(CONTENT, "cake", ["notify", {"set_tweak": "highlight"}], pattern="cake")
    assert highlights(evaluate(message("Cake time"), user_rules={CONTENT: [cake]}))
    assert not highlights(evaluate(message("cupcakes"), user_rules={CONTENT: [cake]}))


def test_suppressed_events() -> None:
    edit = message("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e"},
                                 "m.new_content": {"body": "fixed"}})
    assert not notifies(evaluate(edit))
    reaction = {"type": "m.reaction", "sender": BOB, "room_id": ROOM_ID,
                "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e",
                                             "key": "👍"}}}
    assert not notifies(evaluate(reaction, members=2))
    assert not notifies(evaluate(message("notice", msgtype="m.notice")))


def test_room_mention_needs_permission() -> None:
    event = message("@room hi", **{"m.mentions": {"room": True}})
    # Without permission it is an ordinary message: it notifies, but does not highlight.
    assert evaluate(event, sender_power=0) == ["notify"]
    assert highlights(evaluate(event, sender_power=50))
    assert highlights(evaluate(message("@room hi"), sender_power=100))


def test_invite_for_me_and_other_members() -> None:
    invite = {"type": "m.room.member", "sender": BOB, "room_id": ROOM_ID, "state_key": ME,
              "content": {"membership": "invite"}}
    assert notifies(evaluate(invite))
    other = {**invite, "state_key": "@carol:test.local"}
    assert not notifies(evaluate(other))


def test_tombstone_highlights() -> None:
    event = {"type": "m.room.tombstone", "sender": BOB, "room_id": ROOM_ID, "state_key": "",
             "content": {"body": "moved", "replacement_room": "!new:test.local"}}
    assert highlights(evaluate(event))


def test_master_rule_and_room_rules() -> None:
    master = {".m.rule.master": DefaultChange(enabled=True)}
    assert not notifies(evaluate(message("hi"), changes=master))
    mute_room = PushRule(ROOM, ROOM_ID, [])
    assert not notifies(evaluate(message("hi"), user_rules={ROOM: [mute_room]}))
    assert highlights(evaluate(message("hi alice"), user_rules={ROOM: [mute_room]}))
    silent = {".m.rule.message": DefaultChange(actions=[])}
    assert not notifies(evaluate(message("hi"), changes=silent))
