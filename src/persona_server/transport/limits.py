"""Per-tenant request rate limits: a token bucket per tenant, in each server process.

A call takes one token when it starts (a stream counts once, when it opens). A tenant whose
bucket is empty gets RESOURCE_EXHAUSTED, reason RATE_LIMITED, with RetryInfo saying when the
next token arrives. Limits are per process: with N replicas behind a balancer a tenant may
reach N times its rate, which is why the README tells operators to divide by the replicas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from persona_server.domain.errors import ResourceExhaustedError
from persona_server.domain.tenancy import TenantLimits
from persona_server.transport.auth import PUBLIC_METHOD_PREFIXES, current_tenant
from persona_server.transport.errors import to_status
from persona_server.transport.handlers import Handler, rebuild

LimitsFor = Callable[[str], TenantLimits]


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, limits_for: LimitsFor, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits_for = limits_for
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, tenant: str) -> float:
        """0 if the call may go ahead, else the seconds until it could."""
        limits = self._limits_for(tenant)
        rate = limits.rate_limit_rps
        if rate <= 0:
            return 0.0
        burst = limits.burst
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(burst, now)
        # Refill for the time passed, capped at the burst (which may have changed on reload).
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


class RateLimitInterceptor(grpc.aio.ServerInterceptor):
    """Put after AuthInterceptor: it reads the tenant that authentication set."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler: Handler | None = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler

        async def enter(context: Any) -> None:
            tenant = current_tenant()
            wait = self._limiter.take(tenant)
            if wait > 0:
                error = ResourceExhaustedError(
                    f"tenant {tenant} is over its request rate limit; retry in {wait:.2f} s",
                    reason="RATE_LIMITED",
                    retry_after_s=wait,
                )
                await context.abort_with_status(to_status(error))

        return rebuild(handler, enter=enter)
