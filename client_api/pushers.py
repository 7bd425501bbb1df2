"""Pushers and the notifications list.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-notifications (pushers) and
#listing-notifications .
"""

from __future__ import annotations

from client_api.endpoint import ClientRequest, Endpoint, JsonDict, v3
from homeserver.push.counts import NotificationCounts
from homeserver.push.pushers import Pushers


class PushersApi:
    def __init__(self, pushers: Pushers, counts: NotificationCounts):
        self._pushers = pushers
        self._counts = counts

    async def get_pushers(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/pushers"""
        return await self._pushers.get_pushers(request.user.user_id)

    async def post_pusher(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/pushers/set"""
        await self._pushers.set_pusher(request.user.user_id, request.user.device_id, request.body)
        return {}

    async def get_notifications(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/notifications"""
        q = request.query
        return await self._counts.get_notifications(request.user.user_id, q.get("from"),
                                                    q.get("limit"), q.get("only"))

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", v3("/pushers"), self.get_pushers),
            Endpoint("POST", v3("/pushers/set"), self.post_pusher, rate_limit="default"),
            Endpoint("GET", v3("/notifications"), self.get_notifications),
        ]
