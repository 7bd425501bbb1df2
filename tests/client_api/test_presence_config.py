"""The `presence.enabled` option switches presence off for the whole server."""

from __future__ import annotations

import pytest

from tests.client_api.conftest import Connect, MakeHs, register


@pytest.mark.parametrize("enabled", [True, False])
async def test_presence_can_be_turned_off(make_hs: MakeHs, connect: Connect, enabled: bool) -> None:
    client = await connect(make_hs(presence={"enabled": enabled}))
    alice = await register(client, "alice")
    headers = {"Authorization": f"Bearer {alice['access_token']}"}
    url = f"/_matrix/client/v3/presence/{alice['user_id']}/status"
    resp = await client.put(url, headers=headers, json={"presence": "online", "status_msg": "hi"})
    assert resp.status == 200
    body = await (await client.get(url, headers=headers)).json()
    assert body["presence"] == ("online" if enabled else "offline")
    assert ("status_msg" in body) is enabled
