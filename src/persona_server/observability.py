"""JSON logs carrying trace ids, OpenTelemetry tracing (exporter off by default) and metrics
(a Prometheus endpoint with `PERSONA_METRICS_PROMETHEUS`, OTLP with the otlp exporter)."""

from __future__ import annotations

import logging
import sys

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from pythonjsonlogger.json import JsonFormatter

from persona_server.config import Settings, split_host_port

_configured = False
_metrics_configured = False
_RESOURCE = Resource.create({"service.name": "persona"})


class TraceIdFilter(logging.Filter):
    """Adds the current span's trace and span ids so a log line can be joined to its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = f"{ctx.trace_id:032x}" if ctx.is_valid else ""
        record.span_id = f"{ctx.span_id:016x}" if ctx.is_valid else ""
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(TraceIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def configure_tracing(settings: Settings) -> None:
    """A tracer provider is always installed (so logs get trace ids); spans leave the process
    only when an exporter is configured."""
    global _configured
    if _configured:
        return
    _configured = True
    provider = TracerProvider(resource=_RESOURCE)
    if settings.otel_exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif settings.otel_exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise RuntimeError(
                "PERSONA_OTEL_EXPORTER=otlp needs the opentelemetry-exporter-otlp-proto-grpc "
                "package installed"
            ) from exc
        endpoint = settings.otel_endpoint or None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)


def configure_metrics(settings: Settings) -> None:
    """Install a meter provider whose readers match the settings; without any, instruments stay
    the API's no-ops (no cost). Once per process, like tracing."""
    global _metrics_configured
    if _metrics_configured:
        return
    _metrics_configured = True
    readers: list[MetricReader] = []
    if settings.metrics_prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        host, port = split_host_port(settings.metrics_prometheus)
        # The reader registers with prometheus_client's default registry, which the HTTP
        # server (a daemon thread) serves at /metrics.
        readers.append(PrometheusMetricReader())
        start_http_server(port, addr=host)
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=settings.otel_endpoint or None)
        readers.append(PeriodicExportingMetricReader(exporter))
    if readers:
        metrics.set_meter_provider(MeterProvider(resource=_RESOURCE, metric_readers=readers))
