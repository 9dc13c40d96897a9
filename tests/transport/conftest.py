"""A real in-process Persona server on 127.0.0.1:0 per test, and SDK clients for two tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from persona import AsyncPersonaClient
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from tests.transport.transport_settings import KEY_A, KEY_B, make_settings


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
