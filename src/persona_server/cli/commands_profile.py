"""`persona profile`: who a user is now (GetProfile)."""

from __future__ import annotations

import argparse
from typing import Any

from persona.v1 import memory_pb2, profile_pb2
from persona_server.cli import output
from persona_server.cli.connect import open_client, timestamp_arg

_GROUPS = ("psyche", "goals", "entities", "episodes")


def register(commands: Any, client_parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "profile",
        parents=[client_parent],
        help="who the user is: strongest traits, goals, people and places, recent episodes",
    )
    p.add_argument("--max-items", type=int, default=0, metavar="N", help="per group (server: 10)")
    p.add_argument("--as-of", metavar="ISO8601", help="the profile as it stood at that time")
    p.add_argument(
        "--include-dormant", action="store_true", help="also show dormant (forgotten) memories"
    )
    p.set_defaults(handler=run_profile)


def run_profile(args: argparse.Namespace) -> int:
    as_of = timestamp_arg("as_of", args.as_of)
    with open_client(args) as client:
        response = client.get_profile(
            args.user,
            max_items=args.max_items,
            as_of=as_of,
            include_dormant=args.include_dormant,
        )
    print(output.dumps(profile_json(response)) if args.json else response.context_block)
    return 0


def _item(item: profile_pb2.ProfileItem) -> output.Json:
    out = output.memory_summary(item.memory)
    out["strength"] = round(item.memory.strength, 4)
    out["mention_count"] = item.memory.reinforcement.mention_count
    detail = item.memory.WhichOneof("detail")
    if detail == "goal":
        out["status"] = output.enum_name(
            memory_pb2.GoalStatus, "GOAL_STATUS_", item.memory.goal.status
        )
    if detail == "entity":
        out["name"] = item.memory.entity.name
        out["kind"] = output.enum_name(
            memory_pb2.EntityKind, "ENTITY_KIND_", item.memory.entity.kind
        )
        out["relation"] = item.relation
    return out


def profile_json(response: profile_pb2.GetProfileResponse) -> output.Json:
    out: output.Json = {g: [_item(i) for i in getattr(response, g)] for g in _GROUPS}
    counts = response.counts
    out["counts"] = {
        "episodes": counts.episodes,
        "psyche": counts.psyche,
        "goals": counts.goals,
        "active_goals": counts.active_goals,
        "entities": counts.entities,
        "facts": counts.facts,
    }
    out["as_of"] = output.timestamp(response, "as_of")
    out["context_block"] = response.context_block
    return out
