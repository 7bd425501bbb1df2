"""The server-default rule set evaluated for all of an event's users at once.

Spec: https://spec.matrix.org/v1.19/client-server-api/#predefined-rules . Most users never
change their rules, and in the default set few conditions depend on the user: the
invite's `state_key`, the mention's user ID, the display name and the localpart. For one
event, `DefaultPlan` evaluates every other condition once, and what the personal ones
need of the event whoever the user (a mention list, a string body); per user there
remain only the rules that still may hold, up to the first rule that holds for everyone
(for an ordinary message: the display-name and user-name rules, then `.m.rule.message`).

The personal conditions are evaluated with the user's own compiled predicates and the
actions are the user's own, so the result is `CompiledRuleset.evaluate`'s: conditions
are pure functions of the event context (and, for the display-name one alone, the
name), so evaluating the shared ones once, with any user's predicates, changes nothing.
tests/push/test_default_plan.py compares the two on random events and users.
"""

from __future__ import annotations

from typing import Any

from homeserver.push.conditions import EventContext, lookup, parse_key_path
from homeserver.push.evaluator import CompiledRuleset
from homeserver.push.rules import CONDITIONAL_KINDS, KINDS, PushRule, default_rules

# Users that differ in every part of their ID: a condition equal for all of them does not
# depend on the user.
_PROBES = ("@a:a.example", "@Bb:b.example", "@c_3:c.example:8448")
DISPLAY_NAME_KIND = "contains_display_name"


def _enabled_defaults(user_id: str) -> list[PushRule]:
    rules = default_rules(user_id)
    return [r for kind in KINDS for r in rules[kind] if r.enabled]


def _condition_keys(rule: PushRule) -> list[Any]:
    """What each predicate of the compiled rule is made from, in predicate order."""
    if rule.kind in CONDITIONAL_KINDS:
        return list(rule.conditions or [])
    return [(rule.kind, rule.pattern, rule.rule_id)]


def _reads_display_name(key: Any) -> bool:
    return isinstance(key, dict) and key.get("kind") == DISPLAY_NAME_KIND


def _personal_predicates() -> tuple[tuple[int, ...], ...]:
    """Per enabled default rule (in evaluation order), the indices of the predicates that
    depend on the user: their condition differs between users, or it reads the display
    name."""
    per_user = [_enabled_defaults(u) for u in _PROBES]
    out = []
    for versions in zip(*per_user, strict=True):
        keys = [_condition_keys(r) for r in versions]
        out.append(tuple(j for j, key in enumerate(keys[0])
                         if any(k[j] != key for k in keys[1:]) or _reads_display_name(key)))
    return tuple(out)


def _precondition(key: Any) -> tuple[tuple[str, ...], type]:
    """What a personal predicate needs of the event whoever the user: the value at a path
    of a type (see conditions.py: event_match wants a string, event_property_contains a
    list, contains_display_name a string body). If the event lacks it, the rule fails for
    every user and the plan drops it."""
    if not isinstance(key, dict):  # a content rule: event_match on content.body
        return ("content", "body"), str
    kind = key.get("kind")
    if kind == "event_match":
        return parse_key_path(key["key"]), str
    if kind == "event_property_contains":
        return parse_key_path(key["key"]), list
    assert kind == DISPLAY_NAME_KIND, f"no precondition known for personal condition {key}"
    return ("content", "body"), str


# Built once at import: the default rules are constants of the spec.
_TEMPLATE = CompiledRuleset(default_rules(_PROBES[0]), default_only=True)
_SIZE = len(_TEMPLATE.rules)
_PERSONAL = _personal_predicates()
_PRECONDITIONS = tuple(
    tuple(_precondition(_condition_keys(rule)[j]) for j in personal)
    for rule, personal in zip(_enabled_defaults(_PROBES[0]), _PERSONAL, strict=True))
_NAME_PREDICATES = frozenset((i, j) for i, rule in enumerate(_enabled_defaults(_PROBES[0]))
                             for j, key in enumerate(_condition_keys(rule))
                             if _reads_display_name(key))


# Per template rule, what the plan checks: (index, legacy mention rule, preconditions,
# shared predicates, personal predicate indices).
_STEPS = tuple(
    (i, rule.legacy_mention, _PRECONDITIONS[i],
     tuple(p for j, p in enumerate(rule.predicates) if j not in _PERSONAL[i]), _PERSONAL[i])
    for i, rule in enumerate(_TEMPLATE.rules))


class DefaultPlan:
    """The default rule set partially evaluated for one event."""

    def __init__(self, ctx: EventContext):
        event = ctx.event
        content = event.get("content")
        has_mentions = isinstance(content, dict) and "m.mentions" in content
        checks: list[tuple[int, tuple[int, ...]]] = []
        final: int | None = None
        # Plain loops, not all(<generator>): this runs once per event (~3 us).
        for i, legacy_mention, preconditions, shared, personal in _STEPS:
            if legacy_mention and has_mentions:
                continue
            for path, kind in preconditions:
                if not isinstance(lookup(event, path), kind):
                    break
            else:
                for predicate in shared:
                    if not predicate(ctx, None):
                        break
                else:
                    if not personal:
                        final = i
                        break
                    checks.append((i, personal))
        self._ctx = ctx
        self._checks = tuple(checks)
        self._final = final
        self.needs_display_name = any((i, j) in _NAME_PREDICATES
                                      for i, personal in checks for j in personal)

    def evaluate(self, ruleset: CompiledRuleset, display_name: str | None) -> list[Any] | None:
        """`ruleset.evaluate(ctx, display_name)` for a `default_only` ruleset."""
        rules = ruleset.rules
        if not ruleset.default_only or len(rules) != _SIZE:
            raise ValueError("not a server-default rule set")
        ctx = self._ctx
        # Plain loops: this runs once per member per event (bench/push_eval.py).
        for i, personal in self._checks:
            predicates = rules[i].predicates
            for j in personal:
                if not predicates[j](ctx, display_name):
                    break
            else:
                return rules[i].actions
        return None if self._final is None else rules[self._final].actions
