"""How the CLI reports failures: one format, and exit codes scripts can branch on.

Exit 1: the server (or the network) said no. Exit 2: the command itself was unusable — bad
flags, a file that does not parse — and nothing was sent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import grpc

from persona import PersonaError
from persona_server.cli.output import error_text

EXIT_SERVER = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem found before any request was sent; the message is printed as is."""


def report(
    error: PersonaError,
    *,
    target: str | None = None,
    relabel: Callable[[str], str] | None = None,
) -> int:
    """Print `STATUS: message` (+ violations, + a hint) to stderr; return the exit code.

    `relabel` rewrites a violation's field path for the reader, e.g. `items[3].text` into
    `line 17 (items[3].text)` when the items came from a file.
    """
    if relabel is not None:
        error.field_violations = [
            type(v)(relabel(v.field), v.description) for v in error.field_violations
        ]
    print(error_text(error), file=sys.stderr)
    hint = _hint(error, target)
    if hint:
        print(f"  ({hint})", file=sys.stderr)
    from_server = isinstance(error.__cause__, grpc.RpcError)
    return EXIT_SERVER if from_server else EXIT_USAGE


def _hint(error: PersonaError, target: str | None) -> str:
    # Only for failures of the transport itself (no ErrorInfo from a Persona server).
    if error.domain:
        if error.code == grpc.StatusCode.UNAUTHENTICATED:
            return "pass --api-key or set PERSONA_API_KEY"
        return ""
    if error.code == grpc.StatusCode.UNAVAILABLE and target:
        return f"is a Persona server running at {target}? start one with `persona serve`"
    return ""
