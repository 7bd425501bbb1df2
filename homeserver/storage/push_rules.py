"""A user's own push rules and their changes to the server-default rules.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules . Rows are converted to
`homeserver.push.rules.PushRule` by the push rules service; this store deals in rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from homeserver.storage.batch import fetch_for_ids
from homeserver.storage.database import Connection, Database, Row


@attrs.frozen
class PushRuleRow:
    kind: str
    rule_id: str
    conditions: list[Any]
    pattern: str | None
    actions: list[Any]
    enabled: bool


@attrs.frozen
class DefaultRuleRow:
    rule_id: str
    enabled: bool | None
    actions: list[Any] | None


SELECT_RULES = """
SELECT kind, rule_id, conditions, pattern, actions, enabled FROM push_rules
WHERE user_id = $1 ORDER BY kind, position DESC
"""
DELETE_KIND = "DELETE FROM push_rules WHERE user_id = $1 AND kind = $2"
INSERT_RULE = """
INSERT INTO push_rules (user_id, kind, rule_id, position, conditions, pattern, actions, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
SELECT_DEFAULTS = "SELECT rule_id, enabled, actions FROM push_rule_defaults WHERE user_id = $1"
_RULES_OF = """
SELECT user_id, kind, rule_id, conditions, pattern, actions, enabled FROM push_rules
WHERE user_id {} ORDER BY user_id, kind, position DESC
"""
SELECT_RULES_MANY_PG = _RULES_OF.format("= ANY($1::text[])")
SELECT_RULES_MANY_SQLITE = _RULES_OF.format("IN (SELECT value FROM json_each($1))")
_DEFAULTS_OF = "SELECT user_id, rule_id, enabled, actions FROM push_rule_defaults WHERE user_id {}"
SELECT_DEFAULTS_MANY_PG = _DEFAULTS_OF.format("= ANY($1::text[])")
SELECT_DEFAULTS_MANY_SQLITE = _DEFAULTS_OF.format("IN (SELECT value FROM json_each($1))")
UPSERT_DEFAULT_ENABLED = """
INSERT INTO push_rule_defaults (user_id, rule_id, enabled, actions) VALUES ($1, $2, $3, NULL)
ON CONFLICT (user_id, rule_id) DO UPDATE SET enabled = excluded.enabled
"""
UPSERT_DEFAULT_ACTIONS = """
INSERT INTO push_rule_defaults (user_id, rule_id, enabled, actions) VALUES ($1, $2, NULL, $3)
ON CONFLICT (user_id, rule_id) DO UPDATE SET actions = excluded.actions
"""


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _rule(r: Row) -> PushRuleRow:
    return PushRuleRow(r["kind"], r["rule_id"], json.loads(r["conditions"]), r["pattern"],
                       json.loads(r["actions"]), bool(r["enabled"]))


def _default(r: Row) -> DefaultRuleRow:
    return DefaultRuleRow(r["rule_id"], None if r["enabled"] is None else bool(r["enabled"]),
                          None if r["actions"] is None else json.loads(r["actions"]))


class PushRuleStore:
    async def rules(self, db: Database | Connection, user_id: str) -> list[PushRuleRow]:
        """Every rule of the user, most important first within each kind."""
        return [_rule(r) for r in await db.fetch(SELECT_RULES, user_id)]

    async def rules_of(self, conn: Connection, user_ids: Sequence[str]) -> dict[str, list[PushRuleRow]]:
        """`rules` for many users in one query (users without rules are absent)."""
        out: dict[str, list[PushRuleRow]] = {}
        for r in await fetch_for_ids(conn, SELECT_RULES_MANY_PG, SELECT_RULES_MANY_SQLITE, user_ids):
            out.setdefault(r["user_id"], []).append(_rule(r))
        return out

    async def defaults_of(self, conn: Connection,
                          user_ids: Sequence[str]) -> dict[str, list[DefaultRuleRow]]:
        """`defaults` for many users in one query (users without changes are absent)."""
        out: dict[str, list[DefaultRuleRow]] = {}
        for r in await fetch_for_ids(conn, SELECT_DEFAULTS_MANY_PG, SELECT_DEFAULTS_MANY_SQLITE,
                                     user_ids):
            out.setdefault(r["user_id"], []).append(_default(r))
        return out

    async def replace_kind(self, conn: Connection, user_id: str, kind: str,
                           rules: list[PushRuleRow]) -> None:
        """Store `rules` (most important first) as all of the user's rules of `kind`:
        a user has few rules, so rewriting them keeps positions dense and simple."""
        await conn.execute(DELETE_KIND, user_id, kind)
        total = len(rules)
        for index, rule in enumerate(rules):
            await conn.execute(INSERT_RULE, user_id, kind, rule.rule_id, total - index,
                               _dump(rule.conditions), rule.pattern, _dump(rule.actions),
                               int(rule.enabled))

    async def defaults(self, db: Database | Connection, user_id: str) -> list[DefaultRuleRow]:
        return [_default(r) for r in await db.fetch(SELECT_DEFAULTS, user_id)]

    async def set_default_enabled(self, conn: Connection, user_id: str, rule_id: str,
                                  enabled: bool) -> None:
        await conn.execute(UPSERT_DEFAULT_ENABLED, user_id, rule_id, int(enabled))

    async def set_default_actions(self, conn: Connection, user_id: str, rule_id: str,
                                  actions: list[Any]) -> None:
        await conn.execute(UPSERT_DEFAULT_ACTIONS, user_id, rule_id, _dump(actions))
