"""Real Persona servers on their own event loops (threads), so that the CLI and the sync SDK,
which block, can talk to them from a test. Any store; the session's embedder is shared."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from tests.neo4j_plugin import Neo4jTarget
from tests.transport.transport_settings import make_settings

T = TypeVar("T")


def neo4j_settings(target: Neo4jTarget) -> dict[str, Any]:
    user, password = target.auth or ("neo4j", "")
    return {
        "store": "neo4j",
        "neo4j_uri": target.uri,
        "neo4j_user": user,
        "neo4j_password": password,
        "neo4j_database": target.database,
    }


class ThreadServer:
    def __init__(self, data_dir: Path, embedder: LocalOnnxEmbedder, **settings: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self.app: App = self.run(start(make_settings(data_dir, **settings), embedder=embedder))
        except BaseException:
            self._close_loop()
            raise
        self.target = f"127.0.0.1:{self.app.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        try:
            self.run(self.app.stop(grace_s=0), timeout=30)
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
