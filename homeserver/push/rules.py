"""The push rule model and the server-default rules.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules and #predefined-rules .
The default set is exactly the spec's for v1.19: the poll rules of MSC3930 are not in
the spec (only unstable `.org.matrix.msc3930.*` identifiers exist), so they are not here.
"""

from __future__ import annotations

from typing import Any

import attrs

JsonDict = dict[str, Any]

OVERRIDE = "override"
CONTENT = "content"
ROOM = "room"
SENDER = "sender"
UNDERRIDE = "underride"
# Evaluation order (spec: "The different kinds of rule, in the order that they are checked").
KINDS: tuple[str, ...] = (OVERRIDE, CONTENT, ROOM, SENDER, UNDERRIDE)
# Kinds whose rules carry a `conditions` list.
CONDITIONAL_KINDS = frozenset({OVERRIDE, UNDERRIDE})

MASTER = ".m.rule.master"
# Deprecated mention rules: the spec says they apply only to events without `m.mentions`.
LEGACY_MENTION_RULES = frozenset({".m.rule.contains_display_name", ".m.rule.roomnotif",
                                  ".m.rule.contains_user_name"})

SOUND_DEFAULT: JsonDict = {"set_tweak": "sound", "value": "default"}
HIGHLIGHT: JsonDict = {"set_tweak": "highlight"}


@attrs.frozen
class PushRule:
    """One rule as the client sees it. `conditions` is set for override/underride rules,
    `pattern` for content rules; room and sender rules are keyed by `rule_id`."""

    kind: str
    rule_id: str
    actions: list[Any]
    enabled: bool = True
    default: bool = False
    conditions: list[JsonDict] | None = None
    pattern: str | None = None

    def to_json(self) -> JsonDict:
        out: JsonDict = {"rule_id": self.rule_id, "default": self.default,
                         "enabled": self.enabled, "actions": self.actions}
        if self.kind in CONDITIONAL_KINDS:
            out["conditions"] = self.conditions or []
        if self.kind == CONTENT:
            out["pattern"] = self.pattern or ""
        return out


def _match(key: str, pattern: str) -> JsonDict:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _override(rule_id: str, conditions: list[JsonDict], actions: list[Any], *,
              enabled: bool = True) -> PushRule:
    return PushRule(OVERRIDE, rule_id, actions, enabled, True, conditions)


def _underride(rule_id: str, conditions: list[JsonDict], actions: list[Any]) -> PushRule:
    return PushRule(UNDERRIDE, rule_id, actions, True, True, conditions)


def default_override_rules(user_id: str) -> list[PushRule]:
    """In spec order; `.m.rule.master` first (it always outranks user rules)."""
    notify_sound_highlight = ["notify", SOUND_DEFAULT, HIGHLIGHT]
    return [
        _override(MASTER, [], [], enabled=False),
        _override(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _override(".m.rule.invite_for_me",
                  [_match("type", "m.room.member"), _match("content.membership", "invite"),
                   _match("state_key", user_id)], ["notify", SOUND_DEFAULT]),
        _override(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _override(".m.rule.is_user_mention",
                  [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
                    "value": user_id}], notify_sound_highlight),
        _override(".m.rule.contains_display_name", [{"kind": "contains_display_name"}],
                  notify_sound_highlight),
        _override(".m.rule.is_room_mention",
                  [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                   {"kind": "sender_notification_permission", "key": "room"}],
                  ["notify", HIGHLIGHT]),
        _override(".m.rule.roomnotif",
                  [_match("content.body", "@room"),
                   {"kind": "sender_notification_permission", "key": "room"}],
                  ["notify", HIGHLIGHT]),
        _override(".m.rule.tombstone",
                  [_match("type", "m.room.tombstone"), _match("state_key", "")],
                  ["notify", HIGHLIGHT]),
        _override(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _override(".m.rule.room.server_acl",
                  [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
        _override(".m.rule.suppress_edits",
                  [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type",
                    "value": "m.replace"}], []),
    ]


def default_content_rules(user_id: str) -> list[PushRule]:
    localpart = user_id[1:].split(":", 1)[0]
    return [PushRule(CONTENT, ".m.rule.contains_user_name",
                     ["notify", SOUND_DEFAULT, HIGHLIGHT], True, True, pattern=localpart)]


def default_underride_rules() -> list[PushRule]:
    one_to_one = {"kind": "room_member_count", "is": "2"}
    return [
        _underride(".m.rule.call", [_match("type", "m.call.invite")],
                   ["notify", {"set_tweak": "sound", "value": "ring"}]),
        _underride(".m.rule.encrypted_room_one_to_one",
                   [one_to_one, _match("type", "m.room.encrypted")], ["notify", SOUND_DEFAULT]),
        _underride(".m.rule.room_one_to_one",
                   [one_to_one, _match("type", "m.room.message")], ["notify", SOUND_DEFAULT]),
        _underride(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _underride(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]


def default_rules(user_id: str) -> dict[str, list[PushRule]]:
    """kind -> the server-default rules of that kind, in priority order."""
    return {OVERRIDE: default_override_rules(user_id), CONTENT: default_content_rules(user_id),
            ROOM: [], SENDER: [], UNDERRIDE: default_underride_rules()}


@attrs.frozen
class DefaultChange:
    """A user's change to one server-default rule (None: as the default says)."""

    enabled: bool | None = None
    actions: list[Any] | None = None


def merge_ruleset(user_id: str, user_rules: dict[str, list[PushRule]],
                  changes: dict[str, DefaultChange]) -> dict[str, list[PushRule]]:
    """The user's whole ruleset in priority order per kind: user rules above the
    defaults of their kind, except `.m.rule.master`, which outranks everything."""
    out: dict[str, list[PushRule]] = {}
    for kind, defaults in default_rules(user_id).items():
        applied = [_apply(rule, changes.get(rule.rule_id)) for rule in defaults]
        head = [r for r in applied if r.rule_id == MASTER]
        rest = [r for r in applied if r.rule_id != MASTER]
        out[kind] = head + user_rules.get(kind, []) + rest
    return out


def _apply(rule: PushRule, change: DefaultChange | None) -> PushRule:
    if change is None:
        return rule
    return attrs.evolve(
        rule,
        enabled=rule.enabled if change.enabled is None else change.enabled,
        actions=rule.actions if change.actions is None else change.actions)


def ruleset_json(ruleset: dict[str, list[PushRule]]) -> JsonDict:
    """The `global` object of GET /pushrules/ and of the m.push_rules account data."""
    return {kind: [r.to_json() for r in ruleset.get(kind, [])] for kind in KINDS}
