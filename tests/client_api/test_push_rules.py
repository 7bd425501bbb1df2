"""/pushrules on a real in-process server, both engines (spec: #push-rules-api)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import error
from tests.client_api.sync_helpers import C, User, ok
from tests.spec_schemas import validate_response

RULES = f"{C}/pushrules/global"


async def get_rules(user: User) -> dict[str, Any]:
    body = await ok(await user.client.get(f"{C}/pushrules/", headers=user.headers))
    validate_response("pushrules.yaml", "/pushrules/", "get", body)
    return body["global"]  # type: ignore[no-any-return]


def ids(ruleset: dict[str, Any], kind: str) -> list[str]:
    return [r["rule_id"] for r in ruleset[kind]]


async def put(user: User, kind: str, rule_id: str, body: dict[str, Any], **query: str) -> Any:
    return await user.client.put(f"{RULES}/{kind}/{quote(rule_id, safe='')}",
                                 headers=user.headers, json=body, params=query)


async def test_default_rules_served_per_spec(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    rules = await get_rules(alice)
    assert ids(rules, "override")[0] == ".m.rule.master"
    assert ids(rules, "content") == [".m.rule.contains_user_name"]
    assert rules["content"][0]["pattern"] == "alice"
    assert ids(rules, "underride") == [".m.rule.call", ".m.rule.encrypted_room_one_to_one",
                                       ".m.rule.room_one_to_one", ".m.rule.message",
                                       ".m.rule.encrypted"]
    assert rules["room"] == [] and rules["sender"] == []
    mention = rules["override"][ids(rules, "override").index(".m.rule.is_user_mention")]
    assert mention["conditions"] == [{"kind": "event_property_contains",
                                      "key": "content.m\\.mentions.user_ids",
                                      "value": alice.user_id}]
    body = await ok(await client.get(f"{RULES}/", headers=alice.headers))
    validate_response("pushrules.yaml", "/pushrules/global/", "get", body)
    one = await ok(await client.get(f"{RULES}/override/.m.rule.master", headers=alice.headers))
    validate_response("pushrules.yaml", "/pushrules/global/{kind}/{ruleId}", "get", one)
    assert one == {"rule_id": ".m.rule.master", "default": True, "enabled": False,
                   "conditions": [], "actions": []}


async def test_put_get_delete_and_ordering(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    await ok(await put(alice, "content", "cake", {"pattern": "cake", "actions": ["notify"]}))
    await ok(await put(alice, "content", "tea", {"pattern": "tea", "actions": ["notify"]}))
    # A new rule without before/after is the most important user rule.
    assert ids(await get_rules(alice), "content") == ["tea", "cake", ".m.rule.contains_user_name"]
    await ok(await put(alice, "content", "pie", {"pattern": "pie", "actions": []}, after="tea"))
    assert ids(await get_rules(alice), "content")[:3] == ["tea", "pie", "cake"]
    await ok(await put(alice, "content", "cake", {"pattern": "cake*", "actions": []},
                       before="tea"))
    rules = await get_rules(alice)
    assert ids(rules, "content")[:3] == ["cake", "tea", "pie"]
    assert rules["content"][0] == {"rule_id": "cake", "default": False, "enabled": True,
                                   "pattern": "cake*", "actions": []}
    # An update without before/after keeps its place.
    await ok(await put(alice, "content", "tea", {"pattern": "tea", "actions": ["notify"]}))
    assert ids(await get_rules(alice), "content")[:3] == ["cake", "tea", "pie"]
    await ok(await client.delete(f"{RULES}/content/tea", headers=alice.headers))
    assert ids(await get_rules(alice), "content")[:2] == ["cake", "pie"]
    await error(await client.get(f"{RULES}/content/tea", headers=alice.headers), 404, "M_NOT_FOUND")
    await error(await client.delete(f"{RULES}/content/tea", headers=alice.headers), 404,
                "M_NOT_FOUND")


async def test_override_rule_with_unknown_condition_is_kept(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    conditions = [{"kind": "event_match", "key": "content.body", "pattern": "beer"},
                  {"kind": "room_member_count", "is": "<=10"}, {"kind": "org.example.future"}]
    await ok(await put(alice, "override", "beer", {"conditions": conditions,
                                                   "actions": ["notify"]}))
    rules = await get_rules(alice)
    # User rules rank below .m.rule.master and above the other defaults.
    assert ids(rules, "override")[:3] == [".m.rule.master", "beer", ".m.rule.suppress_notices"]
    assert rules["override"][1]["conditions"] == conditions


async def test_enabled_and_actions(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    url = f"{RULES}/underride/.m.rule.message"
    assert await ok(await client.get(url + "/enabled", headers=alice.headers)) == {"enabled": True}
    await ok(await client.put(url + "/enabled", headers=alice.headers, json={"enabled": False}))
    assert await ok(await client.get(url + "/enabled", headers=alice.headers)) == {"enabled": False}
    await ok(await client.put(url + "/actions", headers=alice.headers, json={"actions": []}))
    assert await ok(await client.get(url + "/actions", headers=alice.headers)) == {"actions": []}
    await ok(await put(alice, "sender", "@spam:test.local", {"actions": []}))
    sender_url = f"{RULES}/sender/{quote('@spam:test.local')}"
    await ok(await client.put(sender_url + "/enabled", headers=alice.headers,
                              json={"enabled": False}))
    rule = await ok(await client.get(sender_url, headers=alice.headers))
    assert rule == {"rule_id": "@spam:test.local", "default": False, "enabled": False,
                    "actions": []}
    await error(await client.put(url + "/enabled", headers=alice.headers, json={}), 400,
                "M_INVALID_PARAM")
    await error(await client.put(url + "/actions", headers=alice.headers,
                                 json={"actions": ["explode"]}), 400, "M_INVALID_PARAM")
    await error(await client.put(f"{RULES}/underride/.m.rule.nope/enabled", headers=alice.headers,
                                 json={"enabled": True}), 404, "M_NOT_FOUND")


async def test_bad_input(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    await error(await put(alice, "override", ".m.rule.mine", {"actions": []}), 400,
                "M_INVALID_PARAM")
    await error(await put(alice, "override", "a\\b", {"actions": []}), 400, "M_INVALID_PARAM")
    await error(await put(alice, "sideways", "x", {"actions": []}), 400, "M_INVALID_PARAM")
    await error(await put(alice, "override", "x", {}), 400, "M_MISSING_PARAM")
    await error(await put(alice, "override", "x", {"actions": "notify"}), 400, "M_BAD_JSON")
    await error(await put(alice, "content", "x", {"actions": []}), 400, "M_MISSING_PARAM")
    await error(await put(alice, "override", "x", {"actions": [],
                                                   "conditions": [{"kind": "event_match"}]}),
                400, "M_MISSING_PARAM")
    await error(await put(alice, "override", "x", {"actions": [], "conditions": [{"k": 1}]}),
                400, "M_BAD_JSON")
    await error(await put(alice, "content", "x", {"pattern": "x", "actions": []},
                          before="nope"), 404, "M_NOT_FOUND")
    await error(await put(alice, "override", "x", {"actions": []}, before=".m.rule.master"),
                400, "M_INVALID_PARAM")
    await error(await client.delete(f"{RULES}/override/.m.rule.master", headers=alice.headers),
                400, "M_INVALID_PARAM")
    await error(await client.get(f"{RULES}/override/x"), 401, "M_MISSING_TOKEN")


async def test_changes_reach_sync_as_account_data(client: TestClient) -> None:
    alice = await User.register(client, "alice")
    first = await alice.sync()
    await ok(await put(alice, "room", "!abc:test.local", {"actions": []}))
    body = await alice.sync(since=first["next_batch"])
    events = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert len(events) == 1
    assert ids(events[0]["content"]["global"], "room") == ["!abc:test.local"]
    assert events[0]["content"]["global"] == await get_rules(alice)
    # Server-managed: clients cannot write it through the account data API.
    await error(await client.put(f"{C}/user/{alice.user_id}/account_data/m.push_rules",
                                 headers=alice.headers, json={}), 405, "M_BAD_JSON")
