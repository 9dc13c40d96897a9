"""A real in-process Persona server on 127.0.0.1:0 per test, and SDK clients for two tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from persona import AsyncPersonaClient
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from persona_server.config import Settings

KEY_A = "key-tenant-a"
KEY_B = "key-tenant-b"


@pytest.fixture(scope="session")
def embedder() -> Iterator[LocalOnnxEmbedder]:
    # Loaded once per session: every server of the suite shares the model.
    emb = LocalOnnxEmbedder()
    emb.load()
    yield emb


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


@pytest.fixture
async def app(tmp_path: Path, embedder: LocalOnnxEmbedder) -> AsyncIterator[App]:
    running = await start(make_settings(tmp_path / "data"), embedder=embedder)
    try:
        yield running
    finally:
        await running.stop(grace_s=0)


@pytest.fixture
async def client(app: App) -> AsyncIterator[AsyncPersonaClient]:
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as c:
        yield c


@pytest.fixture
async def client_b(app: App) -> AsyncIterator[AsyncPersonaClient]:
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_B) as c:
        yield c
