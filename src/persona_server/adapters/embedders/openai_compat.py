"""Embeddings from any OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama, vLLM, TEI).

`base_url` follows the OpenAI convention and includes the API version prefix, e.g.
`https://api.openai.com/v1` or `http://localhost:11434/v1`; requests go to `{base_url}/embeddings`.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from persona_server.ports.embedder import EmbedderUnavailableError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_BATCH_SIZE = 128
# 4xx answers that mean "not now" rather than "never": timeouts at a proxy, rate limits.
_RETRYABLE_STATUS = frozenset({408, 425, 429})


class EmbedderRejectedError(EmbedderUnavailableError):
    """The backend answered but refused or garbled the request (bad key, unknown model,
    malformed or wrongly sized vectors). Retrying the same request will not help; the
    embedder stays unavailable until it is reconfigured."""


class OpenAICompatibleEmbedder:
    """The `Embedder` port over HTTP.

    `dimension` may be omitted: `start()` (or the first `embed`) then asks the server once.
    Every response is L2-normalised here because not every server normalises (TEI and
    Ollama depend on the model and flags).
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        model: str,
        api_key: str | None = None,
        dimension: int | None = None,
        timeout_s: float = 30.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_concurrency: int = 4,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        if not model:
            raise ValueError("model must be set for the OpenAI-compatible embedder")
        if dimension is not None and dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self._model = model
        self._dimension = dimension
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._probe_lock = asyncio.Lock()
        self._url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/embeddings"
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        headers.update(extra_headers or {})
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=max_concurrency, max_keepalive_connections=max_concurrency
            ),
        )

    @property
    def model_id(self) -> str:
        return f"openai-compatible:{self._model}"

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            raise RuntimeError(
                "the embedding dimension is not known yet: pass dimension=..., "
                "or await start() to ask the server"
            )
        return self._dimension

    @property
    def url(self) -> str:
        return self._url

    async def start(self) -> None:
        """Discover the dimension with one probe call when it was not configured."""
        await self._ensure_dimension()

    async def _ensure_dimension(self) -> int:
        if self._dimension is not None:
            return self._dimension
        async with self._probe_lock:
            if self._dimension is None:
                vectors = await self._request(["dimension probe"], expected_dim=None)
                self._dimension = int(vectors.shape[1])
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if isinstance(texts, str):
            # A bare string is a Sequence[str] too; embedding its characters is never meant.
            raise TypeError("embed expects a sequence of strings, not a string")
        dim = await self._ensure_dimension()
        items = list(texts)
        if not items:
            return np.zeros((0, dim), dtype=np.float32)
        out = np.empty((len(items), dim), dtype=np.float32)

        async def run(start: int) -> None:
            batch = items[start : start + self._batch_size]
            async with self._semaphore:
                out[start : start + len(batch)] = await self._request(batch, expected_dim=dim)

        try:
            # A TaskGroup cancels the other batches as soon as one has failed for good.
            async with asyncio.TaskGroup() as group:
                for start in range(0, len(items), self._batch_size):
                    group.create_task(run(start))
        except BaseExceptionGroup as eg:
            first = eg.exceptions[0]
            raise first from None
        return out

    async def _request(
        self, batch: list[str], *, expected_dim: int | None
    ) -> npt.NDArray[np.float32]:
        payload = {"model": self._model, "input": batch}
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = await self._client.post(self._url, json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return _parse(response, len(batch), expected_dim)
                problem = f"HTTP {response.status_code}: {_excerpt(response)}"
                if response.status_code < 500 and response.status_code not in _RETRYABLE_STATUS:
                    raise EmbedderRejectedError(
                        f"embedding request to {self._url} (model {self._model!r}) refused: "
                        f"{problem}"
                    )
                retry_after = _retry_after_s(response)
            if attempt >= self._max_retries:
                raise EmbedderUnavailableError(
                    f"embedding endpoint {self._url} (model {self._model!r}) failed "
                    f"{attempt + 1} time(s); last error: {problem}"
                )
            await asyncio.sleep(self._backoff_s(attempt, retry_after))
            attempt += 1

    def _backoff_s(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._backoff_max_s)
        # Full jitter: clients that failed together must not retry together.
        ceiling = min(self._backoff_max_s, self._backoff_base_s * 2.0**attempt)
        return random.uniform(0.0, ceiling)

    async def close(self) -> None:
        await self._client.aclose()


def _excerpt(response: httpx.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _parse(
    response: httpx.Response, count: int, expected_dim: int | None
) -> npt.NDArray[np.float32]:
    def rejected(why: str) -> EmbedderRejectedError:
        return EmbedderRejectedError(f"malformed embeddings response from {response.url}: {why}")

    try:
        body: Any = response.json()
    except ValueError as exc:
        raise rejected(f"not JSON ({exc})") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != count:
        got = len(data) if isinstance(data, list) else type(data).__name__
        raise rejected(f"expected {count} embeddings in 'data', got {got}")
    rows: list[npt.NDArray[np.float32] | None] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict) or "embedding" not in item:
            raise rejected(f"item {position} has no 'embedding'")
        # Servers are allowed to answer out of order; 'index' is authoritative when present.
        index = item.get("index", position)
        if not isinstance(index, int) or not 0 <= index < count or rows[index] is not None:
            raise rejected(f"bad or duplicate index {index!r}")
        rows[index] = _vector(item["embedding"], rejected)
    present = [r for r in rows if r is not None]
    dim = expected_dim if expected_dim is not None else len(present[0])
    if any(len(r) != dim for r in present):
        sizes = sorted({len(r) for r in present})
        raise EmbedderRejectedError(
            f"{response.url} returned embeddings of size {sizes}, expected {dim} "
            "(the configured dimension, or the first vector's)"
        )
    vectors = np.stack(present)
    if not np.isfinite(vectors).all():
        raise rejected("non-finite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: npt.NDArray[np.float32] = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalised


def _vector(raw: Any, rejected: Callable[[str], EmbedderRejectedError]) -> npt.NDArray[np.float32]:
    if isinstance(raw, str):
        # encoding_format="base64": little-endian float32, as the OpenAI API defines it.
        try:
            return np.frombuffer(base64.b64decode(raw, validate=True), dtype="<f4").astype(
                np.float32
            )
        except ValueError as exc:
            raise rejected(f"bad base64 embedding ({exc})") from None
    if not isinstance(raw, list) or not raw:
        raise rejected("embedding is not a non-empty list of numbers")
    try:
        return np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise rejected(f"embedding is not a list of numbers ({exc})") from None
