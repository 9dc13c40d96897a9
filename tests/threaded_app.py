"""A Persona server on its own event loop in a background thread.

Blocking clients (the sync SDK, the CLI, hypothesis tests calling the server many times from one
plain test function) cannot share a loop with the server, so the server gets its own. The store
and the services can still be reached on the server's loop (`run`), to check what was written.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from persona_server.config import Settings

T = TypeVar("T")
START_TIMEOUT_S = 120.0


class ThreadedApp:
    def __init__(self, settings: Settings, embedder: LocalOnnxEmbedder | None = None) -> None:
        """`embedder`: the session's shared model (None: the server loads its own)."""
        self._settings = settings
        self._embedder = embedder
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._app: App | None = None

    @property
    def app(self) -> App:
        assert self._app is not None, "not started"
        return self._app

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run `coro` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def __enter__(self) -> Self:
        self._thread.start()
        try:
            self._app = self.run(start(self._settings, embedder=self._embedder), START_TIMEOUT_S)
        except BaseException:
            self._close_loop()
            raise
        return self

    def stop(self) -> None:
        self.__exit__(None, None, None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._app is not None:
                app, self._app = self._app, None
                self.run(app.stop(grace_s=0), timeout_s=30)
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
