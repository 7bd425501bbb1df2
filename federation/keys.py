"""Publishing this server's signing keys.

Spec: https://spec.matrix.org/v1.19/server-server-api/#get_matrixkeyv2server
Other servers fetch this (directly or through a notary) to check our event and request
signatures, and cache it until `valid_until_ts`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from signedjson.types import SigningKey

from client_api.registrar import json_response
from homeserver.clock import Clock
from homeserver.events.signing import encode_verify_key_base64, get_verify_key, key_id, sign_json

# How long others may cache our keys. Room versions 5+ reject events signed after a key's
# valid_until_ts, so this must outlast the gap between a key rotation and its publication;
# one day is short enough that a rotated key stops being trusted soon after.
KEY_VALIDITY_MS = 24 * 60 * 60 * 1000


class KeyServer:
    def __init__(self, server_name: str, signing_key: SigningKey, clock: Clock):
        self._server_name = server_name
        self._signing_key = signing_key
        self._clock = clock
        verify_key = get_verify_key(signing_key)
        self._verify_keys = {key_id(verify_key): {"key": encode_verify_key_base64(verify_key)}}

    def server_keys(self) -> dict[str, Any]:
        """The signed key document, valid from now for KEY_VALIDITY_MS."""
        document = {
            "server_name": self._server_name,
            "valid_until_ts": self._clock.time_ms() + KEY_VALIDITY_MS,
            "verify_keys": self._verify_keys,
            # Key rotation is not supported yet, so no key has been retired.
            "old_verify_keys": {},
        }
        return sign_json(document, self._server_name, self._signing_key)

    async def get_server_keys(self, request: web.Request) -> web.Response:
        """GET /_matrix/key/v2/server"""
        return json_response(self.server_keys())
