"""API-key authentication: keys map to tenants; the tenant reaches servicers through a contextvar.

Keys are held only as sha256 digests, whether they come from `PERSONA_API_KEYS` (development) or
from a file of hashed keys (production), so a memory dump or a leaked file does not leak keys.
Health and reflection stay open, as load balancers and tooling expect.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from persona_server.domain.errors import UnauthenticatedError
from persona_server.transport.errors import to_status

_current_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("persona_tenant")

PUBLIC_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def current_tenant() -> str:
    """The authenticated tenant of the RPC being served."""
    return _current_tenant.get()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeyConfigError(ValueError):
    pass


class KeyRing:
    """Digest -> tenant. Empty means the server runs open as one default tenant."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        self._digests = dict(digests)

    @property
    def empty(self) -> bool:
        return not self._digests

    def tenant_for(self, key: str) -> str | None:
        digest = hash_key(key)
        for known, tenant in self._digests.items():
            # Constant-time comparison of every entry: no early exit that times the match.
            if hmac.compare_digest(known, digest):
                return tenant
        return None

    @classmethod
    def from_settings(cls, pairs: str, file: Path | None) -> KeyRing:
        digests: dict[str, str] = {}
        for n, raw in enumerate(p.strip() for p in pairs.split(",")):
            if not raw:
                continue
            key, sep, tenant = raw.rpartition(":")
            if not sep or not key or not tenant:
                raise ApiKeyConfigError(
                    f"PERSONA_API_KEYS entry {n + 1} must be key:tenant (got a malformed pair)"
                )
            digests[hash_key(key)] = tenant
        if file is not None:
            digests.update(_read_key_file(file))
        return cls(digests)


def _read_key_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ApiKeyConfigError(f"cannot read PERSONA_API_KEYS_FILE {path}: {exc}") from exc
    digests: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].startswith("sha256:") or len(parts[0]) != 71:
            raise ApiKeyConfigError(f"{path}:{number}: expected 'sha256:<64 hex digits> <tenant>'")
        digests[parts[0].removeprefix("sha256:").lower()] = parts[1]
    return digests


def _key_from_metadata(metadata: Any) -> str | None:
    for item in metadata or ():
        key, value = item[0], item[1]
        if key == "x-api-key":
            return str(value)
        if key == "authorization" and str(value).lower().startswith("bearer "):
            return str(value)[7:].strip()
    return None


# The handler types of grpc's stubs describe sync behaviours; under grpc.aio they are coroutines
# and async generators, so the wrappers below are typed loosely on purpose.
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: KeyRing, default_tenant: str) -> None:
        self._keys = keys
        self._default_tenant = default_tenant

    def _authenticate(self, metadata: Any) -> str | UnauthenticatedError:
        if self._keys.empty:
            return self._default_tenant
        key = _key_from_metadata(metadata)
        if key is None:
            return UnauthenticatedError(
                "missing API key: send it in the x-api-key metadata header",
                reason="API_KEY_MISSING",
            )
        tenant = self._keys.tenant_for(key)
        if tenant is None:
            return UnauthenticatedError("unknown API key", reason="API_KEY_INVALID")
        return tenant

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler
        outcome = self._authenticate(handler_call_details.invocation_metadata)
        return _wrap(handler, outcome)


def _wrap(handler: _Handler, outcome: str | UnauthenticatedError) -> _Handler:
    async def enter(context: Any) -> None:
        if isinstance(outcome, UnauthenticatedError):
            await context.abort_with_status(to_status(outcome))
            return
        _current_tenant.set(outcome)

    if handler.unary_unary is not None:
        inner_unary: Any = handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            await enter(context)
            return await inner_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        inner_stream: Any = handler.unary_stream

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            await enter(context)
            async for item in inner_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        inner_client_stream: Any = handler.stream_unary

        async def client_stream(requests: Any, context: Any) -> Any:
            await enter(context)
            return await inner_client_stream(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            client_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    # The API has no bidirectional RPCs; refuse rather than serve one unauthenticated.
    raise RuntimeError(f"unsupported handler kind for {handler}")
