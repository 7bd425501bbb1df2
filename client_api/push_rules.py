"""Push rules.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules-api
"""

from __future__ import annotations

from client_api.endpoint import ClientRequest, Endpoint, JsonDict, v3
from homeserver.push.rules_service import PushRules


class PushRulesApi:
    def __init__(self, rules: PushRules):
        self._rules = rules

    async def get_push_rules(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/"""
        return await self._rules.get_all(request.user.user_id)

    async def get_push_rules_global(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/global/"""
        return (await self._rules.get_all(request.user.user_id))["global"]  # type: ignore[no-any-return]

    async def get_push_rule(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
        p = request.path_params
        return (await self._rules.get_rule(request.user.user_id, p["kind"], p["ruleId"])).to_json()

    async def set_push_rule(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
        p = request.path_params
        await self._rules.put_rule(request.user.user_id, p["kind"], p["ruleId"], request.body,
                                   before=request.query.get("before"),
                                   after=request.query.get("after"))
        return {}

    async def delete_push_rule(self, request: ClientRequest) -> JsonDict:
        """DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
        p = request.path_params
        await self._rules.delete_rule(request.user.user_id, p["kind"], p["ruleId"])
        return {}

    async def is_push_rule_enabled(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
        p = request.path_params
        rule = await self._rules.get_rule(request.user.user_id, p["kind"], p["ruleId"])
        return {"enabled": rule.enabled}

    async def set_push_rule_enabled(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
        p = request.path_params
        await self._rules.set_enabled(request.user.user_id, p["kind"], p["ruleId"],
                                      request.body.get("enabled"))
        return {}

    async def get_push_rule_actions(self, request: ClientRequest) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
        p = request.path_params
        rule = await self._rules.get_rule(request.user.user_id, p["kind"], p["ruleId"])
        return {"actions": rule.actions}

    async def set_push_rule_actions(self, request: ClientRequest) -> JsonDict:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
        p = request.path_params
        await self._rules.set_actions(request.user.user_id, p["kind"], p["ruleId"],
                                      request.body.get("actions"))
        return {}

    def endpoints(self) -> list[Endpoint]:
        rule = "/pushrules/global/{kind}/{ruleId}"
        return [
            Endpoint("GET", v3("/pushrules/") + v3("/pushrules"), self.get_push_rules),
            Endpoint("GET", v3("/pushrules/global/") + v3("/pushrules/global"),
                     self.get_push_rules_global),
            Endpoint("GET", v3(rule), self.get_push_rule),
            Endpoint("PUT", v3(rule), self.set_push_rule, rate_limit="default"),
            Endpoint("DELETE", v3(rule), self.delete_push_rule, rate_limit="default"),
            Endpoint("GET", v3(rule + "/enabled"), self.is_push_rule_enabled),
            Endpoint("PUT", v3(rule + "/enabled"), self.set_push_rule_enabled,
                     rate_limit="default"),
            Endpoint("GET", v3(rule + "/actions"), self.get_push_rule_actions),
            Endpoint("PUT", v3(rule + "/actions"), self.set_push_rule_actions,
                     rate_limit="default"),
        ]
