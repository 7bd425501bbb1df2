"""Pushers: GET /pushers and POST /pushers/set.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3pushers and
#post_matrixclientv3pushersset . `http` pushers and `webpush` pushers (MSC4174) are
accepted: nothing here sends email. A gateway URL or web push endpoint naming a private or loopback address is refused unless the operator
allows it (ARCHITECTURE.md, "Security defaults"); names are checked again when delivering.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from homeserver.clock import Clock
from homeserver.errors import BadJson, InvalidParam, MissingParam
from homeserver.push.webpush import AUTH_SECRET_BYTES, b64url_decode, p256_public_key
from homeserver.storage.database import Database
from homeserver.storage.pushers import PusherRow, PusherStore

JsonDict = dict[str, Any]
NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_APP_ID_CHARS = 64
MAX_PUSHKEY_BYTES = 512
_REQUIRED_TO_SET = ("app_display_name", "device_display_name", "lang")


def _string(body: JsonDict, key: str) -> str:
    if key not in body or body[key] is None:
        raise MissingParam(f"Missing '{key}'")
    value = body[key]
    if not isinstance(value, str):
        raise BadJson(f"'{key}' must be a string")
    return value


def is_private_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not address.is_global


def check_gateway_url(url: Any, *, allow_private: bool) -> str:
    if url is None:
        raise MissingParam("'data.url' is required for http pushers")
    if not isinstance(url, str):
        raise BadJson("'data.url' must be a string")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidParam("'data.url' must be an absolute http(s) URL")
    if parts.path != NOTIFY_PATH:
        raise InvalidParam(f"'data.url' must have the path {NOTIFY_PATH}")
    if not allow_private and is_private_host(parts.hostname):
        raise InvalidParam("'data.url' points at a private address")
    return url


def check_webpush(pushkey: str, data: JsonDict, *, allow_private: bool) -> None:
    """MSC4174: pushkey is the subscription's P-256 key, data.endpoint the push service
    URL and data.auth its 16-byte auth secret. Checked here so a bad subscription fails
    at /pushers/set rather than silently at every delivery."""
    endpoint = data.get("endpoint")
    if endpoint is None:
        raise MissingParam("'data.endpoint' is required for webpush pushers")
    if not isinstance(endpoint, str):
        raise BadJson("'data.endpoint' must be a string")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidParam("'data.endpoint' must be an absolute https URL")
    private = is_private_host(parts.hostname)
    if private and not allow_private:
        raise InvalidParam("'data.endpoint' points at a private address")
    # Browser push services are all https; plain http only for an allowed local one.
    if parts.scheme == "http" and not private:
        raise InvalidParam("'data.endpoint' must be an https URL")
    try:
        p256_public_key(b64url_decode(pushkey))
    except ValueError:
        raise InvalidParam("'pushkey' must be a base64url P-256 public key") from None
    auth = data.get("auth")
    if auth is None:
        raise MissingParam("'data.auth' is required for webpush pushers")
    try:
        valid_auth = isinstance(auth, str) and len(b64url_decode(auth)) == AUTH_SECRET_BYTES
    except ValueError:
        valid_auth = False
    if not valid_auth:
        raise InvalidParam(f"'data.auth' must be {AUTH_SECRET_BYTES} bytes in base64url")


def pusher_json(p: PusherRow) -> JsonDict:
    out: JsonDict = {"pushkey": p.pushkey, "kind": p.kind, "app_id": p.app_id,
                     "app_display_name": p.app_display_name,
                     "device_display_name": p.device_display_name, "lang": p.lang,
                     "data": p.data}
    if p.profile_tag is not None:
        out["profile_tag"] = p.profile_tag
    return out


class Pushers:
    def __init__(self, db: Database, store: PusherStore, clock: Clock, *,
                 allow_private_addresses: bool = False):
        self._db = db
        self._store = store
        self._clock = clock
        self._allow_private = allow_private_addresses

    async def get_pushers(self, user_id: str) -> JsonDict:
        """GET /pushers"""
        return {"pushers": [pusher_json(p) for p in await self._store.for_user(self._db, user_id)]}

    async def set_pusher(self, user_id: str, device_id: str | None, body: JsonDict) -> None:
        """POST /pushers/set: create, replace (same app_id and pushkey), or delete with
        `kind: null`."""
        app_id = _string(body, "app_id")
        pushkey = _string(body, "pushkey")
        if len(app_id) > MAX_APP_ID_CHARS:
            raise InvalidParam(f"'app_id' is longer than {MAX_APP_ID_CHARS} characters")
        if len(pushkey.encode()) > MAX_PUSHKEY_BYTES:
            raise InvalidParam(f"'pushkey' is longer than {MAX_PUSHKEY_BYTES} bytes")
        if "kind" not in body:
            raise MissingParam("Missing 'kind'")
        kind = body["kind"]
        if kind is None:
            async with self._db.transaction() as conn:
                await self._store.delete(conn, user_id, app_id, pushkey)
            return
        if not isinstance(kind, str):
            raise BadJson("'kind' must be a string or null")
        if kind not in ("http", "webpush"):
            raise InvalidParam(f"Unsupported pusher kind {kind!r}")
        names = {key: _string(body, key) for key in _REQUIRED_TO_SET}
        profile_tag = body.get("profile_tag")
        if profile_tag is not None and not isinstance(profile_tag, str):
            raise BadJson("'profile_tag' must be a string")
        data = body.get("data")
        if data is None:
            raise MissingParam("Missing 'data'")
        if not isinstance(data, dict):
            raise BadJson("'data' must be an object")
        if kind == "webpush":
            check_webpush(pushkey, data, allow_private=self._allow_private)
        else:
            check_gateway_url(data.get("url"), allow_private=self._allow_private)
        if "format" in data and data["format"] != "event_id_only":
            raise InvalidParam("'data.format' must be 'event_id_only' when given")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise BadJson("'append' must be a boolean")
        row = PusherRow(user_id, app_id, pushkey, kind, names["app_display_name"],
                        names["device_display_name"], profile_tag, names["lang"], data,
                        device_id, self._clock.time_ms())
        async with self._db.transaction() as conn:
            if not append:
                await self._store.delete_for_other_users(conn, app_id, pushkey, user_id)
            await self._store.upsert(conn, row)
