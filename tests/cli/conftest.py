from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def load_sdk_helper(name: str) -> ModuleType:
    """Load tests/sdk/<name>.py: one scripted server and one real-server harness for SDK and
    CLI tests, loaded by path because the test directories are not packages."""
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).parents[1] / "sdk" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


fake_service = load_sdk_helper("fake_service")


@pytest.fixture
def fake_server() -> Iterator[Any]:
    server = fake_service.FakeServer(fake_service.FakeMemoryService())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # Loaded lazily: only the end-to-end tests need the server's own modules.
    harness = load_sdk_helper("real_server")
    server = harness.RealServer(tmp_path_factory.mktemp("persona-cli-e2e"))
    try:
        yield server
    finally:
        server.stop()
