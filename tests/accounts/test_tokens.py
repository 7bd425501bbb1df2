"""AccessTokens: authenticate, expiry, refresh, revocation and its cache."""

from __future__ import annotations

import pytest

from homeserver.errors import UnknownToken
from homeserver.storage.access_tokens import token_hash
from tests.accounts.conftest import TOKEN_LIFETIME_MS, Services


async def _user(services: Services, localpart: str = "alice", refresh: bool = False):
    return await services.registration.register_user(localpart, "password123", device_id="DEV",
                                                     refresh_token=refresh)


async def test_authenticate_returns_requester(services: Services) -> None:
    reg = await _user(services)
    assert reg.access_token is not None
    requester = await services.tokens.authenticate(reg.access_token)
    assert (requester.user_id, requester.device_id, requester.is_guest) == ("@alice:test.local", "DEV", False)
    # The second lookup is served from the cache and gives the same answer.
    assert await services.tokens.authenticate(reg.access_token) == requester


async def test_unknown_token(services: Services) -> None:
    with pytest.raises(UnknownToken) as e:
        await services.tokens.authenticate("nope")
    assert e.value.to_json()["soft_logout"] is False


async def test_tokens_are_random_and_stored_hashed(services: Services) -> None:
    a, b = await _user(services, "alice"), await _user(services, "bob")
    assert a.access_token and b.access_token and a.access_token != b.access_token
    assert len(a.access_token) >= 40
    hashes = [r[0] for r in await services.db.fetch("SELECT token_hash FROM access_tokens")]
    assert a.access_token not in hashes and token_hash(a.access_token) in hashes


async def test_expired_token_is_soft_logout(services: Services) -> None:
    reg = await _user(services, refresh=True)
    assert reg.access_token and reg.expires_in_ms == TOKEN_LIFETIME_MS
    await services.tokens.authenticate(reg.access_token)  # cached now
    services.clock.advance(TOKEN_LIFETIME_MS)
    with pytest.raises(UnknownToken) as e:
        await services.tokens.authenticate(reg.access_token)
    assert e.value.to_json()["soft_logout"] is True


async def test_refresh_rotates_tokens(services: Services) -> None:
    reg = await _user(services, refresh=True)
    assert reg.access_token and reg.refresh_token
    await services.tokens.authenticate(reg.access_token)
    new = await services.tokens.refresh(reg.refresh_token)
    assert new.refresh_token and new.refresh_token != reg.refresh_token
    # The old access token is revoked at once, even though it was cached.
    with pytest.raises(UnknownToken):
        await services.tokens.authenticate(reg.access_token)
    # The old refresh token still works until the new tokens are used...
    again = await services.tokens.refresh(reg.refresh_token)
    assert again.refresh_token is not None
    with pytest.raises(UnknownToken):  # ...and using it again discarded the unused successor
        await services.tokens.authenticate(new.access_token)
    await services.tokens.authenticate(again.access_token)
    # Using the new access token retires the old refresh token.
    with pytest.raises(UnknownToken):
        await services.tokens.refresh(reg.refresh_token)
    assert (await services.tokens.refresh(again.refresh_token)).access_token


async def test_unknown_refresh_token(services: Services) -> None:
    with pytest.raises(UnknownToken):
        await services.tokens.refresh("not-a-token")


async def test_revoke_invalidates_cache(services: Services) -> None:
    reg = await _user(services)
    assert reg.access_token
    requester = await services.tokens.authenticate(reg.access_token)
    await services.tokens.revoke_token(requester.token_id)
    with pytest.raises(UnknownToken):
        await services.tokens.authenticate(reg.access_token)


async def test_revoke_all_keeps_one_device(services: Services) -> None:
    reg = await _user(services)
    other = await services.login.login({"type": "m.login.password", "user": "alice",
                                        "password": "password123"}, client_ip=None)
    assert reg.access_token
    await services.tokens.authenticate(reg.access_token)
    await services.tokens.authenticate(other.access_token)
    await services.tokens.revoke_all("@alice:test.local", except_device="DEV", delete_devices=True)
    await services.tokens.authenticate(reg.access_token)
    with pytest.raises(UnknownToken):
        await services.tokens.authenticate(other.access_token)
    assert [d.device_id for d in await services.devices.all_for_user("@alice:test.local")] == ["DEV"]


async def test_cache_is_bounded(services: Services) -> None:
    reg = await _user(services)
    assert reg.access_token
    tokens = [reg.access_token]
    for _ in range(3):
        r = await services.login.login({"type": "m.login.password", "user": "alice",
                                        "password": "password123"}, client_ip=None)
        tokens.append(r.access_token)
    services.tokens._cache_size = 2
    for t in tokens:
        await services.tokens.authenticate(t)
    assert len(services.tokens._cache) == 2
    # Evicted entries are looked up again from the database.
    assert (await services.tokens.authenticate(tokens[0])).user_id == "@alice:test.local"


async def test_device_last_seen_recorded(services: Services) -> None:
    reg = await _user(services)
    assert reg.access_token
    services.clock.advance(1000)
    await services.tokens.authenticate(reg.access_token)
    device = await services.devices.get("@alice:test.local", "DEV")
    assert device.last_seen_ts == services.clock.time_ms()
