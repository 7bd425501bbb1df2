"""The systematic response check that the endpoint and integration fixtures apply."""

from __future__ import annotations

import pytest

from tests.spec_schemas import CLIENT_SERVER, check_response, find_operations

pytestmark = pytest.mark.skipif(not CLIENT_SERVER.is_dir(), reason="Matrix spec data not found")
V3 = "/_matrix/client/v3"
EVENT = {"type": "m.room.name", "state_key": "", "content": {"name": "x"}, "event_id": "$e",
         "sender": "@a:b", "origin_server_ts": 1, "room_id": "!r:b"}


def test_paths_map_to_operations() -> None:
    assert find_operations("GET", "/_matrix/client/r0/rooms/!r:b/state/m.room.name/")[0][0] == \
        f"GET {V3}/rooms/{{roomId}}/state/{{eventType}}/{{stateKey}}"
    assert find_operations("POST", "/_matrix/media/v3/upload")[0][1] == "content-repo.yaml"
    assert find_operations("GET", "/.well-known/matrix/client")[0][1] == "wellknown.yaml"
    assert find_operations("GET", "/_matrix/client/unstable/im.devnet.ws/sync") == []


def test_mismatches_are_reported_and_undocumented_statuses_skipped() -> None:
    problem = check_response("GET", f"{V3}/account/whoami", 200, {"user_id": 5})
    assert problem is not None and "/user_id" in problem and "whoami.yaml" in problem
    assert check_response("GET", f"{V3}/account/whoami", 200, {"user_id": "@a:b"}) is None
    assert check_response("GET", f"{V3}/account/whoami", 418, {"anything": 1}) is None


def test_token_errors_are_not_checked_against_the_uiaa_401() -> None:
    assert check_response("POST", f"{V3}/delete_devices", 401,
                          {"errcode": "M_UNKNOWN_TOKEN", "error": "no"}) is None
    assert check_response("POST", f"{V3}/delete_devices", 401, {"errcode": "M_FORBIDDEN"})


def test_exclusions_are_narrow() -> None:
    nulls = {"device_id": "D", "display_name": None, "last_seen_ip": None, "last_seen_ts": None}
    assert check_response("GET", f"{V3}/devices", 200, {"devices": [nulls]}) is None
    assert check_response("GET", f"{V3}/devices", 200, {"devices": [{**nulls, "display_name": 5}]})
    state = f"{V3}/rooms/!r:b/state/m.room.name/"
    assert check_response("GET", state, 200, EVENT) is None
    assert check_response("GET", state, 200, [1]) is not None
