"""Users with the server-default rules share the compiled rules that do not name them
(homeserver/push/evaluator.py, CompiledRuleset `shared`), and evaluate as if compiled alone."""

from __future__ import annotations

from homeserver.push.conditions import EventContext
from homeserver.push.evaluator import CompiledRuleset
from homeserver.push.rules import default_rules
from homeserver.push.rules_service import _compile


def _ctx(sender: str, body: str, **content: object) -> EventContext:
    event = {"type": "m.room.message", "sender": sender, "room_id": "!r:hs",
             "content": {"msgtype": "m.text", "body": body, **content}}
    return EventContext(event, member_count=5, sender_power=0, notification_levels={})


def test_rules_not_naming_the_user_are_one_object_for_everyone() -> None:
    alice, bob = _compile("@alice:hs", default_rules("@alice:hs")), _compile("@bob:hs", default_rules("@bob:hs"))
    assert alice.default_only and bob.default_only
    shared = {a.rule_id for a, b in zip(alice.rules, bob.rules, strict=True) if a is b}
    own = {a.rule_id for a, b in zip(alice.rules, bob.rules, strict=True) if a is not b}
    # The rules that name the user (their ID or localpart) are each user's own ...
    assert own == {".m.rule.invite_for_me", ".m.rule.is_user_mention", ".m.rule.contains_user_name"}
    # ... every other one is shared: most of the set.
    assert {".m.rule.suppress_notices", ".m.rule.message", ".m.rule.encrypted", ".m.rule.is_room_mention"} <= shared


def test_a_shared_set_evaluates_like_one_compiled_alone() -> None:
    for user in ("@alice:hs", "@_:_"):
        shared = _compile(user, default_rules(user))
        alone = CompiledRuleset(default_rules(user), default_only=True)
        for ctx, name in [(_ctx("@bob:hs", "hi alice"), None), (_ctx("@bob:hs", "hi Alice B"), "Alice B"),
                          (_ctx("@bob:hs", "@room look"), None),
                          (_ctx("@bob:hs", "x", **{"m.mentions": {"user_ids": [user]}}), None),
                          (_ctx("@bob:hs", "nothing"), "Zed")]:
            assert shared.evaluate(ctx, name) == alone.evaluate(ctx, name)
