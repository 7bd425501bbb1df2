"""The federation listener's aiohttp application: /_matrix/federation/* and /_matrix/key/*.

Built by the composition root (homeserver/server.py). Only unauthenticated endpoints
exist so far; X-Matrix request authentication arrives with the first endpoint that needs it.
"""

from __future__ import annotations

from aiohttp import web
from signedjson.types import SigningKey

from client_api.registrar import matrix_error_middleware
from federation.keys import KeyServer
from federation.version import get_server_version
from homeserver.clock import Clock


def build_federation_app(server_name: str, signing_key: SigningKey, clock: Clock,
                         max_body_bytes: int) -> web.Application:
    # The error middleware gives unknown paths and methods the Matrix error format
    # (404/405 M_UNRECOGNIZED), as the spec asks of every /_matrix endpoint.
    app = web.Application(middlewares=[matrix_error_middleware],
                          client_max_size=max_body_bytes + 1024)
    keys = KeyServer(server_name, signing_key, clock)
    app.router.add_get("/_matrix/key/v2/server", keys.get_server_keys)
    app.router.add_get("/_matrix/federation/v1/version", get_server_version)
    return app
