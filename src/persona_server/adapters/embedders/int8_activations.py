"""Derive an integer-GEMM graph from the packaged all-MiniLM-L6-v2 int8 model.

The packaged model stores its 36 linear layers' weights as int8 with one scale per output
column, but dequantises them (Cast, Mul) into float MatMuls: the int8 is only on disk. The
derived graph keeps those very int8 weights and scales, bit for bit, and quantises the
*activations* to int8 instead, so each linear layer is an onnxruntime `MatMulInteger` (u8 x s8,
the VNNI/AMX kernels) rather than a float GEMM: on this project's 2-core machine one
512x384x1536 product takes 0.47 ms against 5.5 ms in float.

Activations are quantised per row (one scale per word piece, symmetric, `max|x| / 127`), not
per tensor as onnxruntime's `quantize_dynamic` does: a per-tensor scale is taken over the whole
model call, so a text's vector would depend on the texts batched with it (and on padding), and
it lost more (min cosine to the packaged vectors 0.973 on 2,000 LoCoMo turns). A handful of
outlier features (the residual stream's, a LayerNorm output at up to 30 where the rest stay
under 2, and one GELU feature per layer) would set every row's scale; they are chosen from the
weights alone and multiplied in float. Against the packaged graph on 2,000 LoCoMo turns: min
cosine 0.998, mean 0.9997, max abs difference 0.009 (without the outlier split: 0.995, 0.9976).

The derivation is a pure function of the packaged file's bytes (no download, no calibration
data); `DERIVATION` names it, and the embedder's model id includes it so that vectors of the two
graphs are never mixed in one store.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

from persona_server.adapters.embedders.onnx_graph import GraphIndex

# Bump when the derived graph (and so its vectors) changes: it is part of the model id.
DERIVATION = "rowq8-v1"

# sentence-transformers' BERT names the linear layers' biases; the MatMul feeding a bias Add is
# the layer's product. Only these are rewritten; the attention products stay float.
_LINEAR_BIAS = re.compile(
    r"layer\.(\d+)\.(attention\.self\.(query|key|value)|attention\.output\.dense"
    r"|intermediate\.dense|output\.dense)\.bias$"
)


_HIDDEN = 384
# Per LayerNorm, the features of largest |gamma| * 3 + |beta| (a LayerNorm output is about
# x_hat * gamma + beta with x_hat of unit variance per word piece); the union over the 13
# LayerNorms is 22 features and holds every feature measured above 5 on latency.py's lines
# (99 at up to 30, then 223, 63, 157, 338, 267, 127).
_OUTLIERS_PER_LAYER_NORM = 3


def outlier_features(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto]) -> list[int]:
    """The hidden features kept in float, from the LayerNorm weights alone (no data)."""
    chosen: set[int] = set()
    for node in graph.node:
        if node.op_type == "LayerNormalization":
            gamma = nh.to_array(inits[node.input[1]]).astype(np.float64)
            beta = nh.to_array(inits[node.input[2]]).astype(np.float64)
            if gamma.shape != (_HIDDEN,):
                raise DerivationError(f"{node.name}: LayerNorm is not over {_HIDDEN} features")
            magnitude = np.abs(gamma) * 3 + np.abs(beta)
            # A stable sort: ties resolve by index, so the choice is deterministic.
            order = np.argsort(-magnitude, kind="stable")
            chosen.update(int(i) for i in order[:_OUTLIERS_PER_LAYER_NORM])
    return sorted(chosen)


# Per layer, the intermediate (GELU) features with the largest max_f |W[f, j] * gamma_f|: a
# LayerNorm outlier feature times a large weight makes a large pre-activation. Measured on
# latency.py's lines, each of layers 0-3 has one GELU output at 14-24 where the others stay
# under 6.6, and this ranks each of them first.
_OUTLIERS_PER_INTERMEDIATE = 4


def intermediate_outliers(
    node: onnx.NodeProto,
    linears: dict[int, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]],
    producer: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
) -> list[int]:
    """The GELU features kept in float for one layer's output product."""
    layer_norm = producer.get(node.input[0])
    if layer_norm is None or layer_norm.op_type != "LayerNormalization":
        raise DerivationError(f"{node.name}: intermediate product does not read a LayerNorm")
    weight, scale = linears[id(node)]
    gamma = nh.to_array(inits[layer_norm.input[1]]).astype(np.float64)
    reach = np.abs(weight.astype(np.float64) * scale.astype(np.float64) * gamma[:, None]).max(0)
    order = np.argsort(-reach, kind="stable")
    return sorted(int(i) for i in order[:_OUTLIERS_PER_INTERMEDIATE])


