"""The push rules API and each user's compiled rule set.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules-api . Every change
rewrites the user's `m.push_rules` global account data in the same transaction (the spec
delivers rule changes to clients through /sync account data), then wakes their syncs.
The compiled rule sets are cached here, the one place that writes rules, and dropped in
the function that writes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

import attrs

from homeserver.errors import InvalidParam, NotFound
from homeserver.push.evaluator import CompiledRuleset, shared_rules
from homeserver.push.rules import (
    DefaultChange,
    PushRule,
    default_rules,
    merge_ruleset,
    ruleset_json,
)
from homeserver.push.validation import check_actions, check_kind, check_new_rule_id, check_rule_body
from homeserver.rooms.locks import RoomLocks
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Connection, Database
from homeserver.storage.push_rules import DefaultRuleRow, PushRuleRow, PushRuleStore

PUSH_RULES_TYPE = "m.push_rules"
COMPILED_CACHE_SIZE = 10_000
# Rule sets compiled between yields to the event loop (~0.2 ms each).
COMPILE_SLICE = 100
JsonDict = dict[str, Any]
# (user_id, account_data stream position) after commit, to wake the user's /sync.
ChangeListener = Callable[[str, int], None]


def _to_rule(row: PushRuleRow) -> PushRule:
    return PushRule(row.kind, row.rule_id, row.actions, row.enabled, False,
                    row.conditions, row.pattern)


def _to_row(rule: PushRule) -> PushRuleRow:
    return PushRuleRow(rule.kind, rule.rule_id, rule.conditions or [], rule.pattern,
                       rule.actions, rule.enabled)


class PushRules:
    def __init__(self, db: Database, store: PushRuleStore, account_data: AccountDataStore,
                 on_change: ChangeListener | None = None, *,
                 cache_size: int = COMPILED_CACHE_SIZE):
        self._db = db
        self._store = store
        self._account_data = account_data
        self._on_change = on_change
        self._compiled: OrderedDict[str, CompiledRuleset] = OrderedDict()
        self._cache_size = cache_size
        # Bumped on every write so that a compile racing a write is not cached.
        self._generation = 0
        # A user's read-modify-write changes queue up instead of losing one.
        self._locks = RoomLocks()

    async def ruleset(self, db: Database | Connection, user_id: str) -> dict[str, list[PushRule]]:
        return _merge(user_id, await self._store.rules(db, user_id),
                      await self._store.defaults(db, user_id))

    async def get_all(self, user_id: str) -> JsonDict:
        """GET /pushrules/ : {"global": ruleset}."""
        return {"global": ruleset_json(await self.ruleset(self._db, user_id))}

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> PushRule:
        check_kind(kind)
        for rule in (await self.ruleset(self._db, user_id))[kind]:
            if rule.rule_id == rule_id:
                return rule
        raise NotFound("Unknown push rule")

    async def compiled(self, user_id: str) -> CompiledRuleset:
        """The user's rules ready to evaluate (cached, bounded)."""
        cached = self._compiled.get(user_id)
        if cached is not None:
            self._compiled.move_to_end(user_id)
            return cached
        generation = self._generation
        compiled = _compile(user_id, await self.ruleset(self._db, user_id))
        if generation == self._generation:
            self._remember(user_id, compiled)
        return compiled

    async def compiled_many(self, conn: Connection,
                            user_ids: Collection[str]) -> dict[str, CompiledRuleset]:
        """`compiled` for many users; the ones not cached are read in two queries."""
        out: dict[str, CompiledRuleset] = {}
        missing = []
        for user_id in user_ids:
            cached = self._compiled.get(user_id)
            if cached is None:
                missing.append(user_id)
            else:
                self._compiled.move_to_end(user_id)
                out[user_id] = cached
        if not missing:
            return out
        generation = self._generation
        rows = await self._store.rules_of(conn, missing)
        defaults = await self._store.defaults_of(conn, missing)
        for count, user_id in enumerate(missing, 1):
            if count % COMPILE_SLICE == 0:
                await asyncio.sleep(0)  # a big room's first event: let requests through
            compiled = _compile(user_id, _merge(user_id, rows.get(user_id, []),
                                                defaults.get(user_id, [])))
            out[user_id] = compiled
            if generation == self._generation:
                self._remember(user_id, compiled)
        return out

    def _remember(self, user_id: str, compiled: CompiledRuleset) -> None:
        self._compiled[user_id] = compiled
        self._compiled.move_to_end(user_id)
        if len(self._compiled) > self._cache_size:
            self._compiled.popitem(last=False)

    async def put_rule(self, user_id: str, kind: str, rule_id: str, body: JsonDict, *,
                       before: str | None = None, after: str | None = None) -> None:
        """PUT /pushrules/global/{kind}/{ruleId}: create or replace a user rule."""
        check_kind(kind)
        check_new_rule_id(rule_id)
        actions, conditions, pattern = check_rule_body(kind, body)
        for anchor in (before, after):
            if anchor is not None and anchor.startswith("."):
                raise InvalidParam("Rules cannot be placed relative to server-default rules")
        async with self._locks.hold(user_id), self._db.transaction() as conn:
            rules = [r for r in await self._store.rules(conn, user_id) if r.kind == kind]
            existing = next((r for r in rules if r.rule_id == rule_id), None)
            new = PushRuleRow(kind, rule_id, conditions or [], pattern, actions,
                              existing.enabled if existing is not None else True)
            rules = _place(rules, new, existing, before, after)
            await self._store.replace_kind(conn, user_id, kind, rules)
            stream_id = await self._written(conn, user_id)
        self._committed(user_id, stream_id)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        """DELETE /pushrules/global/{kind}/{ruleId}"""
        check_kind(kind)
        if rule_id.startswith("."):
            if any(r.rule_id == rule_id for r in default_rules(user_id)[kind]):
                raise InvalidParam("Server-default rules cannot be deleted")
            raise NotFound("Unknown push rule")
        async with self._locks.hold(user_id), self._db.transaction() as conn:
            rules = [r for r in await self._store.rules(conn, user_id) if r.kind == kind]
            kept = [r for r in rules if r.rule_id != rule_id]
            if len(kept) == len(rules):
                raise NotFound("Unknown push rule")
            await self._store.replace_kind(conn, user_id, kind, kept)
            stream_id = await self._written(conn, user_id)
        self._committed(user_id, stream_id)

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: Any) -> None:
        """PUT /pushrules/global/{kind}/{ruleId}/enabled"""
        if not isinstance(enabled, bool):
            raise InvalidParam("'enabled' must be a boolean")
        await self._update(user_id, kind, rule_id, enabled=enabled)

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: Any) -> None:
        """PUT /pushrules/global/{kind}/{ruleId}/actions"""
        await self._update(user_id, kind, rule_id, actions=check_actions(actions))

    async def _update(self, user_id: str, kind: str, rule_id: str, *,
                      enabled: bool | None = None, actions: list[Any] | None = None) -> None:
        check_kind(kind)
        async with self._locks.hold(user_id), self._db.transaction() as conn:
            if rule_id.startswith("."):
                if not any(r.rule_id == rule_id for r in default_rules(user_id)[kind]):
                    raise NotFound("Unknown push rule")
                if enabled is not None:
                    await self._store.set_default_enabled(conn, user_id, rule_id, enabled)
                if actions is not None:
                    await self._store.set_default_actions(conn, user_id, rule_id, actions)
            else:
                rules = [r for r in await self._store.rules(conn, user_id) if r.kind == kind]
                if not any(r.rule_id == rule_id for r in rules):
                    raise NotFound("Unknown push rule")
                rules = [attrs.evolve(r, enabled=r.enabled if enabled is None else enabled,
                                      actions=r.actions if actions is None else actions)
                         if r.rule_id == rule_id else r for r in rules]
                await self._store.replace_kind(conn, user_id, kind, rules)
            stream_id = await self._written(conn, user_id)
        self._committed(user_id, stream_id)

    async def _written(self, conn: Connection, user_id: str) -> int:
        """In the writing transaction: drop the compiled rules and store the new
        m.push_rules account data; returns its stream position."""
        self._generation += 1
        self._compiled.pop(user_id, None)
        content = {"global": ruleset_json(await self.ruleset(conn, user_id))}
        return await self._account_data.put_global(conn, user_id, PUSH_RULES_TYPE, content)

    def _committed(self, user_id: str, stream_id: int) -> None:
        # A compile that read the old rules while the transaction was open must not stay.
        self._generation += 1
        self._compiled.pop(user_id, None)
        if self._on_change is not None:
            self._on_change(user_id, stream_id)


