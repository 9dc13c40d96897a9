"""Request metrics per RPC: rate, errors and duration, and calls in flight (open streams).

Instruments (OpenTelemetry; exported by whatever reader `observability.configure_metrics`
installed, e.g. Prometheus):

- `persona.rpc.requests` (counter): finished calls, by `rpc` and gRPC status `code`;
- `persona.rpc.duration` (histogram, seconds): call time, by `rpc` and `code`; for
  StreamContext it is how long the stream stayed open;
- `persona.rpc.active` (up-down counter): calls in flight, by `rpc`; for StreamContext it is the
  number of open streams.

Health checks and reflection are left out: load balancers call them all the time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from opentelemetry import metrics

from persona_server.transport.auth import PUBLIC_METHOD_PREFIXES
from persona_server.transport.handlers import Handler, rebuild

# Seconds; from a cached Recall (~ms) to a long stream (hours).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def _code(context: Any, exc: BaseException | None) -> str:
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if exc is not None and not isinstance(exc, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN.name
    return grpc.StatusCode.OK.name


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("persona.rpc")
        self._requests = meter.create_counter(
            "persona.rpc.requests", unit="{call}", description="finished calls by rpc and code"
        )
        self._duration = meter.create_histogram(
            "persona.rpc.duration",
            unit="s",
            description="call duration by rpc and code",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self._active = meter.create_up_down_counter(
            "persona.rpc.active", unit="{call}", description="calls in flight (open streams)"
        )

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler: Handler | None = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler
        rpc = method.rpartition("/")[2]
        started: list[float] = []

        async def enter(context: Any) -> None:
            started.append(time.perf_counter())
            self._active.add(1, {"rpc": rpc})

        def done(context: Any, exc: BaseException | None) -> None:
            if not started:
                return  # ended before it began (never reached the handler)
            attrs = {"rpc": rpc, "code": _code(context, exc)}
            self._active.add(-1, {"rpc": rpc})
            self._requests.add(1, attrs)
            self._duration.record(time.perf_counter() - started[0], attrs)

        return rebuild(handler, enter=enter, done=done)
