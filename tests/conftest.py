"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder

# Property-based tests: a bounded, derandomised run in the test command ("ci"), a long random
# one on demand (`pytest --hypothesis-profile=long`, or PERSONA_HYPOTHESIS_PROFILE=long).
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, suppress_health_check=_SLOW_IS_FINE
)
settings.register_profile(
    "long", max_examples=2000, deadline=None, suppress_health_check=_SLOW_IS_FINE
)
settings.load_profile(os.environ.get("PERSONA_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def embedder() -> Iterator[LocalOnnxEmbedder]:
    """The local MiniLM model, loaded once per test session and shared by every server."""
    emb = LocalOnnxEmbedder()
    emb.load()
    yield emb
