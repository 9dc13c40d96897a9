"""The `persona` command: the server (`persona serve`) and a client for every RPC.

Options follow the subcommand: `persona recall --user u1 --query "where does she live?"`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from persona import PersonaError
from persona import __version__ as sdk_version
from persona_server.cli import (
    commands_graph,
    commands_ingest,
    commands_knowledge,
    commands_manage,
    commands_profile,
    commands_query,
    commands_serve,
)
from persona_server.cli.connect import client_options
from persona_server.cli.errors import EXIT_USAGE, UsageError, report

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persona",
        description="Persona: per-user memory over gRPC. Run a server, or talk to one.",
        epilog="Exit status: 0 ok, 1 the server refused or was unreachable, 2 bad usage or "
        "input (nothing sent). Run `persona COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"persona {sdk_version}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands_serve.register(commands)
    client_parent = client_options()
    commands_ingest.register(commands, client_parent)
    commands_query.register(commands, client_parent)
    commands_profile.register(commands, client_parent)
    commands_manage.register(commands, client_parent)
    commands_graph.register(commands, client_parent)
    commands_knowledge.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors exit 2 here, as argparse does
    try:
        code: int = args.handler(args)
        return code
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except PersonaError as exc:
        return report(exc, target=getattr(args, "target", None))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `persona stream --json | head -1`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not raise a second time, and exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
