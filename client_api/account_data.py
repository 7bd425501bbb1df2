"""Client config (account data).

Spec: https://spec.matrix.org/v1.19/client-server-api/#client-config
"""

from __future__ import annotations

from client_api.endpoint import ClientRequest, Endpoint, JsonDict, v3
from homeserver.accounts.account_data import AccountData


class AccountDataApi:
    def __init__(self, account_data: AccountData):
        self._account_data = account_data

    async def set_account_data(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/user/{userId}/account_data/{type}"""
        p = request.path_params
        await self._account_data.set(request.user, p["userId"], p["type"], request.body)
        return {}

    async def get_account_data(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/user/{userId}/account_data/{type}"""
        p = request.path_params
        return await self._account_data.get(request.user, p["userId"], p["type"])

    async def set_account_data_per_room(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
        p = request.path_params
        await self._account_data.set(request.user, p["userId"], p["type"], request.body,
                                     room_id=p["roomId"])
        return {}

    async def get_account_data_per_room(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
        p = request.path_params
        return await self._account_data.get(request.user, p["userId"], p["type"],
                                            room_id=p["roomId"])

    def endpoints(self) -> list[Endpoint]:
        room = v3("/user/{userId}/rooms/{roomId}/account_data/{type}")
        return [
            Endpoint("PUT", v3("/user/{userId}/account_data/{type}"), self.set_account_data, rate_limit="default"),
            Endpoint("GET", v3("/user/{userId}/account_data/{type}"), self.get_account_data, rate_limit="default"),
            Endpoint("PUT", room, self.set_account_data_per_room, rate_limit="default"),
            Endpoint("GET", room, self.get_account_data_per_room, rate_limit="default"),
        ]
