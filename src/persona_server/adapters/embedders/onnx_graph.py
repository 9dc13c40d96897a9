"""Look-ups over an ONNX graph that the derivations (`fused_graph`, `int8_activations`) share."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import onnx


@dataclass(frozen=True)
class GraphIndex:
    """A graph's initializers by name, each value's producing node and its consumers."""

    inits: dict[str, onnx.TensorProto]
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> GraphIndex:
        consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                consumers[name].append(node)
        return cls(
            inits={t.name: t for t in graph.initializer},
            producer={out: node for node in graph.node for out in node.output},
            consumers=consumers,
        )
