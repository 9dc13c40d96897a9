"""API-key authentication: keys map to tenants; the tenant reaches servicers through a contextvar.

Keys and their source are in `keys.py`. Health and reflection stay open, as load balancers and
tooling expect. Every refused key is written to the audit log (`persona.audit`) with the
method and the peer, never the key itself.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from persona_server.domain.errors import UnauthenticatedError
from persona_server.transport.errors import to_status
from persona_server.transport.handlers import Handler, rebuild
from persona_server.transport.keys import KeyRing, KeySource

_current_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("persona_tenant")
audit = logging.getLogger("persona.audit")

PUBLIC_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def current_tenant() -> str:
    """The authenticated tenant of the RPC being served."""
    return _current_tenant.get()


def _key_from_metadata(metadata: Any) -> str | None:
    for item in metadata or ():
        key, value = item[0], item[1]
        if key == "x-api-key":
            return str(value)
        if key == "authorization" and str(value).lower().startswith("bearer "):
            return str(value)[7:].strip()
    return None


def authenticate(ring: KeyRing, default_tenant: str, metadata: Any) -> str | UnauthenticatedError:
    if ring.empty:
        return default_tenant
    key = _key_from_metadata(metadata)
    if key is None:
        return UnauthenticatedError(
            "missing API key: send it in the x-api-key metadata header",
            reason="API_KEY_MISSING",
        )
    tenant = ring.tenant_for(key)
    if tenant is None:
        return UnauthenticatedError("unknown API key", reason="API_KEY_INVALID")
    return tenant


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: KeySource, default_tenant: str) -> None:
        self._keys = keys
        self._default_tenant = default_tenant

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler
        outcome = authenticate(
            self._keys.ring, self._default_tenant, handler_call_details.invocation_metadata
        )

        async def enter(context: Any) -> None:
            if isinstance(outcome, UnauthenticatedError):
                audit.warning(
                    "api key rejected",
                    extra={
                        "audit": "api_key_rejected",
                        "reason": outcome.reason,
                        "method": method,
                        "peer": context.peer(),
                    },
                )
                await context.abort_with_status(to_status(outcome))
                return
            _current_tenant.set(outcome)

        return rebuild(handler, enter=enter)
