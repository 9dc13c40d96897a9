"""`persona get`, `list`, `delete` and `delete-user`: a user's memories one by one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from persona_server.cli import output
from persona_server.cli.connect import MEMORY_TYPES, open_client
from persona_server.cli.errors import UsageError


def register(commands: Any, client_parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser("get", parents=[client_parent], help="one memory by id")
    p.add_argument("--id", required=True, metavar="ID", help="the memory id")
    p.set_defaults(handler=run_get)

    p = commands.add_parser("list", parents=[client_parent], help="a user's memories, by page")
    p.add_argument("--page-size", type=int, default=0, metavar="N", help="(server: 50)")
    p.add_argument("--page-token", default="", metavar="T", help="the page after a previous one")
    p.add_argument("--all", action="store_true", help="walk every page")
    p.add_argument(
        "--type",
        dest="types",
        action="extend",
        nargs="+",
        default=[],
        choices=MEMORY_TYPES,
        metavar="TYPE",
        help=f"only these types: {', '.join(MEMORY_TYPES)}",
    )
    p.add_argument("--invalidated", action="store_true", help="include invalidated facts")
    p.set_defaults(handler=run_list)

    p = commands.add_parser(
        "delete",
        parents=[client_parent],
        help="delete one memory (and what was derived only from it)",
    )
    p.add_argument("--id", required=True, metavar="ID", help="the memory id")
    p.set_defaults(handler=run_delete)

    p = commands.add_parser(
        "delete-user",
        parents=[client_parent],
        help="delete everything about a user",
        description="Delete everything Persona holds about a user. Asks for confirmation on a "
        "terminal; scripts must pass --yes.",
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=run_delete_user)


def run_get(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        memory = client.get_memory(args.user, args.id).memory
    if args.json:
        print(output.dumps({"memory": output.memory_json(memory)}))
    else:
        print(output.memory_text(memory))
    return 0


def run_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        if args.all:
            memories = list(
                client.iter_memories(
                    args.user,
                    page_size=args.page_size,
                    types=args.types,
                    include_invalidated=args.invalidated,
                )
            )
            next_token = ""
        else:
            page = client.list_memories(
                args.user,
                page_size=args.page_size,
                page_token=args.page_token,
                types=args.types,
                include_invalidated=args.invalidated,
            )
            memories, next_token = list(page.memories), page.next_page_token
    if args.json:
        print(output.dumps(output.list_json(memories, next_token)))
    else:
        print(output.list_text(memories, next_token))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        deleted = list(client.delete_memory(args.user, args.id).deleted_ids)
    if args.json:
        print(output.dumps({"deleted_ids": deleted}))
    else:
        derived = len(deleted) - 1
        more = f" and {derived} memor{'y' if derived == 1 else 'ies'} derived only from it"
        print(f"deleted {args.id}{more if derived > 0 else ''}")
    return 0


def run_delete_user(args: argparse.Namespace) -> int:
    if not args.yes:
        # Irreversible: a person at a terminal confirms; a script must say --yes explicitly
        # rather than hang on a prompt nobody will answer.
        if not sys.stdin.isatty():
            raise UsageError("delete-user deletes everything about the user; pass --yes to confirm")
        answer = input(f"Delete everything about user {args.user!r}? This cannot be undone [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted", file=sys.stderr)
            return 1
    with open_client(args) as client:
        count = client.delete_user(args.user).deleted_memories
    if args.json:
        print(output.dumps({"user_id": args.user, "deleted_memories": count}))
    else:
        print(f"deleted user {args.user}: {count} memor{'y' if count == 1 else 'ies'}")
    return 0
