"""Settings, read from `PERSONA_*` environment variables and a `.env` file (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    max_message_bytes: int = Field(4 * 1024 * 1024, description="max gRPC message size")
    shutdown_grace_s: float = Field(10.0, description="seconds in-flight RPCs get on SIGTERM")
    log_level: str = Field("INFO", description="log level")
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="OpenTelemetry span exporter"
    )
    otel_endpoint: str = Field("", description="OTLP endpoint when otel_exporter=otlp")

    # --- store ---
    store: Literal["sqlite", "neo4j"] = Field("sqlite", description="graph store backend")
    neo4j_uri: str = Field("", description="bolt:// or neo4j:// URI when store=neo4j")
    neo4j_user: str = Field("neo4j", description="Neo4j user")
    neo4j_password: SecretStr = Field(SecretStr(""), description="Neo4j password")
    neo4j_database: str = Field("neo4j", description="Neo4j database name")

    # --- embeddings (independent of the LLM) ---
    embeddings_base_url: str = Field("", description="OpenAI-compatible embeddings endpoint")
    embeddings_model: str = Field("", description="embeddings model; empty = local MiniLM")
    embeddings_api_key: SecretStr = Field(SecretStr(""), description="embeddings API key")

    # --- LLM (configured when llm_model is set) ---
    llm_base_url: str = Field("", description="OpenAI-compatible base URL (empty = OpenAI)")
    llm_model: str = Field("", description="chat model; empty = offline (no LLM)")
    llm_api_key: SecretStr = Field(SecretStr(""), description="LLM API key")
    llm_timeout_s: float = Field(60.0, description="timeout of one LLM call")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen must be HOST:PORT, got {value!r}")
        return value

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_model)
