"""Random room histories: Hypothesis draws a script of actions; `play` grows the DAG.

An action names who does what on which branch: `parent` picks the event to build on
(counted back from the newest), `merge` optionally picks a second parent (a merge, so
state resolution), and `variant` picks the details (which level, which join rule...).
Actions that the auth rules reject are dropped by both implementations alike.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
from hypothesis import strategies as st
from signedjson.key import decode_signing_key_base64
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from tests.differential.room_sim import CREATOR, USERS, Node, RoomSim, StateMap

PL_KEY = ("m.room.power_levels", "")
LEVELS = [0, 10, 50, 75, 100, 101]
NAMED_LEVELS = [
    "ban",
    "kick",
    "invite",
    "redact",
    "state_default",
    "events_default",
    "users_default",
]
JOIN_RULES = ["public", "invite", "knock", "restricted", "knock_restricted", "private"]
KINDS = [
    "join",
    "leave",
    "invite",
    "kick",
    "ban",
    "unban",
    "knock",
    "power_levels",
    "power_levels",
    "topic",
    "name",
    "join_rules",
    "message",
    "redaction",
    "history_visibility",
    "aliases",
    "custom_state",
    "third_party_invite",
    "bad_membership",
    "second_create",
    "third_party_invite_redeem",
    "third_party_invite_redeem",
    "weird_power_levels",
]
# Odd power-level values: valid stringy forms (rooms/v1#mroompower_levels-events-accept-
# values-as-strings), invalid ones, and v1–5 floats.
WEIRD_LEVELS: list[Any] = [
    " 50 ",
    "+50",
    "-5",
    "0100",
    "\t75\n",
    "1_0",
    "\u0665\u0660",
    "5.0",
    "1e2",
    "abc",
    "",
    "+-5",
    True,
    None,
    [50],
    {"a": 1},
    2**53 - 1,
    -(2**53) + 1,
]
FLOAT_LEVELS: list[Any] = [50.0, 50.7, -0.5, 1e3, 99.999]
# An identity server's key for third-party invites, and a key that is not it.
IDENTITY_KEY = decode_signing_key_base64("ed25519", "0", encode_base64(bytes(range(32))))
OTHER_KEY = decode_signing_key_base64("ed25519", "1", encode_base64(bytes(range(1, 33))))
IDENTITY_PUBLIC = encode_base64(IDENTITY_KEY.verify_key.encode())


@attrs.frozen
class Action:
    kind: str
    sender: int
    target: int
    parent: int
    merge: int | None
    merge2: int | None
    variant: int
    ts_step: int


@attrs.frozen
class Script:
    room_version: str
    bob_level: int
    additional_creator: bool
    federate: bool
    initial_join_rule: str
    actions: tuple[Action, ...]


def actions(merge_probability: float) -> st.SearchStrategy[Action]:
    merge = st.integers(0, 1_000).map(lambda n: n if n < merge_probability * 1000 else None)
    return st.builds(
        Action,
        kind=st.sampled_from(KINDS),
        sender=st.integers(0, len(USERS) - 1),
        target=st.integers(0, len(USERS) - 1),
        parent=st.integers(0, 7) | st.integers(0, 60),
        merge=merge.map(lambda n: None if n is None else n % 8),
        merge2=merge.map(lambda n: None if n is None or n % 3 else n % 30),
        variant=st.integers(0, 59),
        ts_step=st.sampled_from([1, 1, 1, 0, 1000]),
    )


def scripts(
    room_versions: list[str], max_actions: int, merge_probability: float
) -> st.SearchStrategy[Script]:
    return st.builds(
        Script,
        room_version=st.sampled_from(room_versions),
        bob_level=st.sampled_from([0, 50, 100]),
        additional_creator=st.booleans(),
        federate=st.sampled_from([True] * 5 + [False]),
        initial_join_rule=st.sampled_from(["public", "invite"]),
        actions=st.lists(
            actions(merge_probability), min_size=max_actions // 2, max_size=max_actions
        ).map(tuple),
    )


def play(sim: RoomSim, script: Script) -> None:
    bootstrap(sim, script)
    for action in script.actions:
        parents = [_pick(sim.nodes, action.parent)]
        if action.merge is not None:
            parents.append(_pick(sim.nodes, action.merge))
            if action.merge2 is not None:
                parents.append(_pick(sim.nodes, action.merge2))
        sim.add(parents, functools.partial(_fields_for, sim, action))
    final = sim.leaves()
    if len(final) > 1:
        sim.resolve([n.state_after for n in final[-4:]])


def _fixed(fields: dict[str, Any], _before: StateMap) -> dict[str, Any]:
    return fields


def _fields_for(sim: RoomSim, action: Action, before: StateMap) -> dict[str, Any] | None:
    return make_fields(sim, action, before)


def _pick(nodes: list[Node], back: int) -> Node:
    return nodes[-1 - back % len(nodes)]


def bootstrap(sim: RoomSim, script: Script) -> None:
    v = int(sim.rv.identifier)
    create_content: dict[str, Any] = {"room_version": sim.rv.identifier}
    if v <= 10:
        create_content["creator"] = CREATOR
    creators = {CREATOR}
    if v >= 12 and script.additional_creator:
        create_content["additional_creators"] = [USERS[2]]
        creators.add(USERS[2])
    if not script.federate:
        create_content["m.federate"] = False

    def member(user: str) -> Any:
        return lambda _b: dict(
            type="m.room.member", sender=user, state_key=user, content={"membership": "join"}
        )

    node = sim.add(
        [],
        lambda _b: dict(type="m.room.create", sender=CREATOR, state_key="", content=create_content),
    )
    assert node is not None, "bootstrap create rejected"
    node = sim.add([node], member(CREATOR))
    assert node is not None, "creator join rejected"
    users = {USERS[1]: script.bob_level, USERS[3]: 50}
    if v < 12:
        users[CREATOR] = 100
    pl = {"users": users, "users_default": 0, "events": {"m.room.name": 50}}
    node = sim.add(
        [node],
        lambda _b: dict(type="m.room.power_levels", sender=CREATOR, state_key="", content=pl),
    )
    assert node is not None, "bootstrap power levels rejected"
    rule = script.initial_join_rule
    node = sim.add(
        [node],
        lambda _b: dict(
            type="m.room.join_rules", sender=CREATOR, state_key="", content={"join_rule": rule}
        ),
    )
    assert node is not None
    for user in USERS[1:4]:
        if rule == "invite":
            invite = dict(
                type="m.room.member",
                sender=CREATOR,
                state_key=user,
                content={"membership": "invite"},
            )
            invited = sim.add([node], functools.partial(_fixed, invite))
            node = invited or node
        node = sim.add([node], member(user)) or node


def make_fields(sim: RoomSim, a: Action, before: StateMap) -> dict[str, Any] | None:
    sender, target = USERS[a.sender], USERS[a.target]
    common: dict[str, Any] = {"sender": sender, "ts_step": a.ts_step}

    def member(state_key: str, membership: str, **extra: Any) -> dict[str, Any]:
        return dict(
            common,
            type="m.room.member",
            state_key=state_key,
            content={"membership": membership, **extra},
        )

    kind = a.kind
    if kind == "join":
        if sim.rv.restricted_join_rule and a.variant % 4 == 3:
            authoriser = USERS[a.target]
            signers = [authoriser.partition(":")[2]] if a.variant % 8 == 3 else []
            fields = member(sender, "join", join_authorised_via_users_server=authoriser)
            return dict(fields, extra_signers=signers)
        return member(sender, "join")
    if kind == "leave":
        return member(sender, "leave")
    if kind == "invite":
        return member(target, "invite")
    if kind in ("kick", "unban"):
        return member(target, "leave")
    if kind == "ban":
        return member(target, "ban")
    if kind == "knock":
        return member(sender, "knock")
    if kind == "bad_membership":
        return member(target, ["foo", "JOIN", ""][a.variant % 3])
    if kind == "power_levels":
        return dict(
            common,
            type="m.room.power_levels",
            state_key="",
            content=_new_power_levels(sim, a, before),
        )
    if kind == "topic":
        return dict(
            common, type="m.room.topic", state_key="", content={"topic": f"topic {a.variant}"}
        )
    if kind == "name":
        return dict(common, type="m.room.name", state_key="", content={"name": f"name {a.variant}"})
    if kind == "history_visibility":
        vis = ["shared", "joined", "invited", "world_readable"][a.variant % 4]
        return dict(
            common,
            type="m.room.history_visibility",
            state_key="",
            content={"history_visibility": vis},
        )
    if kind == "join_rules":
        rule = JOIN_RULES[a.variant % len(JOIN_RULES)]
        content: dict[str, Any] = {"join_rule": rule}
        if "restricted" in rule:
            content["allow"] = [{"type": "m.room_membership", "room_id": "!other:b.example"}]
        return dict(common, type="m.room.join_rules", state_key="", content=content)
    if kind == "message":
        return dict(
            common, type="m.room.message", content={"msgtype": "m.text", "body": str(a.variant)}
        )
    if kind == "redaction":
        return _redaction(sim, a, common)
    if kind == "aliases":
        domain = [sender.partition(":")[2], "z.example"][a.variant % 2]
        return dict(
            common, type="m.room.aliases", state_key=domain, content={"aliases": [f"#r:{domain}"]}
        )
    if kind == "custom_state":
        key = [target, "", "x"][a.variant % 3]
        return dict(common, type="org.example.state", state_key=key, content={"v": a.variant})
    if kind == "third_party_invite":
        return dict(
            common,
            type="m.room.third_party_invite",
            state_key=f"token{a.variant % 3}",
            content=_third_party_invite_content(a.variant),
        )
    if kind == "third_party_invite_redeem":
        return _redeem_third_party_invite(a, common)
    if kind == "weird_power_levels":
        return dict(
            common,
            type="m.room.power_levels",
            state_key="",
            content=_weird_power_levels(sim, a, before),
        )
    if kind == "second_create":
        return dict(
            common,
            type="m.room.create",
            state_key="",
            content={"room_version": sim.rv.identifier, "creator": sender},
        )
    raise AssertionError(f"unknown action kind {kind}")


def _new_power_levels(sim: RoomSim, a: Action, before: StateMap) -> dict[str, Any]:
    content = sim.content_in(before, PL_KEY)
    level: Any = LEVELS[a.variant % len(LEVELS)]
    if int(sim.rv.identifier) < 10 and a.variant >= 50:
        level = str(level)  # stringy levels are valid before room v10
    choice = (a.variant // len(LEVELS)) % 4
    if choice == 0:
        users = content.setdefault("users", {})
        users[USERS[a.target]] = level
    elif choice == 1:
        content[NAMED_LEVELS[a.target % len(NAMED_LEVELS)] if a.target < 5 else "ban"] = level
        content[NAMED_LEVELS[(a.target + a.variant) % len(NAMED_LEVELS)]] = level
    elif choice == 2:
        events = content.setdefault("events", {})
        events[
            ["m.room.topic", "m.room.name", "m.room.power_levels", "m.room.message"][a.target % 4]
        ] = level
    else:
        content.get("users", {}).pop(USERS[a.target], None)
    return content


def _redaction(sim: RoomSim, a: Action, common: dict[str, Any]) -> dict[str, Any]:
    ids = list(sim.events)
    redacts = ids[-1 - (a.variant % len(ids))] if a.variant % 7 else "$unknown:c.example"
    if sim.rv.redacts_in_content:
        return dict(common, type="m.room.redaction", content={"redacts": redacts})
    return dict(common, type="m.room.redaction", content={}, top_level={"redacts": redacts})


def _weird_power_levels(sim: RoomSim, a: Action, before: StateMap) -> dict[str, Any]:
    content = sim.content_in(before, PL_KEY)
    values = WEIRD_LEVELS + (FLOAT_LEVELS if not sim.rv.strict_canonicaljson else [])
    value = values[a.variant % len(values)]
    where = (a.variant // len(values) + a.target) % 4
    if where == 0:
        content.setdefault("users", {})[USERS[a.target]] = value
    elif where == 1:
        content[NAMED_LEVELS[a.target % len(NAMED_LEVELS)]] = value
    elif where == 2:
        content.setdefault("events", {})[["m.room.topic", "m.room.name"][a.target % 2]] = value
    else:
        content.setdefault("notifications", {})["room"] = value
    return content


def _third_party_invite_content(variant: int) -> dict[str, Any]:
    shape = variant % 4
    content: dict[str, Any] = {"display_name": "x", "key_validity_url": "https://id.example/v"}
    if shape in (0, 2):
        content["public_key"] = IDENTITY_PUBLIC
    if shape in (1, 2):
        content["public_keys"] = [
            {"public_key": IDENTITY_PUBLIC, "key_validity_url": "https://id.example/v"}
        ]
    if shape == 3:
        content["public_key"] = "not base64!"
    return content


def _redeem_third_party_invite(a: Action, common: dict[str, Any]) -> dict[str, Any]:
    target = USERS[a.target]
    mxid = target if a.variant % 5 else USERS[(a.target + 1) % len(USERS)]
    key = IDENTITY_KEY if a.variant % 7 else OTHER_KEY
    signed = sign_json({"mxid": mxid, "token": f"token{a.variant % 3}"}, "id.example", key)
    if a.variant % 11 == 0:
        del signed["token"]
    return dict(
        common,
        type="m.room.member",
        state_key=target,
        content={
            "membership": "invite",
            "third_party_invite": {"display_name": "x", "signed": signed},
        },
    )
