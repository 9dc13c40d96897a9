"""Fuse the packaged all-MiniLM-L6-v2 graph's attention and GELU into onnxruntime's kernels.

The packaged model is a torch export: each layer's self-attention is some thirty small nodes
(three products, Reshape, Transpose, two scalings, a mask `Where`, Softmax, a NaN guard), and
each GELU is five elementwise nodes after a bias `Add`. onnxruntime's own graph optimiser does
not recognise either pattern in this export: on the 2-core machine the small nodes took 42% of
the kernel time on Ingest's texts, the float products 58% (an onnxruntime profile, BENCHMARKS.md).

`derive` rewrites the graph so that each layer's attention is one `com.microsoft.Attention`
node (the Q, K and V weights packed into one product, the mask as the raw attention mask) and
each GELU one `com.microsoft.BiasGelu`. It is the same function: the packed weights are the
packaged int8 weights and column scales, dequantised by the same Cast and Mul; the mask hides
the same keys; GELU is the exact erf form. Only the order of float operations changes, so the
vectors agree with the packaged graph's to float rounding (2e-7 at most on 2,000 LoCoMo turns;
tested under 1e-5), and the embedder keeps the packaged model id: a store built with either
graph reads the other's vectors as its own. On 2 cores it embeds 16-19% more texts per second
(bench/embed_batching.py, `u`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

from persona_server.adapters.embedders.onnx_graph import GraphIndex

_HEADS = 12
_HIDDEN = 384
_LAYERS = 6
_BIAS = re.compile(
    r"layer\.(\d+)\.(attention\.self\.(?:query|key|value)|attention\.output\.dense"
    r"|intermediate\.dense)\.bias$"
)
_MASK = "fused/attention_mask_int32"


class FusionError(RuntimeError):
    """The packaged graph does not have the shape this fusion expects."""


def derive(model_bytes: bytes) -> bytes:
    """The fused graph of the packaged model, serialised (deterministic)."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    index = GraphIndex.of(graph)
    inits, producer, consumers = index.inits, index.producer, index.consumers

    def only_consumer(name: str, op_type: str) -> onnx.NodeProto:
        users = consumers[name]
        if len(users) != 1 or users[0].op_type != op_type:
            raise FusionError(f"{name} does not feed exactly one {op_type}")
        return users[0]

    def int8_weight(matmul: onnx.NodeProto) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The int8 weight and its column scales, which the packaged graph multiplies."""
        mul = producer.get(matmul.input[1])
        cast = producer.get(mul.input[0]) if mul is not None else None
        if mul is None or cast is None or mul.op_type != "Mul" or cast.op_type != "Cast":
            raise FusionError(f"{matmul.name}: weight is not Cast(int8) * scale")
        weight = nh.to_array(inits[cast.input[0]])
        scale = nh.to_array(inits[mul.input[1]])
        if weight.dtype != np.int8 or weight.shape != (_HIDDEN, scale.shape[-1]):
            raise FusionError(f"{matmul.name}: unexpected weight or scale shape")
        return weight, scale

    # Each linear layer's product, found by the bias its result is added to.
    products: dict[tuple[int, str], tuple[onnx.NodeProto, onnx.NodeProto]] = {}
    for node in graph.node:
        if node.op_type != "Add":
            continue
        for name in node.input:
            found = _BIAS.search(name)
            matmul = producer.get(node.input[0])
            if found and matmul is not None and matmul.op_type == "MatMul":
                products[(int(found.group(1)), found.group(2))] = (matmul, node)
    if len(products) != _LAYERS * 5:
        raise FusionError(f"expected {_LAYERS * 5} linear layers, found {len(products)}")

    constants: dict[str, np.ndarray[Any, Any]] = {}
    replacing: dict[str, onnx.NodeProto] = {}  # the producer of this name is replaced
    dequantise: list[onnx.NodeProto] = []
    for layer in range(_LAYERS):
        q, q_bias = products[(layer, "attention.self.query")]
        k, k_bias = products[(layer, "attention.self.key")]
        v, v_bias = products[(layer, "attention.self.value")]
        hidden = q.input[0]
        if k.input[0] != hidden or v.input[0] != hidden:
            raise FusionError(f"layer {layer}: Q, K and V do not read one input")
        # The attention output product reads the heads' context, merged back to 384 features.
        out_product, _ = products[(layer, "attention.output.dense")]
        context = out_product.input[0]
        weights = [int8_weight(n) for n in (q, k, v)]
        bias = np.concatenate(
            [nh.to_array(inits[b.input[1]]) for b in (q_bias, k_bias, v_bias)]
        ).astype(np.float32)
        # Packed, but kept int8 with the same Cast and Mul as the packaged graph's: the float
        # weights are the same numbers (one float32 product each, folded at session load),
        # and the graph stays the packaged file's size.
        p = f"fused/{layer}"
        constants[f"{p}/qkv_weight_q"] = np.concatenate([w for w, _ in weights], axis=1)
        constants[f"{p}/qkv_weight_scale"] = np.concatenate([s for _, s in weights], axis=1)
        constants[f"{p}/qkv_bias"] = bias
        dequantise.extend(
            [
                helper.make_node(
                    "Cast", [f"{p}/qkv_weight_q"], [f"{p}/qkv_weight_f"], to=TensorProto.FLOAT
                ),
                helper.make_node(
                    "Mul", [f"{p}/qkv_weight_f", f"{p}/qkv_weight_scale"], [f"{p}/qkv_weight"]
                ),
            ]
        )
        replacing[context] = helper.make_node(
            "Attention",
            [hidden, f"fused/{layer}/qkv_weight", f"fused/{layer}/qkv_bias", _MASK],
            [context],
            name=f"fused/{layer}/attention",
            domain="com.microsoft",
            num_heads=_HEADS,
        )

        # GELU(x + b) = (x + b) * 0.5 * (1 + erf((x + b) / sqrt 2)), five nodes after the Add.
        inter, inter_bias = products[(layer, "intermediate.dense")]
        biased = inter_bias.output[0]
        users = {n.op_type: n for n in consumers[biased]}
        if set(users) != {"Div", "Mul"}:
            raise FusionError(f"layer {layer}: intermediate output is not GELU's input")
        div = users["Div"]
        erf = only_consumer(div.output[0], "Erf")
        plus_one = only_consumer(erf.output[0], "Add")
        half = only_consumer(plus_one.output[0], "Mul")
        gelu = only_consumer(half.output[0], "Mul")
        if gelu is not users["Mul"]:
            raise FusionError(f"layer {layer}: GELU does not multiply its own input")
        checks = {div.input[1]: np.sqrt(2.0), plus_one.input[1]: 1.0, half.input[0]: 0.5}
        for name, expected in checks.items():
            value = inits.get(name)
            if value is None or not np.isclose(float(nh.to_array(value)), expected):
                raise FusionError(f"layer {layer}: GELU constant {name} is not {expected}")
        replacing[gelu.output[0]] = helper.make_node(
            "BiasGelu",
            [inter.output[0], inter_bias.input[1]],
            [gelu.output[0]],
            name=f"fused/{layer}/bias_gelu",
            domain="com.microsoft",
        )

    nodes = [
        # The raw mask (1 keeps a key, 0 hides it) as Attention reads it; once for all layers.
        helper.make_node("Cast", ["attention_mask"], [_MASK], to=TensorProto.INT32),
        *dequantise,
    ]
    for node in graph.node:
        fused = next((replacing[o] for o in node.output if o in replacing), None)
        nodes.append(fused if fused is not None else node)
    graph_outputs = {o.name for o in graph.output}
    # Drop what nothing reads any more (the old attention and GELU nodes, their weights'
    # dequantisation), last to first so that a chain goes in one pass.
    live: set[str] = set(graph_outputs)
    kept: list[onnx.NodeProto] = []
    for node in reversed(nodes):
        if any(o in live for o in node.output):
            kept.append(node)
            live.update(node.input)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(nh.from_array(value, name) for name, value in constants.items())
    initializers = [t for t in graph.initializer if t.name in live]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)
