"""Servers for the graph tests: SQLite always, Neo4j for tests marked `neo4j`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from tests.graph.servers import ThreadServer
from tests.neo4j_plugin import server_settings

StartServer = Callable[..., ThreadServer]


@pytest.fixture
def start_server(
    tmp_path: Path, embedder: LocalOnnxEmbedder, request: pytest.FixtureRequest
) -> Iterator[StartServer]:
    """`start_server("sqlite")` or `start_server("neo4j")`; stopped after the test."""
    running: list[ThreadServer] = []

    def start(store: str = "sqlite", **settings: Any) -> ThreadServer:
        if store == "neo4j":
            settings = {**server_settings(request.getfixturevalue("neo4j_clean_db")), **settings}
        server = ThreadServer(tmp_path / f"data-{len(running)}", embedder, **settings)
        running.append(server)
        return server

    try:
        yield start
    finally:
        for server in running:
            server.stop()
