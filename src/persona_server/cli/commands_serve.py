"""`persona serve`: run the server in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from persona_server.cli.errors import UsageError


def register(commands: Any) -> None:
    p = commands.add_parser(
        "serve",
        help="run the Persona server",
        description="Run the Persona gRPC server. Settings come from PERSONA_* environment "
        "variables and .env; these flags override them.",
    )
    p.add_argument(
        "--listen", metavar="HOST:PORT", help="address to bind (default 127.0.0.1:50051)"
    )
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="where the embedded store lives")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: client subcommands must not pay for loading the server
    # (models, store drivers) just to make one call.
    from persona_server.config import Settings

    overrides: dict[str, Any] = {}
    if args.listen is not None:
        overrides["listen"] = args.listen
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    try:
        settings = Settings(**overrides)  # init values win over the environment and .env
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise UsageError(f"INVALID_ARGUMENT: {problems}") from None

    from persona_server.app import serve
    from persona_server.transport.keys import ApiKeyConfigError

    try:
        serve(settings)
    except ApiKeyConfigError as exc:
        # A bad key file (a malformed line, a limit or retention_days that is not a
        # non-negative number) is the operator's input: say where, without a traceback.
        raise UsageError(f"INVALID_ARGUMENT: {exc}") from None
    return 0
