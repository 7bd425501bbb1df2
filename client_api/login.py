"""Login, logout and token refresh.

Spec: https://spec.matrix.org/v1.19/client-server-api/#login and #refreshing-access-tokens
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import require
from homeserver.accounts.login import LoginService
from homeserver.accounts.tokens import AccessTokens


class Login:
    def __init__(self, login: LoginService, tokens: AccessTokens, *, server_name: str,
                 public_baseurl: str):
        self._login = login
        self._tokens = tokens
        self._server_name = server_name
        self._base_url = public_baseurl.rstrip("/")

    async def get_login_flows(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/login"""
        return {"flows": self._login.flows()}

    async def login(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/login"""
        result = await self._login.login(request.body, client_ip=request.client_ip)
        body: JsonDict = {"user_id": result.user_id, "access_token": result.access_token,
                          "device_id": result.device_id, "home_server": self._server_name,
                          "well_known": {"m.homeserver": {"base_url": self._base_url}}}
        if result.refresh_token is not None:
            body["refresh_token"] = result.refresh_token
        if result.expires_in_ms is not None:
            body["expires_in_ms"] = result.expires_in_ms
        return body

    async def logout(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/logout — the device goes with its token (spec)."""
        user = request.user
        if user.device_id is None:
            await self._tokens.revoke_token(user.token_id)
        else:
            await self._tokens.revoke_devices(user.user_id, [user.device_id], delete_devices=True)
        return {}

    async def logout_all(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/logout/all"""
        await self._tokens.revoke_all(request.user.user_id, delete_devices=True)
        return {}

    async def refresh(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/refresh"""
        issued = await self._tokens.refresh(require(request.body, "refresh_token", str))
        body: JsonDict = {"access_token": issued.access_token}
        if issued.refresh_token is not None:
            body["refresh_token"] = issued.refresh_token
        if issued.expires_in_ms is not None:
            body["expires_in_ms"] = issued.expires_in_ms
        return body

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", v3("/login"), self.get_login_flows, auth=Auth.NONE, rate_limit="default"),
            Endpoint("POST", v3("/login"), self.login, auth=Auth.NONE, rate_limit="login"),
            Endpoint("POST", v3("/logout"), self.logout, auth=Auth.GUEST_OK, rate_limit="default"),
            Endpoint("POST", v3("/logout/all"), self.logout_all, auth=Auth.GUEST_OK, rate_limit="default"),
            Endpoint("POST", v3("/refresh", r0=False), self.refresh, auth=Auth.NONE,
                     rate_limit="login"),
        ]
