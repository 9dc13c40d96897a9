"""Settings and keys of the transport tests' servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persona_server.config import Settings

KEY_A = "key-tenant-a"
KEY_B = "key-tenant-b"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "data_dir": data_dir,
        "api_keys": f"{KEY_A}:tenant-a,{KEY_B}:tenant-b",
        "store": "sqlite",
        "embeddings_model": "",
        "llm_model": "",
        "shutdown_grace_s": 0.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
