"""Checks on client-supplied push rules (PUT /pushrules/global/{kind}/{ruleId}).

Spec: https://spec.matrix.org/v1.19/client-server-api/#put_matrixclientv3pushrulesglobalkindruleid .
Conditions of unknown kinds are kept as sent (the spec makes them never match); known
kinds must carry their parameters, since a rule that silently never matches because of
a typo is worse than a 400.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import BadJson, InvalidParam, MissingParam
from homeserver.push.rules import CONDITIONAL_KINDS, CONTENT, KINDS

# `dont_notify` and `coalesce` are accepted as no-ops (spec: older versions had them).
KNOWN_ACTIONS = frozenset({"notify", "dont_notify", "coalesce"})
MAX_RULE_ID_BYTES = 255
_STRING_KEYS = {"event_match": ("key", "pattern"), "event_property_is": ("key",),
                "event_property_contains": ("key",), "room_member_count": ("is",),
                "sender_notification_permission": ("key",)}


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidParam(f"Unknown push rule kind {kind!r}")


def check_new_rule_id(rule_id: str) -> None:
    if not rule_id or len(rule_id.encode()) > MAX_RULE_ID_BYTES:
        raise InvalidParam("Invalid rule ID")
    if rule_id.startswith("."):
        raise InvalidParam("Rule IDs starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise InvalidParam("Rule IDs may not contain '/' or '\\'")


def check_actions(actions: Any) -> list[Any]:
    if actions is None:
        raise MissingParam("Missing 'actions'")
    if not isinstance(actions, list):
        raise BadJson("'actions' must be an array")
    for action in actions:
        if isinstance(action, str):
            if action not in KNOWN_ACTIONS:
                raise InvalidParam(f"Unknown action {action!r}")
        elif isinstance(action, dict):
            if not isinstance(action.get("set_tweak"), str):
                raise BadJson("An object action needs a string 'set_tweak'")
        else:
            raise BadJson("Actions are strings or objects")
    return actions


def check_conditions(conditions: Any) -> list[dict[str, Any]]:
    if conditions is None:
        return []
    if not isinstance(conditions, list):
        raise BadJson("'conditions' must be an array")
    for condition in conditions:
        if not isinstance(condition, dict) or not isinstance(condition.get("kind"), str):
            raise BadJson("Each condition must be an object with a string 'kind'")
        for key in _STRING_KEYS.get(condition["kind"], ()):
            if key not in condition:
                raise MissingParam(f"{condition['kind']} condition needs '{key}'")
            if not isinstance(condition[key], str):
                raise BadJson(f"{condition['kind']} condition: '{key}' must be a string")
        if condition["kind"] in ("event_property_is", "event_property_contains"):
            if "value" not in condition:
                raise MissingParam(f"{condition['kind']} condition needs 'value'")
            value = condition["value"]
            if isinstance(value, (dict, list, float)):
                raise BadJson("'value' must be a string, integer, boolean or null")
    return conditions


def check_rule_body(kind: str, body: dict[str, Any]) -> tuple[list[Any], list[Any] | None, str | None]:
    """(actions, conditions, pattern) for a rule of `kind`."""
    actions = check_actions(body.get("actions"))
    conditions = check_conditions(body.get("conditions")) if kind in CONDITIONAL_KINDS else None
    pattern = None
    if kind == CONTENT:
        pattern = body.get("pattern")
        if pattern is None:
            raise MissingParam("Content rules need a 'pattern'")
        if not isinstance(pattern, str):
            raise BadJson("'pattern' must be a string")
    return actions, conditions, pattern