def _merge(user_id: str, rows: list[PushRuleRow],
           defaults: list[DefaultRuleRow]) -> dict[str, list[PushRule]]:
    user_rules: dict[str, list[PushRule]] = {}
    for row in rows:
        user_rules.setdefault(row.kind, []).append(_to_rule(row))
    changes = {d.rule_id: DefaultChange(d.enabled, d.actions) for d in defaults}
    return merge_ruleset(user_id, user_rules, changes)


# The server-default rules compiled once, for any user ID: the rules that do not name
# the user are shared by every user's compiled set (evaluator.CompiledRuleset).
_SHARED_DEFAULTS = shared_rules(default_rules("@_:_"))


def _compile(user_id: str, ruleset: dict[str, list[PushRule]]) -> CompiledRuleset:
    return CompiledRuleset(ruleset, default_only=ruleset == default_rules(user_id),
                           shared=_SHARED_DEFAULTS)


def _place(rules: list[PushRuleRow], new: PushRuleRow, existing: PushRuleRow | None,
           before: str | None, after: str | None) -> list[PushRuleRow]:
    """The kind's rules (most important first) with `new` in its place. Spec: with
    `before` it goes just above that rule (`before` wins when both are given), with
    `after` just below; otherwise an update stays put and a new rule goes on top."""
    others = [r for r in rules if r.rule_id != new.rule_id]
    anchor = before if before is not None else after
    if anchor is None:
        if existing is not None:
            return [new if r.rule_id == new.rule_id else r for r in rules]
        return [new, *others]
    index = next((i for i, r in enumerate(others) if r.rule_id == anchor), None)
    if index is None:
        raise NotFound(f"Unknown rule {anchor!r} in 'before'/'after'")
    if before is None:
        index += 1
    return [*others[:index], new, *others[index:]]
