"""POST /register, GET /register/available, GET .../registration_token/validity."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.client_api.conftest import Connect, MakeHs, error, register
from tests.spec_schemas import validate_response

REGISTER = "/_matrix/client/v3/register"


async def test_register_two_step_dummy_flow(client: TestClient) -> None:
    resp = await client.post(REGISTER, json={"username": "alice", "password": "correct horse battery"})
    challenge = await resp.json()
    assert resp.status == 401
    validate_response("registration.yaml", "/register", "post", challenge, status="401")
    assert challenge["flows"] == [{"stages": ["m.login.dummy"]}]
    body = await register(client, "bob", initial_device_display_name="Phone", refresh_token=True)
    validate_response("registration.yaml", "/register", "post", body)
    assert body["user_id"] == "@bob:test.local" and body["device_id"] and body["access_token"]
    assert body["refresh_token"] and body["expires_in_ms"] > 0


async def test_register_inhibit_login_and_r0_path(client: TestClient) -> None:
    resp = await client.post("/_matrix/client/r0/register", json={
        "username": "carol", "password": "correct horse battery", "inhibit_login": True,
        "auth": {"type": "m.login.dummy"}})
    body = await resp.json()
    assert resp.status == 200, body
    validate_response("registration.yaml", "/register", "post", body)
    assert body == {"user_id": "@carol:test.local", "home_server": "test.local"}


async def test_register_bad_input(client: TestClient) -> None:
    await register(client, "alice")
    cases = [
        ({"username": "alice", "password": "correct horse battery"}, 400, "M_USER_IN_USE"),
        ({"username": "Bad Name!", "password": "correct horse battery"}, 400, "M_INVALID_USERNAME"),
        ({"username": "_reserved", "password": "correct horse battery"}, 400, "M_INVALID_USERNAME"),
        ({"username": "dave", "password": "short"}, 400, "M_WEAK_PASSWORD"),
        ({"username": 5, "password": "correct horse battery"}, 400, "M_BAD_JSON"),
        ({"username": "dave", "password": ["x"]}, 400, "M_BAD_JSON"),
        ({"username": "dave", "password": "correct horse battery", "auth": "x"}, 400, "M_BAD_JSON"),
        ({"username": "dave", "password": "correct horse battery", "inhibit_login": "yes"}, 400, "M_BAD_JSON"),
        ({"username": "dave", "auth": {"type": "m.login.dummy"}}, 400, "M_MISSING_PARAM"),
    ]
    for payload, status, errcode in cases:
        await error(await client.post(REGISTER, json=payload), status, errcode)
    await error(await client.post(REGISTER, data=b"{not json"), 400, "M_NOT_JSON")
    await error(await client.post(REGISTER, data=b"[1, 2]"), 400, "M_BAD_JSON")
    await error(await client.post(REGISTER, data=b'{"a": NaN}'), 400, "M_NOT_JSON")
    await error(await client.post(REGISTER, data=b"\xff\xfe"), 400, "M_NOT_JSON")
    await error(await client.post(REGISTER + "?kind=robot", json={}), 400, "M_INVALID_PARAM")


async def test_register_wrong_uiaa_stage(client: TestClient) -> None:
    resp = await client.post(REGISTER, json={"username": "eve", "password": "correct horse battery",
                                             "auth": {"type": "m.login.password", "password": "x"}})
    body = await resp.json()
    assert resp.status == 401 and body["errcode"] == "M_UNRECOGNIZED" and body["flows"]
    resp = await client.post(REGISTER, json={"username": "eve", "password": "correct horse battery",
                                             "auth": {"type": "m.login.dummy", "session": "bogus"}})
    await error(resp, 400, "M_UNKNOWN")


async def test_session_bound_to_username(client: TestClient) -> None:
    resp = await client.post(REGISTER, json={"username": "frank", "password": "correct horse battery"})
    session = (await resp.json())["session"]
    resp = await client.post(REGISTER, json={"username": "mallory", "password": "correct horse battery",
                                             "auth": {"type": "m.login.dummy", "session": session}})
    await error(resp, 403, "M_FORBIDDEN")


async def test_guest_registration_forbidden_by_default(client: TestClient) -> None:
    await error(await client.post(REGISTER + "?kind=guest", json={}), 403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_guest_registration_when_enabled(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs(registration={"guest_access": True}))
    resp = await client.post(REGISTER + "?kind=guest", json={"username": "ignored"})
    body = await resp.json()
    assert resp.status == 200, body
    validate_response("registration.yaml", "/register", "post", body)
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    resp = await client.get("/_matrix/client/v3/account/whoami", headers=headers)
    assert (await resp.json())["is_guest"] is True
    # Guests may not use endpoints that need a full account.
    resp = await client.get("/_matrix/client/v3/user/x/account_data/y", headers=headers)
    await error(resp, 403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_registration_disabled(make_hs: MakeHs, connect: Connect) -> None:
    client = await connect(make_hs(registration={"policy": "disabled"}))
    await error(await client.post(REGISTER, json={"username": "a", "password": "correct horse battery"}),
                403, "M_FORBIDDEN")
    await error(await client.get(REGISTER + "/available?username=a"), 403, "M_FORBIDDEN")
    await error(await client.get("/_matrix/client/v1/register/m.login.registration_token/validity?token=x"),
                403, "M_FORBIDDEN")


async def test_token_registration(make_hs: MakeHs, connect: Connect) -> None:
    hs = make_hs(registration={"policy": "token", "tokens": ["config-token"]})
    client = await connect(hs)
    async with hs.db.transaction() as conn:
        await hs.registration_tokens_store.create(conn, "db-token", uses_allowed=1, expiry_time=None)
    validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
    for token, valid in (("config-token", True), ("db-token", True), ("nope", False)):
        resp = await client.get(f"{validity}?token={token}")
        body = await resp.json()
        assert body == {"valid": valid}
        validate_response("registration_tokens.yaml", "/register/m.login.registration_token/validity",
                          "get", body)
    await error(await client.get(validity), 400, "M_MISSING_PARAM")
    resp = await client.post(REGISTER, json={"username": "gina", "password": "correct horse battery"})
    challenge = await resp.json()
    assert challenge["flows"] == [{"stages": ["m.login.registration_token", "m.login.dummy"]}]
    auth = {"type": "m.login.registration_token", "token": "wrong", "session": challenge["session"]}
    resp = await client.post(REGISTER, json={"username": "gina", "password": "correct horse battery",
                                             "auth": auth})
    body = await resp.json()
    assert resp.status == 401 and body["errcode"] == "M_FORBIDDEN"
    resp = await client.post(REGISTER, json={"username": "gina", "password": "correct horse battery",
                                             "auth": {**auth, "token": "db-token"}})
    body = await resp.json()
    assert resp.status == 401 and body["completed"] == ["m.login.registration_token"]
    # Dummy before the token stage would not do: the token stage is done now.
    resp = await client.post(REGISTER, json={"username": "gina", "password": "correct horse battery",
                                             "auth": {"type": "m.login.dummy", "session": challenge["session"]}})
    assert resp.status == 200, await resp.json()
    body = await (await client.get(f"{validity}?token=db-token")).json()
    assert body == {"valid": False}  # its one use is spent
    # Dummy alone is not enough under the token policy.
    resp = await client.post(REGISTER, json={"username": "hank", "password": "correct horse battery",
                                             "auth": {"type": "m.login.dummy"}})
    assert resp.status == 401 and (await resp.json())["errcode"] == "M_UNRECOGNIZED"


async def test_username_available(client: TestClient) -> None:
    resp = await client.get(REGISTER + "/available?username=newbie")
    body = await resp.json()
    assert resp.status == 200 and body == {"available": True}
    validate_response("registration.yaml", "/register/available", "get", body)
    await register(client, "alice")
    await error(await client.get(REGISTER + "/available?username=alice"), 400, "M_USER_IN_USE")
    await error(await client.get(REGISTER + "/available?username=no%20pe"), 400, "M_INVALID_USERNAME")
    await error(await client.get(REGISTER + "/available"), 400, "M_MISSING_PARAM")
