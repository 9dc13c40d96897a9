"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.adapters.stores.sqlite import SqliteGraphStore


@pytest.fixture
async def store(tmp_path: Path, embedder: LocalOnnxEmbedder) -> AsyncIterator[SqliteGraphStore]:
    """An empty embedded store for the local embedder (a test may define its own `store`)."""
    s = SqliteGraphStore(tmp_path / "persona.db")
    await s.open(embedding_model=embedder.model_id, dimension=embedder.dimension)
    try:
        yield s
    finally:
        await s.close()
