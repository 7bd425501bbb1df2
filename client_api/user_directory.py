"""User directory search.

Spec: https://spec.matrix.org/v1.19/client-server-api/#user-directory .
"""

from __future__ import annotations

from client_api.endpoint import ClientRequest, Endpoint, JsonDict, v3
from client_api.validation import optional, require
from homeserver.accounts.user_directory import DEFAULT_LIMIT, UserDirectory
from homeserver.errors import InvalidParam


class UserDirectoryApi:
    def __init__(self, directory: UserDirectory):
        self._directory = directory

    async def search_user_directory(self, request: ClientRequest) -> JsonDict:
        """POST /_matrix/client/v3/user_directory/search"""
        term = require(request.body, "search_term", str)
        limit = optional(request.body, "limit", int, DEFAULT_LIMIT)
        if limit < 1:
            raise InvalidParam("'limit' must be at least 1")
        return await self._directory.search(request.user.user_id, term, limit)

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("POST", v3("/user_directory/search"), self.search_user_directory,
                         rate_limit="default")]
