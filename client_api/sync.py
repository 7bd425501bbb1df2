"""Syncing.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync
"""

from __future__ import annotations

from collections.abc import Mapping

from client_api.endpoint import Auth, ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import query_bool, query_int
from homeserver.accounts.requester import Requester
from homeserver.errors import InvalidParam
from homeserver.sync.filter_service import FilterService
from homeserver.sync.sync_result import ONLINE, SET_PRESENCE_VALUES, SyncRequest
from homeserver.sync.sync_service import SyncService
from homeserver.sync.tokens import SyncToken

# Clients ask for 30 s; a longer wait only ties up a connection behind proxies that
# time out idle requests anyway.
MAX_TIMEOUT_MS = 5 * 60_000


async def parse_sync_params(query: Mapping[str, str], requester: Requester,
                            filters: FilterService, *, timeout_ms: int | None = None) -> SyncRequest:
    """The query string of /sync (also the WebSocket stream's options) as a request.
    `timeout_ms` overrides the `timeout` parameter."""
    since_raw = query.get("since")
    since = SyncToken.parse(since_raw) if since_raw else None
    set_presence = query.get("set_presence", ONLINE)
    if set_presence not in SET_PRESENCE_VALUES:
        raise InvalidParam(f"'set_presence' must be one of {', '.join(SET_PRESENCE_VALUES)}")
    if timeout_ms is None:
        timeout_ms = query_int(query, "timeout", 0, minimum=0, maximum=MAX_TIMEOUT_MS) or 0
    return SyncRequest(
        user_id=requester.user_id,
        device_id=requester.device_id,
        filter=await filters.resolve_sync_param(requester.user_id, query.get("filter")),
        since=since,
        full_state=query_bool(query, "full_state"),
        timeout_ms=timeout_ms,
        set_presence=set_presence,
        use_state_after=query_bool(query, "use_state_after"),
    )


class Sync:
    def __init__(self, sync: SyncService, filters: FilterService):
        self._sync = sync
        self._filters = filters

    async def sync(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/sync"""
        params = await parse_sync_params(request.query, request.user, self._filters)
        return (await self._sync.sync(params)).to_json()

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", v3("/sync"), self.sync, auth=Auth.GUEST_OK)]
