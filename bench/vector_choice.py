"""Exact numpy over a cached per-user matrix vs sqlite-vec, for per-user vector search.

    python bench/vector_choice.py --out /tmp/vector_choice.json [--sizes 10000,100000]

Why this exists: the memory-engine issue asks to measure both and choose. The project's Python
(the stdlib `sqlite3` of this CPython build) cannot load SQLite extensions
(`Connection.enable_load_extension` is missing), so sqlite-vec is measured through `apsw`, which
bundles its own SQLite; both are optional here (`pip install sqlite-vec apsw`), not project
dependencies. Each size: one user's random 384-d unit vectors, 200 queries, top 60, p50/p95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

DIM = 384
K = 60


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p95": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
    }


def numpy_exact(matrix: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    times = []
    for q in queries:
        started = time.perf_counter()
        scores = matrix @ q
        top = np.argpartition(-scores, K)[:K]
        top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - started)
    return _stats(times)


def sqlite_vec(matrix: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    try:
        import apsw
        import sqlite_vec as sv
    except ImportError as exc:
        return {"skipped": f"needs sqlite-vec and apsw installed: {exc}"}
    conn = apsw.Connection(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(sv.loadable_path())
    # A partition key keeps one user's rows together, as a per-user search needs.
    conn.execute(
        f"CREATE VIRTUAL TABLE v USING vec0(user_key integer partition key, "
        f"embedding float[{DIM}] distance_metric=cosine)"
    )
    started = time.perf_counter()
    with conn:
        conn.executemany(
            "INSERT INTO v (rowid, user_key, embedding) VALUES (?, 1, ?)",
            ((i + 1, row.tobytes()) for i, row in enumerate(matrix)),
        )
    load_s = time.perf_counter() - started
    times = []
    for q in queries:
        started = time.perf_counter()
        list(
            conn.execute(
                "SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = ? AND user_key = 1",
                (q.tobytes(), K),
            )
        )
        times.append(time.perf_counter() - started)
    return {**_stats(times), "insert_s": round(load_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    report: dict[str, Any] = {"k": K, "dimension": DIM, "sizes": {}}
    for size in (int(s) for s in args.sizes.split(",")):
        matrix = rng.standard_normal((size, DIM)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        queries = rng.standard_normal((200, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        row = {
            "numpy_exact_ms": numpy_exact(matrix, queries),
            "sqlite_vec_ms": sqlite_vec(matrix, queries),
        }
        report["sizes"][str(size)] = row
        print(size, json.dumps(row), file=sys.stderr)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
