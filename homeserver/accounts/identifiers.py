"""Which user a login or UIAA password stage names: `identifier` or the legacy `user`.

Spec: https://spec.matrix.org/v1.19/client-server-api/#identifier-types
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.errors import BadJson, BadRequest, InvalidParam, MissingParam, Unauthorized
from homeserver.types import UserID


def requested_user_id(body: Mapping[str, Any], server_name: str) -> str:
    """The full user ID named by `body`, which must be a local user.

    Localparts are matched lowercased: registration only creates lowercase localparts,
    and people type their user name in whatever case."""
    identifier = body.get("identifier")
    if identifier is not None:
        if not isinstance(identifier, dict):
            raise BadJson("'identifier' must be an object")
        id_type = identifier.get("type")
        if not isinstance(id_type, str):
            raise MissingParam("Missing 'identifier.type'")
        if id_type != "m.id.user":
            raise BadRequest(f"Unsupported identifier type {id_type!r}")
        user = identifier.get("user")
        key = "identifier.user"
    else:
        user = body.get("user")
        key = "user"
    if user is None:
        raise MissingParam(f"Missing '{key}'")
    if not isinstance(user, str) or not user:
        raise BadJson(f"'{key}' must be a non-empty string")
    if user.startswith("@"):
        try:
            parsed = UserID.parse(user)
        except InvalidParam:
            raise Unauthorized("Invalid username or password") from None
        if parsed.server_name != server_name:
            raise Unauthorized("Invalid username or password")
        return f"@{parsed.localpart.lower()}:{server_name}"
    return f"@{user.lower()}:{server_name}"
