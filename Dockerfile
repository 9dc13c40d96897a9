# The Persona server. Build: docker build -t persona . ; run: see docker-compose.yml.
FROM python:3.11-slim AS build
WORKDIR /src
COPY clients/python ./clients/python
COPY pyproject.toml README.md ./
COPY src ./src
# Both local packages in one resolve: the server depends on the SDK (persona-sdk).
RUN python -m venv /opt/persona \
 && /opt/persona/bin/pip install --no-cache-dir ./clients/python .

FROM python:3.11-slim
COPY --from=build /opt/persona /opt/persona
ENV PATH=/opt/persona/bin:$PATH \
    PERSONA_LISTEN=0.0.0.0:50051 \
    PERSONA_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 persona && mkdir -p /data && chown persona /data
USER persona
VOLUME ["/data"]
EXPOSE 50051
# The standard gRPC health service answers without an API key.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import grpc,sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; \
s=g.HealthStub(grpc.insecure_channel('127.0.0.1:50051')).Check(h.HealthCheckRequest(), timeout=2); \
sys.exit(0 if s.status == h.HealthCheckResponse.SERVING else 1)"
# Binding 0.0.0.0 needs API keys: set PERSONA_API_KEYS or PERSONA_API_KEYS_FILE.
CMD ["persona", "serve"]
