"""Account management: whoami, password change, deactivation.

Spec: https://spec.matrix.org/v1.19/client-server-api/#account-management
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import optional, require
from homeserver.accounts.account import AccountManagement


class Account:
    def __init__(self, accounts: AccountManagement):
        self._accounts = accounts

    async def get_token_owner(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/account/whoami"""
        user = request.user
        body: JsonDict = {"user_id": user.user_id, "is_guest": user.is_guest}
        if user.device_id is not None:
            body["device_id"] = user.device_id
        return body

    async def change_password(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/account/password"""
        body = request.body
        await self._accounts.change_password(
            request.requester, require(body, "new_password", str),
            logout_devices=optional(body, "logout_devices", bool, True),
            auth=optional(body, "auth", dict))
        return {}

    async def deactivate_account(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/account/deactivate"""
        body = request.body
        optional(body, "id_server", str)
        await self._accounts.deactivate(request.requester, optional(body, "auth", dict),
                                        erase=optional(body, "erase", bool, False))
        # We hold no third-party identifiers, so there is nothing to unbind: the spec
        # says that counts as "success".
        return {"id_server_unbind_result": "success"}

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", v3("/account/whoami"), self.get_token_owner, auth=Auth.GUEST_OK, rate_limit="default"),
            Endpoint("POST", v3("/account/password"), self.change_password, auth=Auth.OPTIONAL,
                     rate_limit="password_change"),
            Endpoint("POST", v3("/account/deactivate"), self.deactivate_account,
                     auth=Auth.OPTIONAL, rate_limit="password_change"),
        ]
