"""Embedder adapters: the real local ONNX model, and the OpenAI-compatible client over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from persona_server.adapters.embedders.factory import build_embedder
from persona_server.adapters.embedders.local_onnx import (
    DEFAULT_TOKENIZER_PATH,
    DIMENSION,
    MODEL_SHA256,
    LocalOnnxEmbedder,
    ModelFileMismatchError,
    sub_batches,
)
from persona_server.adapters.embedders.openai_compat import (
    EmbedderRejectedError,
    OpenAICompatibleEmbedder,
)
from persona_server.ports.embedder import EmbedderUnavailableError

# ---------------------------------------------------------------------------------------------
# Local ONNX model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> Iterator[LocalOnnxEmbedder]:
    embedder = LocalOnnxEmbedder()
    embedder.load()
    yield embedder
    asyncio.run(embedder.close())


def _cos(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(a @ b)


async def test_shape_dtype_and_unit_norm(local: LocalOnnxEmbedder) -> None:
    vectors = await local.embed(["hello world", "", "Persona remembers things"])
    assert vectors.shape == (3, DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert local.dimension == 384
    assert "MiniLM-L6-v2" in local.model_id
    assert "int8" in local.model_id


async def test_empty_input_gives_empty_matrix(local: LocalOnnxEmbedder) -> None:
    vectors = await local.embed([])
    assert vectors.shape == (0, DIMENSION)
    assert vectors.dtype == np.float32
    assert local.embed_sync([]).shape == (0, DIMENSION)


async def test_a_bare_string_is_refused(local: LocalOnnxEmbedder) -> None:
    with pytest.raises(TypeError):
        await local.embed("hello")


async def test_deterministic_and_independent_of_batch_company(local: LocalOnnxEmbedder) -> None:
    text = "The user prefers green tea over coffee."
    first = await local.embed([text])
    second = await local.embed([text])
    assert np.array_equal(first, second)
    # Padded beside a much longer text, the attention mask must keep the result unchanged.
    padded = await local.embed(["filler words " * 60, text])
    np.testing.assert_allclose(padded[1], first[0], atol=1e-5)


async def test_order_is_preserved_across_length_sorted_batches() -> None:
    embedder = LocalOnnxEmbedder(batch_size=3)
    try:
        texts = [("word " * n).strip() + f" #{n}" for n in (40, 1, 17, 3, 60, 2, 9, 25, 5, 33, 1)]
        together = await embedder.embed(texts)
        one_by_one = np.vstack([await embedder.embed([t]) for t in texts])
        np.testing.assert_allclose(together, one_by_one, atol=1e-5)
        # And not just equal by accident: the rows differ from each other.
        assert _cos(together[0], together[1]) < 0.99
    finally:
        await embedder.close()


async def test_semantic_sanity(local: LocalOnnxEmbedder) -> None:
    fact, where, pizza = await local.embed(
        [
            "I moved to Lisbon in March",
            "where does the user live",
            "my favourite pizza topping is pineapple",
        ]
    )
    assert _cos(fact, where) > _cos(fact, pizza)


def test_matches_sentence_transformers_reference(local: LocalOnnxEmbedder) -> None:
    # First values of sentence-transformers/all-MiniLM-L6-v2 (fp32, torch) for the model card's
    # example sentence; int8 weights move each by a few thousandths at most.
    reference = np.array(
        [0.06765692, 0.06349586, 0.04871307, 0.07930496, 0.03744796, 0.00265271, 0.03937488]
    )
    vector = local.embed_sync(["This is an example sentence"])[0]
    np.testing.assert_allclose(vector[: len(reference)], reference, atol=0.01)


def test_truncates_at_256_word_pieces(local: LocalOnnxEmbedder) -> None:
    head = " ".join(f"w{i % 50}" for i in range(400))
    a, b, c = local.embed_sync([head, head + " completely different ending", "w0 w1 w2"])
    # Everything past the 256th word piece is cut, so the two long texts embed identically.
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, c, atol=1e-3)


async def test_five_hundred_short_texts(local: LocalOnnxEmbedder) -> None:
    texts = [f"note {i}: bought {i % 13} apples at the market" for i in range(500)]
    vectors = await local.embed(texts)
    assert vectors.shape == (500, DIMENSION)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[123], local.embed_sync([texts[123]])[0], atol=1e-5)


async def test_inference_does_not_block_the_event_loop(local: LocalOnnxEmbedder) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    try:
        await local.embed([f"sentence number {i} about nothing much" for i in range(300)])
    finally:
        done.set()
        await task
    assert ticks >= 5


async def test_closed_embedder_refuses_work() -> None:
    embedder = LocalOnnxEmbedder()
    await embedder.start()
    await embedder.close()
    with pytest.raises(RuntimeError, match="closed"):
        await embedder.embed(["x"])


def test_wrong_model_file_is_a_clear_error(tmp_path: Path) -> None:
    wrong = tmp_path / "model.onnx"
    wrong.write_bytes(b"definitely not the pinned ONNX model")
    actual = hashlib.sha256(wrong.read_bytes()).hexdigest()
    embedder = LocalOnnxEmbedder(model_path=wrong)
    with pytest.raises(ModelFileMismatchError) as info:
        embedder.embed_sync(["hello"])
    message = str(info.value)
    assert str(wrong) in message
    assert MODEL_SHA256 in message
    assert actual in message


def test_altered_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    altered = tmp_path / "tokenizer.json"
    shutil.copyfile(DEFAULT_TOKENIZER_PATH, altered)
    with altered.open("a") as fh:
        fh.write("\n")
    embedder = LocalOnnxEmbedder(tokenizer_path=altered)
    with pytest.raises(ModelFileMismatchError, match=r"tokenizer\.json"):
        embedder.load()


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        LocalOnnxEmbedder(batch_size=0)
    with pytest.raises(ValueError):
        LocalOnnxEmbedder(max_seq_length=1000)
    with pytest.raises(ValueError):
        LocalOnnxEmbedder(max_batch_tokens=0)


def test_sub_batches_bound_texts_and_padded_word_pieces() -> None:
    lengths = [30, 5, 12, 5, 200, 7, 12, 40]
    groups = sub_batches(lengths, max_texts=3, max_tokens=40)
    # Every index once, ascending length across and within calls.
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    for group in groups:
        width = max(lengths[i] for i in group)
        assert len(group) <= 3
        # A text longer than the budget still gets a call of its own.
        assert len(group) * width <= 40 or len(group) == 1
    # 5, 5, 7 fit (3 x 7 = 21); 12, 12 (24; a third, 30, would pad to 90); 30 alone; 40; 200.
    assert [[lengths[i] for i in g] for g in groups] == [[5, 5, 7], [12, 12], [30], [40], [200]]
    assert sub_batches([], max_texts=3, max_tokens=40) == []


async def test_vectors_do_not_depend_on_how_a_batch_is_split(local: LocalOnnxEmbedder) -> None:
    # The grouping is a speed setting only: the stored vectors must not change with it.
    texts = [
        ("On 3 May 2023, Caroline said: " + "I went hiking near the lake again " * n).strip()
        for n in (1, 9, 2, 30, 4, 1, 14, 6, 3, 22, 8, 1, 5, 11)
    ]
    reference = LocalOnnxEmbedder(batch_size=64, max_batch_tokens=1 << 30)
    tight = LocalOnnxEmbedder(batch_size=2, max_batch_tokens=64)
    try:
        expected = reference.embed_sync(texts)
        np.testing.assert_allclose(local.embed_sync(texts), expected, atol=1e-5)
        np.testing.assert_allclose(tight.embed_sync(texts), expected, atol=1e-5)
        one_by_one = np.vstack([reference.embed_sync([t]) for t in texts])
        np.testing.assert_allclose(one_by_one, expected, atol=1e-5)
    finally:
        await reference.close()
        await tight.close()


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible client against a real local HTTP server
# ---------------------------------------------------------------------------------------------

Reply = tuple[int, Any, dict[str, str]]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _vector_for(text: str) -> list[float]:
    # Deliberately not unit length: the client must normalise.
    return [float(len(text) + 1), 2.0, -3.0]


def ok(body: dict[str, Any], *, reverse: bool = False) -> Reply:
    items = [
        {"object": "embedding", "index": i, "embedding": _vector_for(t)}
        for i, t in enumerate(body["input"])
    ]
    if reverse:
        items.reverse()
    return 200, {"object": "list", "data": items, "model": body["model"]}, {}


@dataclass
class ScriptedServer:
    """Answers each POST with the next scripted reply; the last one repeats forever."""

    script: list[Callable[[dict[str, Any]], Reply]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, recorded: Recorded) -> Reply:
        with self.lock:
            self.requests.append(recorded)
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return step(recorded.body)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer(script=[ok])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            status, payload, headers = scripted.next_reply(recorded)
            raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    scripted.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield scripted
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _client(server: ScriptedServer, **kwargs: Any) -> OpenAICompatibleEmbedder:
    options: dict[str, Any] = {
        "base_url": server.base_url,
        "model": "text-embedding-test",
        "api_key": "sk-test-123",
        "dimension": 3,
        "timeout_s": 5.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    options.update(kwargs)
    return OpenAICompatibleEmbedder(**options)


def _unit(v: list[float]) -> npt.NDArray[np.float64]:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


async def test_success_is_normalised_ordered_and_authenticated(server: ScriptedServer) -> None:
    server.script = [lambda body: ok(body, reverse=True)]
    embedder = _client(server)
    try:
        vectors = await embedder.embed(["a", "bbbb", "cc"])
    finally:
        await embedder.close()
    assert vectors.shape == (3, 3)
    assert vectors.dtype == np.float32
    for row, text in zip(vectors, ["a", "bbbb", "cc"], strict=True):
        np.testing.assert_allclose(row, _unit(_vector_for(text)), atol=1e-6)
    (request,) = server.requests
    assert request.path == "/v1/embeddings"
    assert request.headers["authorization"] == "Bearer sk-test-123"
    assert request.body == {"model": "text-embedding-test", "input": ["a", "bbbb", "cc"]}
    assert embedder.model_id == "openai-compatible:text-embedding-test"


async def test_no_authorization_header_without_a_key(server: ScriptedServer) -> None:
    embedder = _client(server, api_key=None)
    try:
        await embedder.embed(["x"])
    finally:
        await embedder.close()
    assert "authorization" not in server.requests[0].headers


async def test_dimension_is_discovered_by_one_probe(server: ScriptedServer) -> None:
    embedder = _client(server, dimension=None)
    try:
        with pytest.raises(RuntimeError, match="dimension"):
            _ = embedder.dimension
        await embedder.start()
        assert embedder.dimension == 3
        assert (await embedder.embed([])).shape == (0, 3)
        await embedder.embed(["x"])
    finally:
        await embedder.close()
    assert len(server.requests) == 2  # the probe, then the real call; no second probe


async def test_429_is_retried_then_succeeds(server: ScriptedServer) -> None:
    server.script = [
        lambda body: (429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
        ok,
    ]
    embedder = _client(server)
    try:
        vectors = await embedder.embed(["hello"])
    finally:
        await embedder.close()
    assert len(server.requests) == 2
    np.testing.assert_allclose(vectors[0], _unit(_vector_for("hello")), atol=1e-6)


async def test_persistent_500_raises_unavailable_after_bounded_retries(
    server: ScriptedServer,
) -> None:
    server.script = [lambda body: (500, {"error": {"message": "boom"}}, {})]
    embedder = _client(server, max_retries=3)
    try:
        with pytest.raises(EmbedderUnavailableError, match="HTTP 500") as info:
            await embedder.embed(["hello"])
    finally:
        await embedder.close()
    assert not isinstance(info.value, EmbedderRejectedError)
    assert len(server.requests) == 4


async def test_401_is_not_retried(server: ScriptedServer) -> None:
    server.script = [lambda body: (401, {"error": {"message": "bad key"}}, {})]
    embedder = _client(server)
    try:
        with pytest.raises(EmbedderRejectedError, match="bad key"):
            await embedder.embed(["hello"])
    finally:
        await embedder.close()
    assert len(server.requests) == 1


async def test_batches_keep_order(server: ScriptedServer) -> None:
    texts = [f"text number {'x' * i}" for i in range(7)]
    embedder = _client(server, batch_size=2, max_concurrency=3)
    try:
        vectors = await embedder.embed(texts)
    finally:
        await embedder.close()
    assert len(server.requests) == 4
    assert all(len(r.body["input"]) <= 2 for r in server.requests)
    for row, text in zip(vectors, texts, strict=True):
        np.testing.assert_allclose(row, _unit(_vector_for(text)), atol=1e-6)


async def test_wrong_dimension_is_rejected(server: ScriptedServer) -> None:
    embedder = _client(server, dimension=1536)
    try:
        with pytest.raises(EmbedderRejectedError, match="1536"):
            await embedder.embed(["hello"])
    finally:
        await embedder.close()


async def test_malformed_body_is_rejected(server: ScriptedServer) -> None:
    server.script = [lambda body: (200, "<html>proxy error</html>", {})]
    embedder = _client(server)
    try:
        with pytest.raises(EmbedderRejectedError, match="not JSON"):
            await embedder.embed(["hello"])
    finally:
        await embedder.close()


async def test_timeout_is_retried_then_unavailable(server: ScriptedServer) -> None:
    def slow(body: dict[str, Any]) -> Reply:
        time.sleep(0.5)
        return ok(body)

    server.script = [slow]
    embedder = _client(server, timeout_s=0.1, max_retries=1)
    try:
        with pytest.raises(EmbedderUnavailableError, match="Timeout"):
            await embedder.embed(["hello"])
    finally:
        await embedder.close()
    assert len(server.requests) == 2


async def test_connection_refused_is_unavailable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there any more.
    embedder = OpenAICompatibleEmbedder(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        dimension=3,
        max_retries=2,
        backoff_base_s=0.01,
    )
    try:
        with pytest.raises(EmbedderUnavailableError, match="3 time"):
            await embedder.embed(["hello"])
    finally:
        await embedder.close()


# ---------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------


async def test_factory_chooses_by_model() -> None:
    local = build_embedder(base_url="http://llm.example/v1", model=None, api_key="k")
    assert isinstance(local, LocalOnnxEmbedder)
    remote = build_embedder(
        base_url="http://127.0.0.1:9/v1", model="nomic-embed-text", api_key=None
    )
    try:
        assert isinstance(remote, OpenAICompatibleEmbedder)
        assert remote.model_id == "openai-compatible:nomic-embed-text"
        assert remote.url == "http://127.0.0.1:9/v1/embeddings"
    finally:
        await remote.close()
        await local.close()
