"""The `Embedder` port: text in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt


class EmbedderUnavailableError(Exception):
    """The embedding backend cannot be reached; the caller may retry.

    Adapters raise it after their own bounded retries are spent. A subclass may mark a backend
    that answers but refuses the request (bad key, unknown model, wrong dimension): the service
    is then unavailable until reconfigured, and retrying the same call will not help. Errors in
    the caller's input (a bare string instead of a sequence) are `TypeError`/`ValueError`, and a
    local model file that fails its checksum is a start-up error, not this.
    """


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """Identifies the model (and quantisation); the store records it to refuse mismatches."""
        ...

    @property
    def dimension(self) -> int: ...

    async def start(self) -> None:
        """Load the model or probe the endpoint (e.g. to learn the dimension). Idempotent."""
        ...

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Shape (len(texts), dimension), rows L2-normalised. Never blocks the event loop."""
        ...

    async def close(self) -> None: ...