class DerivationError(RuntimeError):
    """The packaged graph does not have the shape this derivation expects."""


def derive(model_bytes: bytes) -> bytes:
    """The row-quantised graph of the packaged model, serialised (deterministic)."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    index = GraphIndex.of(graph)
    inits, producer, consumers = index.inits, index.producer, index.consumers

    def linear_role(node: onnx.NodeProto) -> tuple[int, str] | None:
        """(layer, role) of a linear layer's MatMul, None for any other node."""
        if node.op_type != "MatMul":
            return None
        for user in consumers[node.output[0]]:
            for name in user.input:
                found = _LINEAR_BIAS.search(name)
                if found:
                    return int(found.group(1)), found.group(2)
        return None

    constants: dict[str, np.ndarray[Any, Any]] = {
        "rowq_eps": np.array(1e-12, np.float32),
        "rowq_127": np.array(127.0, np.float32),
        # round(x) + 128 as floor(x + 128.5): the Cast to uint8 truncates, and x + 128.5 lies
        # in [1.5, 255.5], so every code is in [1, 255] around the zero point 128.
        "rowq_offset": np.array(128.5, np.float32),
        "rowq_zero_point": np.array(128, np.uint8),
    }
    quantised: dict[str, tuple[str, str, str | None]] = {}
    nodes: list[onnx.NodeProto] = []

    def quantise(name: str, outliers: list[int] | None) -> tuple[str, str, str | None]:
        # Q, K and V read the same LayerNorm output: it is quantised once.
        if name in quantised:
            return quantised[name]
        p = f"rowq/{name}"
        source, outlier_part = name, None
        if outliers:
            # A few features far above the rest (up to 30 where the others stay under 2)
            # would set every row's scale: they go through a small float product instead.
            source, outlier_part = f"{p}/inliers", f"{p}/outliers"
            width = int(widths[name])
            keep = np.ones(width, np.float32)
            keep[outliers] = 0.0
            constants[f"{p}/keep"] = keep
            constants[f"{p}/outlier_index"] = np.array(outliers, np.int64)
            nodes.extend(
                [
                    helper.make_node("Mul", [name, f"{p}/keep"], [source]),
                    helper.make_node(
                        "Gather", [name, f"{p}/outlier_index"], [outlier_part], axis=-1
                    ),
                ]
            )
        nodes.extend(
            [
                helper.make_node("Abs", [source], [f"{p}/abs"]),
                helper.make_node("ReduceMax", [f"{p}/abs"], [f"{p}/amax"], axes=[-1], keepdims=1),
                helper.make_node("Max", [f"{p}/amax", "rowq_eps"], [f"{p}/amax_clamped"]),
                helper.make_node("Div", [f"{p}/amax_clamped", "rowq_127"], [f"{p}/scale"]),
                helper.make_node("Div", ["rowq_127", f"{p}/amax_clamped"], [f"{p}/inv_scale"]),
                helper.make_node("Mul", [source, f"{p}/inv_scale"], [f"{p}/scaled"]),
                helper.make_node("Add", [f"{p}/scaled", "rowq_offset"], [f"{p}/shifted"]),
                helper.make_node("Cast", [f"{p}/shifted"], [f"{p}/u8"], to=TensorProto.UINT8),
            ]
        )
        quantised[name] = (f"{p}/u8", f"{p}/scale", outlier_part)
        return quantised[name]

    # First the linear layers and their int8 weights, grouped by the activation they read.
    linears: dict[int, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    groups: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    removed: set[int] = set()
    roles: dict[tuple[int, str], onnx.NodeProto] = {}
    for node in graph.node:
        role = linear_role(node)
        if role is None:
            continue
        roles[role] = node
        mul = producer.get(node.input[1])
        cast = producer.get(mul.input[0]) if mul is not None else None
        if (
            mul is None
            or cast is None
            or mul.op_type != "Mul"
            or cast.op_type != "Cast"
            or cast.input[0] not in inits
            or mul.input[1] not in inits
            or len(consumers[mul.output[0]]) != 1
            or len(consumers[cast.output[0]]) != 1
        ):
            raise DerivationError(f"{node.name}: weight is not Cast(int8) * scale")
        weight = nh.to_array(inits[cast.input[0]])
        scale = nh.to_array(inits[mul.input[1]])
        if weight.dtype != np.int8 or weight.ndim != 2:
            raise DerivationError(f"{node.name}: weight is not a 2-D int8 tensor")
        if scale.shape != (1, weight.shape[1]) or scale.dtype != np.float32:
            raise DerivationError(f"{node.name}: scale is not one per output column")
        linears[id(node)] = (weight, scale)
        groups[node.input[0]].append(node)
        removed.update((id(mul), id(cast)))
    if len(linears) != 36:
        # 6 layers x (Q, K, V, attention output, intermediate, output): anything else is not
        # the model this derivation was measured on.
        raise DerivationError(f"expected 36 linear layers, found {len(linears)}")

    # Which features of each quantised activation stay float, from the weights alone.
    residual_outliers = outlier_features(graph, inits)
    activation_outliers: dict[str, list[int] | None] = {}
    widths: dict[str, int] = {}
    for (layer, kind), node in roles.items():
        weight = linears[id(node)][0]
        widths[node.input[0]] = weight.shape[0]
        fed_by = producer.get(node.input[0])
        if fed_by is not None and fed_by.op_type == "LayerNormalization":
            activation_outliers[node.input[0]] = residual_outliers
        elif kind == "output.dense":
            activation_outliers[node.input[0]] = intermediate_outliers(
                roles[(layer, "intermediate.dense")], linears, producer, inits
            )
        else:
            activation_outliers[node.input[0]] = None

    for node in graph.node:
        if id(node) not in linears:
            nodes.append(node)
            continue
        group = groups[node.input[0]]
        if node is not group[0]:
            continue  # made with the group's first member
        # Q, K and V read one activation: one product of the concatenated weights, then split
        # (fewer, larger kernels; each column is computed exactly as alone).
        weight = np.concatenate([linears[id(n)][0] for n in group], axis=1)
        scale = np.concatenate([linears[id(n)][1] for n in group], axis=1)
        outliers = activation_outliers[node.input[0]]
        codes, row_scale, outlier_part = quantise(node.input[0], outliers)
        out = node.output[0] if len(group) == 1 else f"rowq/{node.input[0]}/product"
        integer_out = out if outlier_part is None else f"{out}/integer"
        constants[f"{out}/weight"] = weight
        constants[f"{out}/weight_scale"] = scale
        nodes.extend(
            [
                helper.make_node(
                    "MatMulInteger",
                    [codes, f"{out}/weight", "rowq_zero_point"],
                    [f"{out}/i32"],
                ),
                helper.make_node("Cast", [f"{out}/i32"], [f"{out}/f32"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"{out}/f32", row_scale], [f"{out}/row_scaled"]),
                helper.make_node(
                    "Mul", [f"{out}/row_scaled", f"{out}/weight_scale"], [integer_out]
                ),
            ]
        )
        if outlier_part is not None:
            # The outlier rows of the weight, dequantised exactly as the packaged graph does.
            assert outliers is not None
            constants[f"{out}/outlier_weight"] = weight[outliers].astype(np.float32) * scale
            nodes.extend(
                [
                    helper.make_node(
                        "MatMul", [outlier_part, f"{out}/outlier_weight"], [f"{out}/float"]
                    ),
                    helper.make_node("Add", [integer_out, f"{out}/float"], [out]),
                ]
            )
        if len(group) > 1:
            sizes = np.array([linears[id(n)][0].shape[1] for n in group], np.int64)
            constants[f"{out}/sizes"] = sizes
            nodes.append(
                helper.make_node(
                    "Split", [out, f"{out}/sizes"], [n.output[0] for n in group], axis=-1
                )
            )
    kept = [n for n in nodes if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(nh.from_array(value, name) for name, value in constants.items())
    used = {name for node in graph.node for name in node.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)
