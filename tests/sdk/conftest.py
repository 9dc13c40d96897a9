from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sdk.fake_service import FakeMemoryService, FakeServer


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer(FakeMemoryService())
    try:
        yield server
    finally:
        server.stop()
