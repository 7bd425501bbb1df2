"""A user's rule set compiled for evaluation, and what its actions mean.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules ; the first enabled rule
whose conditions all hold decides the actions. Compiled once per rule set (the rules
service caches it per user and drops it on change), evaluated per member per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from homeserver.push.conditions import (
    EventContext,
    Predicate,
    compile_condition,
    compile_event_match,
)
from homeserver.push.rules import (
    CONDITIONAL_KINDS,
    CONTENT,
    KINDS,
    LEGACY_MENTION_RULES,
    ROOM,
    SENDER,
    PushRule,
)


@attrs.frozen
class CompiledRule:
    rule_id: str
    predicates: tuple[Predicate, ...]
    actions: list[Any]
    legacy_mention: bool


def _field_equals(field: str, expected: str) -> Predicate:
    return lambda ctx, display_name: ctx.event.get(field) == expected


def _compiled(rule: PushRule, shared: SharedRules | None) -> CompiledRule:
    if shared is not None:
        known = shared.get(rule.rule_id)
        if known is not None and known[0] == rule:
            return known[1]
    return compile_rule(rule)


def compile_rule(rule: PushRule) -> CompiledRule:
    if rule.kind in CONDITIONAL_KINDS:
        predicates = tuple(compile_condition(c) for c in rule.conditions or [])
    elif rule.kind == CONTENT:
        predicates = (compile_event_match("content.body", rule.pattern or ""),)
    elif rule.kind == ROOM:
        predicates = (_field_equals("room_id", rule.rule_id),)
    else:
        assert rule.kind == SENDER
        predicates = (_field_equals("sender", rule.rule_id),)
    return CompiledRule(rule.rule_id, predicates, rule.actions,
                        rule.default and rule.rule_id in LEGACY_MENTION_RULES)


# rule_id -> (a rule, its compiled form): rules equal to one of these reuse the compiled
# form instead of compiling their own (see CompiledRuleset).
SharedRules = Mapping[str, tuple[PushRule, CompiledRule]]


def shared_rules(rules: dict[str, list[PushRule]]) -> SharedRules:
    return {r.rule_id: (r, compile_rule(r)) for kind in KINDS for r in rules.get(kind, [])}


class CompiledRuleset:
    """The enabled rules of one user, in evaluation order.

    `shared`: compiled rules to reuse for rules equal to theirs. A big room's members
    each have a rule set compiled (and cached) for push evaluation; most have the
    server defaults, and all but a few of those (the ones naming the user) are the same
    for everyone, so sharing them keeps a member's compiled set to a few rules of its
    own (in a 2,000-member room: ~27 MiB less). Predicates are pure functions of the
    event and display name, so a shared one behaves as the user's own would."""

    def __init__(self, ruleset: dict[str, list[PushRule]], *, default_only: bool = False,
                 shared: SharedRules | None = None):
        self.rules = tuple(_compiled(r, shared) for kind in KINDS for r in ruleset.get(kind, [])
                           if r.enabled)
        # The user's ruleset is exactly the server-default one (no rule added, none
        # changed): push/default_plan.py may then evaluate it for many users at once.
        self.default_only = default_only

    def evaluate(self, ctx: EventContext, display_name: str | None) -> list[Any] | None:
        """The actions of the first matching rule, None when none matches."""
        content = ctx.event.get("content")
        has_mentions = isinstance(content, dict) and "m.mentions" in content
        for rule in self.rules:
            # Spec: the deprecated mention rules apply only to events without m.mentions.
            if rule.legacy_mention and has_mentions:
                continue
            # A plain loop, not all(<generator>): this runs per member per event.
            for predicate in rule.predicates:
                if not predicate(ctx, display_name):
                    break
            else:
                return rule.actions
        return None


def notifies(actions: list[Any] | None) -> bool:
    return actions is not None and "notify" in actions


def highlights(actions: list[Any] | None) -> bool:
    """Spec: a highlight tweak without a value means true; no highlight tweak, false."""
    for action in actions or []:
        if isinstance(action, dict) and action.get("set_tweak") == "highlight":
            return action.get("value", True) is True
    return False
