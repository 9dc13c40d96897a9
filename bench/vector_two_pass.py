"""Two-pass vector search (vector_matrix.py) against exact search, side by side in one process.

    .venv/bin/python bench/vector_two_pass.py --out /tmp/vector_two_pass.json
        [--corpus 30000] [--size 100000] [--vectors /tmp/two_pass_vectors.npz]

Embeds `--corpus` of `bench/latency.py`'s lines and its 200 queries with the local model
(minutes; `--vectors` keeps them for the next run), then:

- quality: for every query, the share of the two-pass top k scoring at least the exact k-th
  score (ties make ids a poor measure: the synthetic lines repeat), for k = 60 (Recall's depth)
  over the corpus as it is, and for the 100k proportions scaled to the corpus (k and the
  re-scored depth shrunk by corpus / 100k);
- speed: `--size` rows (the corpus repeated with 1% noise), exact and two-pass search
  alternated query by query so that machine load hits both, p50 / p95 over three rounds; and
  the one-off fit (the first search of a matrix, or after it has doubled);
- with `--recall`: whole Recall calls in process (query embedding, full-text, vector search,
  expansion, passages) over an embedded store of `--size` of latency.py's lines (their vectors:
  the corpus's, repeated with 1% noise past it), two-pass and exact alternated query by query.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import latency
import numpy as np
import numpy.typing as npt

from persona_server.adapters.embedders.local_onnx import MODEL_ID, LocalOnnxEmbedder
from persona_server.adapters.stores import vector_matrix
from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.adapters.stores.vector_matrix import UserVectors
from persona_server.domain.ids import new_id
from persona_server.domain.models import Episode, MemoryType, UserRef
from persona_server.extraction.offline.query_time import query_time_spans
from persona_server.ports.graph_store import MemoryFilter
from persona_server.services.commands import RecallQuery
from persona_server.services.recall import RecallService

Matrix = npt.NDArray[np.float32]
K = 60


def vectors(corpus: int, cache: Path | None) -> tuple[Matrix, Matrix]:
    if cache and cache.exists():
        found = np.load(cache)
        return found["rows"], found["queries"]
    embedder = LocalOnnxEmbedder()
    lines = list(itertools.islice(latency.texts(latency.SEED), corpus))
    rows = np.concatenate(
        [embedder.embed_sync(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
    )
    queries = embedder.embed_sync(latency.queries(latency.SEED, latency.QUERIES))
    if cache:
        np.savez(cache, rows=rows, queries=queries)
    return rows, queries


def matrix_of(rows: Matrix) -> UserVectors:
    n, dimension = rows.shape
    uv = UserVectors(dimension, capacity=n)
    uv.ids = [f"m{i}" for i in range(n)]
    uv.pos = {memory_id: i for i, memory_id in enumerate(uv.ids)}
    uv.matrix[:n] = rows
    uv.n = n
    return uv


def exact(uv: UserVectors, q: Matrix, k: int) -> list[tuple[str, float]]:
    return uv._exact(q, k, uv.mask(MemoryFilter()), uv.n)


def score_recall(uv: UserVectors, queries: Matrix, k: int, depth: int) -> dict[str, float]:
    shipped = vector_matrix.rescored
    vector_matrix.rescored = lambda _k: depth  # type: ignore[assignment]
    try:
        shares = []
        for q in queries:
            kth = exact(uv, q, k)[-1][1]
            found = uv.search(q, k, MemoryFilter())
            shares.append(sum(score >= kth - 1e-6 for _, score in found) / k)
    finally:
        vector_matrix.rescored = shipped
    return {"k": k, "rescored": depth, "mean": float(np.mean(shares)), "min": min(shares)}


def speed(rows: Matrix, queries: Matrix, size: int) -> dict[str, Any]:
    uv = matrix_of(noisy(rows, size))
    started = time.perf_counter()
    uv.search(queries[0], K, MemoryFilter())
    fit_ms = (time.perf_counter() - started) * 1000
    times: dict[str, list[float]] = {"exact": [], "two_pass": []}
    for _ in range(3):
        for q in queries:
            started = time.perf_counter()
            exact(uv, q, K)
            times["exact"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            uv.search(q, K, MemoryFilter())
            times["two_pass"].append((time.perf_counter() - started) * 1000)
    return {
        "rows": size,
        "two_pass_used": uv._basis is not None,
        "fit_ms": round(fit_ms),
        **{
            name: {
                "p50": round(float(np.percentile(t, 50)), 1),
                "p95": round(float(np.percentile(t, 95)), 1),
            }
            for name, t in times.items()
        },
    }


def noisy(rows: Matrix, size: int) -> Matrix:
    rng = np.random.default_rng(1)
    big = rows[np.arange(size) % len(rows)] + 0.01 * rng.standard_normal(
        (size, rows.shape[1])
    ).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    return big


async def recall_ab(rows: Matrix, size: int) -> dict[str, Any]:
    user = UserRef(tenant="bench", user_id="u")
    big = noisy(rows, size)
    texts = latency.texts(latency.SEED)
    shipped = vector_matrix.REDUCED_MIN_ROWS
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "persona.db"
        store = SqliteGraphStore(path)
        await store.open(embedding_model=MODEL_ID, dimension=big.shape[1])
        for start in range(0, size, 1000):
            batch = []
            for k in range(start, min(size, start + 1000)):
                when = latency.FIRST_DAY + timedelta(minutes=10 * k)
                batch.append(
                    Episode(
                        id=new_id(MemoryType.EPISODE),
                        text=next(texts),
                        occurred_at=when,
                        recorded_at=when,
                        source_id=f"s{k}",
                        speaker="me",
                    )
                )
            await store.episodes.put_batch(
                user, batch, big[start : start + len(batch)], replace=False
            )
        await store.close()  # checkpoints the log, as a running server does
        store = SqliteGraphStore(path)
        await store.open(embedding_model=MODEL_ID, dimension=big.shape[1])
        embedder = LocalOnnxEmbedder()
        service = RecallService(store, embedder, time_spans=query_time_spans)
        variants = {"two_pass": shipped, "exact": 10**12}
        times: dict[str, list[float]] = {name: [] for name in variants}
        try:
            queries = latency.queries(latency.SEED + 1, latency.QUERIES)
            for q in queries[:10]:  # loads the matrix, fits, warms the page cache
                await service.recall(RecallQuery(user=user, query=q, max_results=10))
            for q in queries:
                for name, threshold in variants.items():
                    vector_matrix.REDUCED_MIN_ROWS = threshold
                    started = time.perf_counter()
                    await service.recall(RecallQuery(user=user, query=q, max_results=10))
                    times[name].append((time.perf_counter() - started) * 1000)
        finally:
            vector_matrix.REDUCED_MIN_ROWS = shipped
            await store.close()
            await embedder.close()
    return {
        "rows": size,
        **{
            name: {
                "p50": round(float(np.percentile(t, 50)), 1),
                "p95": round(float(np.percentile(t, 95)), 1),
            }
            for name, t in times.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=int, default=30000)
    parser.add_argument("--size", type=int, default=100000)
    parser.add_argument("--vectors", type=Path, help="cache of the embedded corpus (.npz)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--recall", action="store_true", help="also whole Recall calls, A/B")
    args = parser.parse_args()
    rows, queries = vectors(args.corpus, args.vectors)
    uv = matrix_of(rows)
    uv._fit()
    scaled = max(1, round(K * args.corpus / 100_000))
    report = {
        "corpus": len(rows),
        "projection_energy_ok": uv._basis is not None,
        "quality": [
            score_recall(uv, queries, K, vector_matrix.rescored(K)),
            score_recall(uv, queries, scaled, vector_matrix.rescored(scaled)),
            score_recall(uv, queries, scaled, 10 * scaled),
        ],
        "speed": speed(rows, queries, args.size),
    }
    if args.recall:
        report["recall_ms"] = asyncio.run(recall_ab(rows, args.size))
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
