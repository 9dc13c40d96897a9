"""The grpc.aio server: interceptors, health, reflection, TLS, limits, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from persona.v1 import memory_service_pb2 as svc
from persona_server.config import Settings
from persona_server.transport.auth import AuthInterceptor
from persona_server.transport.decoding import DecodeGuardInterceptor
from persona_server.transport.keys import KeySource
from persona_server.transport.limits import LimitsFor, RateLimiter, RateLimitInterceptor
from persona_server.transport.metrics import MetricsInterceptor
from persona_server.transport.registration import add_memory_service
from persona_server.transport.servicer import MemoryServicer, Services

log = logging.getLogger(__name__)
SERVICE_NAME = svc.DESCRIPTOR.services_by_name["MemoryService"].full_name
HEALTH_POLL_S = 2.0


class StartupError(RuntimeError):
    """The server cannot start with these settings; the message says what to change."""


def is_loopback(host: str) -> bool:
    return host in {"localhost", "::1"} or host.startswith("127.")


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        if settings.tls_client_ca_file is not None:
            raise StartupError(
                "PERSONA_TLS_CLIENT_CA_FILE (mutual TLS) needs TLS: set PERSONA_TLS_CERT_FILE "
                "and PERSONA_TLS_KEY_FILE too"
            )
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise StartupError("TLS needs both PERSONA_TLS_CERT_FILE and PERSONA_TLS_KEY_FILE")
    try:
        chain = settings.tls_cert_file.read_bytes()
        key = settings.tls_key_file.read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read TLS certificate or key: {exc}") from exc
    if settings.tls_client_ca_file is None:
        return grpc.ssl_server_credentials([(key, chain)])
    try:
        client_ca = settings.tls_client_ca_file.read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read PERSONA_TLS_CLIENT_CA_FILE: {exc}") from exc
    # Mutual TLS: the handshake fails for a client without a certificate this CA signed.
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=True
    )


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    # Background tasks of the server: the store's health, the key file's changes.
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)

    async def stop(self, grace_s: float) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # NOT_SERVING first so load balancers drain us, then let in-flight RPCs finish.
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


async def start_grpc_server(
    settings: Settings,
    services: Services,
    keys: KeySource,
    store_ping: Callable[[], Awaitable[bool]],
    limits_for: LimitsFor,
) -> RunningServer:
    host = settings.listen_host
    if keys.ring.empty and not is_loopback(host):
        raise StartupError(
            f"refusing to listen on {settings.listen} without API keys: anyone who can reach it "
            "could read every memory. Set PERSONA_API_KEYS (key:tenant pairs) or "
            "PERSONA_API_KEYS_FILE, or listen on 127.0.0.1 for local development."
        )
    limit = settings.max_message_bytes
    server = grpc.aio.server(
        interceptors=[
            aio_server_interceptor(),  # type: ignore[no-untyped-call]
            MetricsInterceptor(),  # outside auth: rejected keys are counted too
            AuthInterceptor(keys, settings.default_tenant),
            RateLimitInterceptor(RateLimiter(limits_for)),  # after auth: it needs the tenant
            # Last, so that its handler is the innermost: undecodable requests are refused as
            # INVALID_ARGUMENT after authentication, never reaching a servicer.
            DecodeGuardInterceptor(),
        ],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    add_memory_service(MemoryServicer(services), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
    credentials = _credentials(settings)
    try:
        if credentials is not None:
            port = server.add_secure_port(settings.listen, credentials)
        else:
            port = server.add_insecure_port(settings.listen)
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {settings.listen}: {exc}") from exc
    await server.start()
    running = RunningServer(server=server, port=port, health=health_servicer)
    await _set_health(health_servicer, await _safe_ping(store_ping))
    running._tasks = [
        asyncio.create_task(_watch_store(health_servicer, store_ping)),
        asyncio.create_task(keys.watch()),
    ]
    log.info("listening", extra={"listen": settings.listen, "port": port, "tls": bool(credentials)})
    return running


async def _safe_ping(ping: Callable[[], Awaitable[bool]]) -> bool:
    try:
        async with asyncio.timeout(HEALTH_POLL_S):
            return await ping()
    except Exception:
        return False


async def _set_health(servicer: health.aio.HealthServicer, ok: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    await servicer.set("", status)
    await servicer.set(SERVICE_NAME, status)


async def _watch_store(
    servicer: health.aio.HealthServicer, ping: Callable[[], Awaitable[bool]]
) -> None:
    """Health follows the store: NOT_SERVING while it is unreachable, SERVING once it is back."""
    last: bool | None = None
    while True:
        ok = await _safe_ping(ping)
        if ok != last:
            await _set_health(servicer, ok)
            if last is not None:
                log.warning("store health changed", extra={"serving": ok})
            last = ok
        await asyncio.sleep(HEALTH_POLL_S)
