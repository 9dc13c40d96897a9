"""Real Persona servers on their own event loops (threads), so that the CLI and the sync SDK,
which block, can talk to them from a test. Any store; the session's embedder is shared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from tests.threaded_app import ThreadedApp
from tests.transport.transport_settings import make_settings


class ThreadServer(ThreadedApp):
    """Started at once; `stop()` when done."""

    def __init__(self, data_dir: Path, embedder: LocalOnnxEmbedder, **settings: Any) -> None:
        super().__init__(make_settings(data_dir, **settings), embedder)
        self.__enter__()
