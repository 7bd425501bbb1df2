"""Server discovery and capability negotiation.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientversions,
#server-discovery and #capabilities-negotiation.
"""

from __future__ import annotations

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from homeserver.config import Config
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS

# Spec versions whose client-server features we implement. A version is added here only
# once every endpoint it introduced is served (clients switch behaviour on this list).
SUPPORTED_VERSIONS = ["r0.6.1", "v1.1", "v1.2", "v1.3"]
# Unstable features (MSCs) we serve: clients look for these before using their endpoints.
UNSTABLE_FEATURES = {
    "org.matrix.msc3814": True,  # dehydrated devices (client_api/dehydrated_devices.py)
}


class Discovery:
    def __init__(self, config: Config):
        self._config = config

    async def get_versions(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/versions"""
        return {"versions": SUPPORTED_VERSIONS, "unstable_features": dict(UNSTABLE_FEATURES)}

    async def get_wellknown_client(self, request: ClientRequest) -> JsonDict:
        """GET /.well-known/matrix/client"""
        return {"m.homeserver": {"base_url": self._config.public_baseurl.rstrip("/")}}

    async def get_wellknown_server(self, request: ClientRequest) -> JsonDict:
        """GET /.well-known/matrix/server — delegates federation to our federation port."""
        listener = self._config.federation_listener
        port = listener.port if listener else 8448
        host = self._config.server_name.rsplit(":", 1)[0] if not self._config.server_name.endswith("]") else self._config.server_name
        return {"m.server": f"{host}:{port}"}

    async def get_capabilities(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/capabilities"""
        return {"capabilities": {
            "m.change_password": {"enabled": True},
            "m.room_versions": {
                "default": DEFAULT_ROOM_VERSION.identifier,
                "available": {v: "stable" for v in KNOWN_ROOM_VERSIONS},
            },
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": False},
        }}

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", ("/versions",), self.get_versions, auth=Auth.NONE),
            Endpoint("GET", v3("/capabilities"), self.get_capabilities, auth=Auth.GUEST_OK),
        ]

    def wellknown_endpoints(self) -> list[Endpoint]:
        """Served at the root (prefix "/.well-known/matrix")."""
        eps = [Endpoint("GET", ("/client",), self.get_wellknown_client, auth=Auth.NONE)]
        if self._config.serve_server_wellknown:
            eps.append(Endpoint("GET", ("/server",), self.get_wellknown_server, auth=Auth.NONE))
        return eps
