"""The real Persona server (`persona_server.app.start`) on a loopback port, for end-to-end tests.

It runs on its own event loop in a background thread so that blocking clients (the sync SDK,
the CLI) and async ones can both talk to it from the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from persona_server.app import App, start
from persona_server.config import Settings

T = TypeVar("T")
API_KEY = "e2e-key"


class RealServer:
    def __init__(self, data_dir: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]  # a developer's .env must not leak in
            listen="127.0.0.1:0",
            data_dir=data_dir,
            api_keys=f"{API_KEY}:tenant-e2e",  # type: ignore[arg-type]
            store="sqlite",
            embeddings_model="",
            llm_model="",
            reflection=False,
            shutdown_grace_s=0.0,
        )
        self.app: App = self.run(start(settings))
        self.target = f"127.0.0.1:{self.app.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stream_subscribers(self) -> int:
        """Context streams currently waiting for changes inside the server."""

        async def count() -> int:
            return self.app.services.feed.hub.subscriber_count()

        return self.run(count())

    def stop(self) -> None:
        try:
            self.run(self.app.stop(grace_s=0), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[RealServer]:
    """A RealServer for the length of a `with` block (the body of a fixture)."""
    server = RealServer(data_dir)
    try:
        yield server
    finally:
        server.stop()
