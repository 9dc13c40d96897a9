"""The `Embedder` port: text in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt


class EmbedderUnavailableError(Exception):
    """The embedding backend cannot be reached; the caller may retry."""


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """Identifies the model (and quantisation); the store records it to refuse mismatches."""
        ...

    @property
    def dimension(self) -> int:
        ...

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Shape (len(texts), dimension), rows L2-normalised. Never blocks the event loop."""
        ...

    async def close(self) -> None:
        ...
