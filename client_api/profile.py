"""User profiles.

Spec: https://spec.matrix.org/v1.19/client-server-api/#profiles
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from homeserver.accounts.profiles import Profiles
from homeserver.errors import MissingParam
from homeserver.types import UserID


class Profile:
    def __init__(self, profiles: Profiles):
        self._profiles = profiles

    def _user_id(self, request: ClientRequest) -> str:
        user_id = request.path_params["userId"]
        UserID.parse(user_id)
        return user_id

    async def get_user_profile(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/profile/{userId}"""
        return await self._profiles.get_profile(self._user_id(request))

    async def get_profile_field(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/profile/{userId}/{keyName}"""
        key = request.path_params["keyName"]
        return {key: await self._profiles.get_field(self._user_id(request), key)}

    async def set_profile_field(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/profile/{userId}/{keyName}"""
        key = request.path_params["keyName"]
        if key not in request.body:
            raise MissingParam(f"Missing '{key}'")
        await self._profiles.set_field(request.user, self._user_id(request), key, request.body[key])
        return {}

    async def delete_profile_field(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/v3/profile/{userId}/{keyName}"""
        await self._profiles.delete_field(request.user, self._user_id(request),
                                          request.path_params["keyName"])
        return {}

    def endpoints(self) -> list[Endpoint]:
        field = v3("/profile/{userId}/{keyName}")
        return [
            Endpoint("GET", v3("/profile/{userId}"), self.get_user_profile, auth=Auth.OPTIONAL,
                     rate_limit="default"),
            Endpoint("GET", field, self.get_profile_field, auth=Auth.OPTIONAL, rate_limit="default"),
            Endpoint("PUT", field, self.set_profile_field, auth=Auth.GUEST_OK, rate_limit="default"),
            Endpoint("DELETE", field, self.delete_profile_field, auth=Auth.GUEST_OK,
                     rate_limit="default"),
        ]
