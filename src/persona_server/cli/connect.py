"""Options every client subcommand shares, and the client they describe."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

import grpc

from persona import PersonaClient
from persona_server.cli.errors import UsageError
from persona_server.cli.timeparse import parse_datetime

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 10.0
MEMORY_TYPES = ("episode", "psyche", "goal", "entity", "fact")


def client_options(*, user: bool = True) -> argparse.ArgumentParser:
    """A parent parser: its options go after the subcommand (`persona recall --user u1 ...`).
    `user=False` leaves --user out (commands about the tenant, not a user)."""
    parent = argparse.ArgumentParser(add_help=False)
    conn = parent.add_argument_group("connection")
    conn.add_argument(
        "--target",
        default=os.environ.get("PERSONA_TARGET") or DEFAULT_TARGET,
        metavar="HOST:PORT",
        help="server address (default: $PERSONA_TARGET or %(default)s)",
    )
    conn.add_argument(
        "--api-key",
        default=os.environ.get("PERSONA_API_KEY") or None,
        metavar="KEY",
        help="API key sent as x-api-key (default: $PERSONA_API_KEY)",
    )
    conn.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help=f"deadline of each call (default: {DEFAULT_TIMEOUT_S:g})",
    )
    conn.add_argument("--tls", action="store_true", help="use TLS with the system's root CAs")
    conn.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="use TLS trusting this CA bundle (implies --tls)",
    )
    if user:
        parent.add_argument("--user", required=True, metavar="ID", help="the user id")
    parent.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parent


def open_client(args: argparse.Namespace) -> PersonaClient:
    return PersonaClient(
        args.target,
        api_key=args.api_key,
        tls=_tls(args),
        default_timeout_s=args.timeout or DEFAULT_TIMEOUT_S,
    )


def _tls(args: argparse.Namespace) -> bool | grpc.ChannelCredentials:
    if args.ca_file is not None:
        try:
            roots = args.ca_file.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"INVALID_ARGUMENT: --ca-file: {exc.strerror}: {args.ca_file}"
            ) from None
        return grpc.ssl_channel_credentials(root_certificates=roots)
    return bool(args.tls)


# --- argument converters (argparse reports their ValueError/ArgumentTypeError as exit 2) ----


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def timestamp_arg(name: str, text: str | None) -> datetime | None:
    """Parse an optional ISO 8601 flag; a non-date is a local INVALID_ARGUMENT (exit 2)."""
    if text is None:
        return None
    try:
        return parse_datetime(text)
    except ValueError as exc:
        raise UsageError(f"INVALID_ARGUMENT: {name}: {exc}") from None
