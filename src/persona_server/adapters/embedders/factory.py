"""Chooses the embedder from settings: local ONNX by default, a remote API when a model is named."""

from __future__ import annotations

from persona_server.adapters.embedders.local_onnx import Activations, LocalOnnxEmbedder
from persona_server.adapters.embedders.openai_compat import OpenAICompatibleEmbedder
from persona_server.ports.embedder import Embedder


def build_embedder(
    *,
    base_url: str | None,
    model: str | None,
    api_key: str | None,
    timeout_s: float = 30.0,
    local_activations: Activations = "float",
    local_spin_us: int = 0,
    local_parallel_calls: int = 1,
    local_fused: bool = True,
) -> Embedder:
    """The local model unless `model` names a remote one.

    `base_url` alone does not switch to the remote embedder: it may be shared with the LLM
    settings, and embeddings must not change model (and invalidate stored vectors) just
    because an LLM endpoint was configured. Both adapters have an async `start()` that loads
    the model or probes the dimension; call it at start-up to fail fast.
    """
    if model:
        return OpenAICompatibleEmbedder(
            base_url=base_url, model=model, api_key=api_key, timeout_s=timeout_s
        )
    return LocalOnnxEmbedder(
        activations=local_activations,
        spin_us=local_spin_us,
        parallel_calls=local_parallel_calls,
        fused=local_fused,
    )
