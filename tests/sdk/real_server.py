"""The real Persona server (`persona_server.app.start`) on a loopback port, for end-to-end tests.

It runs on its own event loop in a background thread (`tests.threaded_app`) so that blocking
clients (the sync SDK, the CLI) and async ones can both talk to it from the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from persona_server.config import Settings
from tests.threaded_app import ThreadedApp

API_KEY = "e2e-key"


class RealServer(ThreadedApp):
    def __init__(self, data_dir: Path) -> None:
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
        super().__init__(settings)
        self.__enter__()

    def stream_subscribers(self) -> int:
        """Context streams currently waiting for changes inside the server."""

        async def count() -> int:
            return self.app.services.feed.hub.subscriber_count()

        return self.run(count())


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[RealServer]:
    """A RealServer for the length of a `with` block (the body of a fixture)."""
    server = RealServer(data_dir)
    try:
        yield server
    finally:
        server.stop()
