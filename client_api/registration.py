"""Account registration.

Spec: https://spec.matrix.org/v1.19/client-server-api/#account-registration
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict
from client_api.validation import optional
from homeserver.accounts.registration import RegisterResult, RegistrationService
from homeserver.accounts.uiaa import InteractiveAuth
from homeserver.errors import Forbidden, MissingParam


class Registration:
    def __init__(self, registration: RegistrationService, uiaa: InteractiveAuth, *,
                 server_name: str, policy: str):
        self._registration = registration
        self._uiaa = uiaa
        self._server_name = server_name
        self._policy = policy

    async def register(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/register"""
        body = request.body
        result = await self._registration.register(
            kind=request.query.get("kind", "user"),
            username=optional(body, "username", str),
            password=optional(body, "password", str),
            auth=optional(body, "auth", dict),
            device_id=optional(body, "device_id", str),
            initial_device_display_name=optional(body, "initial_device_display_name", str),
            inhibit_login=optional(body, "inhibit_login", bool, False),
            refresh_token=optional(body, "refresh_token", bool, False),
            client_ip=request.client_ip,
        )
        return register_response(result, self._server_name)

    async def check_username_availability(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/register/available"""
        if self._policy == "disabled":
            raise Forbidden("Registration is disabled")
        username = request.query.get("username")
        if username is None:
            raise MissingParam("Missing 'username'")
        await self._registration.check_available(username)
        return {"available": True}

    async def registration_token_validity(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v1/register/m.login.registration_token/validity"""
        if self._policy != "token":
            raise Forbidden("Registration tokens are not in use on this homeserver")
        token = request.query.get("token")
        if token is None:
            raise MissingParam("Missing 'token'")
        return {"valid": await self._uiaa.registration_token_valid(token)}

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", ("/v3/register", "/r0/register"), self.register,
                     auth=Auth.NONE, rate_limit="register"),
            Endpoint("GET", ("/v3/register/available", "/r0/register/available"),
                     self.check_username_availability, auth=Auth.NONE,
                     rate_limit="register_available"),
            Endpoint("GET", ("/v1/register/m.login.registration_token/validity",),
                     self.registration_token_validity, auth=Auth.NONE,
                     rate_limit="register_available"),
        ]


def register_response(result: RegisterResult, server_name: str) -> JsonDict:
    body: JsonDict = {"user_id": result.user_id, "home_server": server_name}
    if result.access_token is not None:
        body["access_token"] = result.access_token
        body["device_id"] = result.device_id
    if result.refresh_token is not None:
        body["refresh_token"] = result.refresh_token
    if result.expires_in_ms is not None:
        body["expires_in_ms"] = result.expires_in_ms
    return body
