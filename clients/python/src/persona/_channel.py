"""Connection settings shared by both clients: credentials, channel options, call metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import grpc

from persona._version import __version__

# The `tls` argument: False for plaintext (local development), True for TLS with the system's
# root certificates, or ready-made credentials (custom CA, mutual TLS).
TlsConfig: TypeAlias = bool | grpc.ChannelCredentials
ChannelOptions: TypeAlias = Sequence[tuple[str, Any]]

API_KEY_HEADER = "x-api-key"

_DEFAULT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.primary_user_agent", f"persona-python/{__version__}"),
)


def credentials(tls: TlsConfig) -> grpc.ChannelCredentials | None:
    """None means a plaintext channel."""
    if tls is True:
        return grpc.ssl_channel_credentials()
    if tls is False or tls is None:
        return None
    return tls


def options(extra: ChannelOptions) -> list[tuple[str, Any]]:
    # Caller options come last so they override ours (gRPC keeps the last value of a key).
    return [*_DEFAULT_OPTIONS, *extra]


def call_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return ((API_KEY_HEADER, api_key),) if api_key else ()


def check_timeout(name: str, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be positive (or None for no deadline), got {value}")
    return value
