"""Spec: https://spec.matrix.org/v1.19/server-server-api/#get_matrixfederationv1version"""

from __future__ import annotations

from aiohttp import web

from client_api.registrar import json_response
from homeserver import __version__

SERVER_SOFTWARE = "DevNet"


async def get_server_version(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/version"""
    return json_response({"server": {"name": SERVER_SOFTWARE, "version": __version__}})
