"""A scripted OpenAI-compatible server per test, and Persona servers configured to use it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from persona import AsyncPersonaClient
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from persona_server.config import Settings
from tests.llm.scripted_llm import ScriptedLLM
from tests.transport.transport_settings import KEY_A, make_settings

StartApp = Callable[..., Awaitable[App]]


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM().start()
    try:
        yield server
    finally:
        server.stop()


def llm_settings(data_dir: Path, llm: ScriptedLLM, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_model": "scripted-model",
        "llm_base_url": llm.base_url,
        "llm_api_key": "sk-test-key",
        "llm_timeout_s": 5.0,
        "llm_max_retries": 2,
        "llm_retry_base_s": 0.01,
        "llm_retry_max_s": 0.05,
        "extraction_poll_s": 0.2,
        "extraction_retry_base_s": 0.2,
        "extraction_retry_max_s": 1.0,
    }
    values.update(overrides)
    return make_settings(data_dir, **values)


@pytest.fixture
async def start_app(
    tmp_path: Path, embedder: LocalOnnxEmbedder, llm: ScriptedLLM
) -> AsyncIterator[StartApp]:
    """Start Persona servers on one data dir (a second call is a restart); all are stopped."""
    started: list[App] = []

    async def launch(**overrides: Any) -> App:
        app = await start(llm_settings(tmp_path / "data", llm, **overrides), embedder=embedder)
        started.append(app)
        return app

    try:
        yield launch
    finally:
        for app in started:
            # A test may have stopped it already (restart tests); stopping twice is harmless.
            with contextlib.suppress(Exception):
                await app.stop(grace_s=0)


@pytest.fixture
async def app(start_app: StartApp) -> App:
    return await start_app()


@pytest.fixture
async def client(app: App) -> AsyncIterator[AsyncPersonaClient]:
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as c:
        yield c
