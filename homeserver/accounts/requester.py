"""Who is making a request: resolved from an access token by the token service."""

from __future__ import annotations

import attrs


@attrs.frozen
class Requester:
    user_id: str
    device_id: str | None
    # Row ID of the access token used, so /logout can revoke exactly it.
    token_id: int
    is_guest: bool = False
    is_admin: bool = False
