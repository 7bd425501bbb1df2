"""User-interactive auth: flows, stages, session binding."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.accounts.uiaa import DUMMY, PASSWORD, REGISTRATION_TOKEN
from homeserver.errors import BadJson, BadRequest, Forbidden, InteractiveAuthRequired
from tests.accounts.conftest import UIAA_LIFETIME_MS, Services, build_services

ALICE = "@alice:test.local"


async def _challenge(services: Services, **kw) -> dict:
    with pytest.raises(InteractiveAuthRequired) as e:
        await services.uiaa.authenticate(**kw)
    assert e.value.status == 401
    return e.value.body


async def test_no_auth_gives_flows_and_session(services: Services) -> None:
    body = await _challenge(services, auth=None, flows=[[PASSWORD]], operation="op", user_id=None)
    assert body["flows"] == [{"stages": [PASSWORD]}]
    assert body["completed"] == [] and body["params"] == {} and body["session"]
    assert "errcode" not in body


async def test_dummy_completes(services: Services) -> None:
    body = await _challenge(services, auth=None, flows=[[DUMMY]], operation="op", user_id=None)
    result = await services.uiaa.authenticate({"type": DUMMY, "session": body["session"]},
                                              flows=[[DUMMY]], operation="op", user_id=None)
    assert result.completed == {DUMMY: True}
    async with services.db.transaction() as conn:
        await services.uiaa.finish(conn, result)
    with pytest.raises(BadRequest):  # the session is spent
        await services.uiaa.authenticate({"type": DUMMY, "session": body["session"]},
                                         flows=[[DUMMY]], operation="op", user_id=None)


async def test_password_stage(services: Services) -> None:
    await services.registration.register_user("alice", "password123", inhibit_login=True)
    flows = [[PASSWORD]]
    body = await _challenge(services, auth=None, flows=flows, operation="op", user_id=ALICE)
    wrong = {"type": PASSWORD, "session": body["session"], "password": "wrong-password",
             "identifier": {"type": "m.id.user", "user": "alice"}}
    failed = await _challenge(services, auth=wrong, flows=flows, operation="op", user_id=ALICE)
    assert failed["errcode"] == "M_FORBIDDEN" and failed["session"] == body["session"]
    assert failed["completed"] == []
    right = {**wrong, "password": "password123"}
    result = await services.uiaa.authenticate(right, flows=flows, operation="op", user_id=ALICE)
    assert result.user_id == ALICE


async def test_password_stage_must_prove_the_acting_user(services: Services) -> None:
    await services.registration.register_user("alice", "password123", inhibit_login=True)
    await services.registration.register_user("bob", "password456", inhibit_login=True)
    auth = {"type": PASSWORD, "password": "password456", "user": "@bob:test.local"}
    body = await _challenge(services, auth=auth, flows=[[PASSWORD]], operation="op", user_id=ALICE)
    assert body["errcode"] == "M_FORBIDDEN"


async def test_unexpected_stage_is_refused(services: Services) -> None:
    body = await _challenge(services, auth={"type": DUMMY}, flows=[[PASSWORD]], operation="op",
                            user_id=None)
    assert body["errcode"] == "M_UNRECOGNIZED" and body["completed"] == []
    body = await _challenge(services, auth={"type": "m.login.sso"}, flows=[[PASSWORD]],
                            operation="op", user_id=None)
    assert body["errcode"] == "M_UNRECOGNIZED"


async def test_bad_auth_shapes(services: Services) -> None:
    with pytest.raises(BadJson):
        await services.uiaa.authenticate("x", flows=[[DUMMY]], operation="op", user_id=None)
    with pytest.raises(BadJson):
        await services.uiaa.authenticate({"type": 5}, flows=[[DUMMY]], operation="op", user_id=None)
    with pytest.raises(BadJson):
        await services.uiaa.authenticate({"session": 5}, flows=[[DUMMY]], operation="op", user_id=None)
    with pytest.raises(BadRequest):
        await services.uiaa.authenticate({"session": "unknown", "type": DUMMY}, flows=[[DUMMY]],
                                         operation="op", user_id=None)


async def test_session_bound_to_operation(services: Services) -> None:
    body = await _challenge(services, auth=None, flows=[[DUMMY]], operation="delete_devices",
                            user_id=ALICE, params=["A"])
    auth = {"type": DUMMY, "session": body["session"]}
    variants: list[dict[str, Any]] = [
        {"operation": "delete_devices", "user_id": ALICE, "params": ["B"]},
        {"operation": "password", "user_id": ALICE, "params": ["A"]},
        {"operation": "delete_devices", "user_id": "@bob:test.local", "params": ["A"]}]
    for kw in variants:
        with pytest.raises(Forbidden):
            await services.uiaa.authenticate(auth, flows=[[DUMMY]], **kw)
    await services.uiaa.authenticate(auth, flows=[[DUMMY]], operation="delete_devices",
                                     user_id=ALICE, params=["A"])


async def test_session_expires(services: Services) -> None:
    body = await _challenge(services, auth=None, flows=[[DUMMY]], operation="op", user_id=None)
    services.clock.advance(UIAA_LIFETIME_MS)
    with pytest.raises(BadRequest):
        await services.uiaa.authenticate({"type": DUMMY, "session": body["session"]},
                                         flows=[[DUMMY]], operation="op", user_id=None)


async def test_multi_stage_flow_in_order(services: Services) -> None:
    flows = [[REGISTRATION_TOKEN, DUMMY]]
    svc = build_services(services.db, services.clock, tokens=("secret-token",))
    body = await _challenge(svc, auth={"type": DUMMY}, flows=flows, operation="op", user_id=None)
    assert body["errcode"] == "M_UNRECOGNIZED"  # dummy is not first
    body = await _challenge(svc, auth={"type": REGISTRATION_TOKEN, "token": "secret-token",
                                       "session": body["session"]},
                            flows=flows, operation="op", user_id=None)
    assert body["completed"] == [REGISTRATION_TOKEN] and "errcode" not in body
    result = await svc.uiaa.authenticate({"type": DUMMY, "session": body["session"]}, flows=flows,
                                         operation="op", user_id=None)
    assert set(result.completed) == {REGISTRATION_TOKEN, DUMMY}


async def test_registration_token_uses_are_counted(services: Services) -> None:
    async with services.db.transaction() as conn:
        await services.reg_tokens.create(conn, "one-use", uses_allowed=1, expiry_time=None)
    flows = [[REGISTRATION_TOKEN]]
    auth = {"type": REGISTRATION_TOKEN, "token": "one-use"}
    assert await services.uiaa.registration_token_valid("one-use")
    first = await services.uiaa.authenticate(auth, flows=flows, operation="op", user_id=None)
    # The only use is pending: a second session cannot take it too.
    assert not await services.uiaa.registration_token_valid("one-use")
    body = await _challenge(services, auth=auth, flows=flows, operation="op", user_id=None)
    assert body["errcode"] == "M_FORBIDDEN"
    async with services.db.transaction() as conn:
        await services.uiaa.finish(conn, first)
    row = await services.reg_tokens.get(services.db, "one-use")
    assert row is not None and (row.pending, row.completed) == (0, 1)


async def test_expired_sessions_release_pending_token_uses(services: Services) -> None:
    async with services.db.transaction() as conn:
        await services.reg_tokens.create(conn, "one-use", uses_allowed=1, expiry_time=None)
    await services.uiaa.authenticate({"type": REGISTRATION_TOKEN, "token": "one-use"},
                                     flows=[[REGISTRATION_TOKEN]], operation="op", user_id=None)
    services.clock.advance(UIAA_LIFETIME_MS + 1)
    await _challenge(services, auth=None, flows=[[DUMMY]], operation="op", user_id=None)
    assert await services.uiaa.registration_token_valid("one-use")
