"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder


@pytest.fixture(scope="session")
def embedder() -> Iterator[LocalOnnxEmbedder]:
    """The local MiniLM model, loaded once per test session and shared by every server."""
    emb = LocalOnnxEmbedder()
    emb.load()
    yield emb
