"""Settings, read from `PERSONA_*` environment variables and a `.env` file (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from persona_server.domain.models import MemoryType
from persona_server.domain.strength import (
    DEFAULT_DONE_GOAL_HALF_LIFE,
    DEFAULT_FORGET_THRESHOLD,
    DEFAULT_HALF_LIVES,
    Decay,
)
from persona_server.domain.tenancy import TenantLimits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PERSONA_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- server ---
    listen: str = Field("127.0.0.1:50051", description="host:port the gRPC server binds")
    data_dir: Path = Field(Path("data"), description="where the embedded store keeps its files")
    api_keys: SecretStr = Field(
        SecretStr(""), description="comma-separated key:tenant pairs (development)"
    )
    api_keys_file: Path | None = Field(
        None, description="file of hashed keys, one 'sha256:<hex> <tenant>' per line (production)"
    )
    default_tenant: str = Field("default", description="tenant of an open (keyless) server")
    reflection: bool = Field(True, description="serve gRPC server reflection")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain; enables TLS")
    tls_key_file: Path | None = Field(None, description="PEM private key for tls_cert_file")
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle: with TLS on, every client must present a certificate it "
        "signed (mutual TLS)",
    )
    api_keys_file_poll_s: float = Field(
        2.0, gt=0, description="how often the key file is checked for changes (rotation)"
    )
    rate_limit_rps: float = Field(
        0.0, ge=0, description="requests per second per tenant and server process; 0 = off"
    )
    rate_limit_burst: int = Field(
        0, ge=0, description="requests a tenant may make at once; 0 = one second's worth"
    )
    quota_memories_per_user: int = Field(
        0, ge=0, description="memories (every type) one user may hold; 0 = no quota"
    )
    quota_bytes_per_tenant: int = Field(
        0, ge=0, description="UTF-8 bytes of memory text one tenant may hold; 0 = no quota"
    )
    retention_days: int = Field(
        0,
        ge=0,
        description="episodes whose event time is more than this many days ago are deleted, "
        "with what was derived only from them; 0 = kept forever (a tenant line in the key "
        "file may set its own retention_days)",
    )
    retention_interval_s: float = Field(
        3600.0, gt=0, description="how often the retention job looks for expired episodes"
    )
    retention_batch: int = Field(
        500,
        ge=1,
        le=10_000,
        description="episodes the retention job deletes per store transaction: smaller holds "
        "each user's write lock for less time, larger finishes a pass sooner",
    )
    max_message_bytes: int = Field(4 * 1024 * 1024, description="max gRPC message size")
    uvloop: bool = Field(
        True,
        description="run the server's event loop on uvloop when it is installed (cheaper "
        "sends to many open streams); false = asyncio's own loop",
    )
    blas_threads: int = Field(
        1,
        ge=0,
        description="threads numpy's BLAS may use for vector products; 1 keeps them on the "
        "calling thread (the server is parallel across requests), 0 = the library's default",
    )
    shutdown_grace_s: float = Field(10.0, description="seconds in-flight RPCs get on SIGTERM")
    log_level: str = Field("INFO", description="log level")
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="OpenTelemetry span exporter"
    )
    otel_endpoint: str = Field("", description="OTLP endpoint when otel_exporter=otlp")
    metrics_prometheus: str = Field(
        "", description="HOST:PORT to serve Prometheus metrics on (/metrics); empty = off"
    )

    # --- store ---
    store: Literal["sqlite", "neo4j"] = Field("sqlite", description="graph store backend")
    neo4j_uri: str = Field("", description="bolt:// or neo4j:// URI when store=neo4j")
    neo4j_user: str = Field("neo4j", description="Neo4j user")
    neo4j_password: SecretStr = Field(SecretStr(""), description="Neo4j password")
    neo4j_database: str = Field("neo4j", description="Neo4j database name")
    neo4j_max_pool_size: int = Field(
        50, ge=1, description="Neo4j driver connection pool size (one driver per process)"
    )
    neo4j_connection_timeout_s: float = Field(
        5.0, gt=0, description="seconds to open one connection to Neo4j"
    )
    neo4j_max_retry_time_s: float = Field(
        15.0, ge=0, description="how long the driver retries a transaction on transient errors"
    )
    neo4j_vector_cache_bytes: int = Field(
        1 << 30,
        ge=0,
        description="memory per process for exact per-user vector search; 0 = native index only",
    )

    # --- Recall ---
    recall_related_words: bool = Field(
        True,
        description="Recall also searches full-text for the user's own words nearest in meaning "
        "to the query's (a per-process vocabulary per user, read from the store once)",
    )
    recall_related_words_bytes: int = Field(
        256 << 20, ge=0, description="memory per process for those vocabularies"
    )
    recall_unnamed_query: bool = Field(
        True,
        description="Recall also searches vectors for the query without the user's speakers' "
        "names (embedded with it: about 3 ms a query naming a speaker on two cores); off gives "
        "round four's ranking and passages back",
    )

    # --- StreamContext ---
    stream_poll_s: float = Field(
        0.5,
        gt=0,
        le=1,
        description="how often each user's change-log reader polls for writes made through "
        "other replicas (local writes wake it at once)",
    )
    stream_buffer: int = Field(
        256,
        ge=1,
        description="memories whose changes one stream may hold unsent before it resyncs",
    )
    change_log_max_entries: int = Field(
        10_000, ge=1, description="change-log entries kept per user (the newest)"
    )
    change_log_max_age_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="seconds a change-log entry is kept"
    )

    # --- embeddings (independent of the LLM) ---
    embeddings_base_url: str = Field("", description="OpenAI-compatible embeddings endpoint")
    embeddings_model: str = Field("", description="embeddings model; empty = local MiniLM")
    embeddings_api_key: SecretStr = Field(SecretStr(""), description="embeddings API key")
    embeddings_local_activations: Literal["int8", "float"] = Field(
        "float",
        description="local MiniLM graph: float (the packaged graph) or int8 activations "
        "(derived at load, cheaper per text, slightly other vectors); each has its own model "
        "id, so a data dir keeps the one it was built with",
    )
    embeddings_local_fused: bool = Field(
        True,
        description="run the float graph with its attention and GELU fused into "
        "onnxruntime's kernels (the same vectors to float rounding; false = the packaged "
        "graph as shipped)",
    )
    embeddings_local_spin_us: int = Field(
        0,
        ge=0,
        le=100_000,
        description="microseconds an idle onnxruntime worker spins for the next operator "
        "before it sleeps (0 = no spinning)",
    )
    embeddings_local_parallel_calls: int = Field(
        1,
        ge=1,
        le=8,
        description="model calls of one embedding request run at once, one thread each "
        "(1 = one call at a time on all intra-op threads)",
    )

    # --- LLM (configured when llm_model is set) ---
    llm_base_url: str = Field("", description="OpenAI-compatible base URL (empty = OpenAI)")
    llm_model: str = Field("", description="chat model; empty = offline (no LLM)")
    llm_api_key: SecretStr = Field(SecretStr(""), description="LLM API key")
    llm_timeout_s: float = Field(60.0, gt=0, description="timeout of one LLM call (seconds)")
    llm_structured_output: Literal["json_schema", "json_object"] = Field(
        "json_schema",
        description="json_schema: response_format json_schema (OpenAI, vLLM, Ollama, "
        "llama.cpp); json_object: JSON mode with the schema in the prompt, for older servers",
    )
    llm_max_retries: int = Field(
        3, ge=0, description="retries of one LLM call on timeouts, 429 and 5xx"
    )
    llm_retry_base_s: float = Field(0.5, ge=0, description="first retry backoff (doubles)")
    llm_retry_max_s: float = Field(8.0, ge=0, description="longest backoff between retries")
    llm_max_output_tokens: int = Field(2048, ge=1, description="output token cap of one call")
    llm_temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature")
    llm_token_limit_field: Literal["auto", "max_tokens", "max_completion_tokens"] = Field(
        "auto",
        description="request field that carries the output cap; auto: max_completion_tokens "
        "for OpenAI (no base URL), max_tokens for self-hosted servers",
    )
    llm_max_calls_per_request: int = Field(
        4, ge=1, description="LLM calls one request (RPC or ingested item) may make"
    )
    llm_max_tokens_per_request: int = Field(
        32000, ge=1, description="LLM tokens (prompt + completion) one request may spend"
    )
    llm_max_concurrency: int = Field(8, ge=1, description="LLM calls in flight at once")
    llm_context_memories: int = Field(
        20, ge=0, le=100, description="existing memories given to the LLM per extracted item"
    )

    # --- background extraction ---
    extraction_poll_s: float = Field(
        5.0, gt=0, description="how often the extraction worker looks for due work"
    )
    extraction_concurrency: int = Field(
        4, ge=1, description="users whose items are extracted in parallel"
    )
    extraction_retry_base_s: float = Field(
        5.0, gt=0, description="delay before the first retry of a failed extraction (doubles)"
    )
    extraction_retry_max_s: float = Field(3600.0, gt=0, description="longest retry delay")
    extraction_lease_s: float = Field(
        30.0,
        gt=0,
        description="term of a replica's extraction lease on a user (renewed every third of "
        "it while the user is worked on): how long a crashed replica can hold a user up",
    )
    extraction_max_attempts: int = Field(
        12, ge=0, description="attempts before an extraction stays failed; 0 = never give up"
    )

    # --- knowledge documents (knowledge schemas) ---
    knowledge_poll_s: float = Field(
        2.0, gt=0, description="how often the knowledge worker looks for items to take in"
    )
    # --- strength and forgetting (domain.strength) ---
    decay_half_life_days_episode: float = Field(
        DEFAULT_HALF_LIVES[MemoryType.EPISODE], gt=0, description="half-life of episodes (days)"
    )
    decay_half_life_days_psyche: float = Field(
        DEFAULT_HALF_LIVES[MemoryType.PSYCHE], gt=0, description="half-life of psyche (days)"
    )
    decay_half_life_days_goal: float = Field(
        DEFAULT_HALF_LIVES[MemoryType.GOAL], gt=0, description="half-life of active goals (days)"
    )
    decay_half_life_days_goal_done: float = Field(
        DEFAULT_DONE_GOAL_HALF_LIFE,
        gt=0,
        description="half-life of achieved or abandoned goals (days)",
    )
    decay_half_life_days_entity: float = Field(
        DEFAULT_HALF_LIVES[MemoryType.ENTITY], gt=0, description="half-life of entities (days)"
    )
    decay_half_life_days_fact: float = Field(
        DEFAULT_HALF_LIVES[MemoryType.FACT], gt=0, description="half-life of facts (days)"
    )
    forget_threshold: float = Field(
        DEFAULT_FORGET_THRESHOLD,
        ge=0,
        le=1,
        description="derived memories weaker than this are dormant (hidden unless asked for)",
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        return _check_listen(value, "listen")

    @field_validator("metrics_prometheus")
    @classmethod
    def _check_metrics(cls, value: str) -> str:
        if value:
            _check_listen(value, "metrics_prometheus")
        return value

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def tenant_limits(self) -> TenantLimits:
        """The server-wide limits (a tenant line in the key file overrides them)."""
        return TenantLimits(
            rate_limit_rps=self.rate_limit_rps,
            rate_limit_burst=self.rate_limit_burst,
            quota_memories_per_user=self.quota_memories_per_user,
            quota_bytes_per_tenant=self.quota_bytes_per_tenant,
            retention_days=self.retention_days,
        )

    @property
    def decay(self) -> Decay:
        return Decay(
            half_lives={
                MemoryType.EPISODE: self.decay_half_life_days_episode,
                MemoryType.PSYCHE: self.decay_half_life_days_psyche,
                MemoryType.GOAL: self.decay_half_life_days_goal,
                MemoryType.ENTITY: self.decay_half_life_days_entity,
                MemoryType.FACT: self.decay_half_life_days_fact,
            },
            done_goal_half_life=self.decay_half_life_days_goal_done,
            forget_threshold=self.forget_threshold,
        )

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_model)


def _check_listen(value: str, name: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{name} must be HOST:PORT, got {value!r}")
    return value


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)
