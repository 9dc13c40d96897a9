"""Fixtures of the CLI tests: a scripted fake server and the real server (from tests/sdk)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.sdk import fake_service


@pytest.fixture
def fake_server() -> Iterator[Any]:
    server = fake_service.FakeServer(fake_service.FakeMemoryService())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # Imported lazily: only the end-to-end tests need the server's own modules.
    from tests.sdk.real_server import running

    with running(tmp_path_factory.mktemp("persona-cli-e2e")) as server:
        yield server
