"""Local embedder settings A/B: sub-batch size and threads, alternated round by round.

    python bench/embed_batching.py [--texts 1000] [--rounds 5] [--variants b64,b32,b16,b8]
        [--locomo ../shared/locomo/dev] [--out F.json]

Embeds the texts Ingest embeds (`bench/latency.py`'s lines rendered as `embedding_text`, or
with --locomo the dev conversations' turns) in calls of 100, as one Ingest batch does, once per
variant per round, the variants alternated so that the machine's load hits them alike. A
variant is a list of settings (`parse_variant`: `b16` 16 texts a call, `t512` 512 padded word
pieces a call, `x1` one thread, `s100` workers spin 100 us, `p2` two calls at once of one
thread each, `q` the int8-activation graph, `u` the packaged float graph unfused; e.g.
`b64t512x1`, `b32qs100`, `b32qp2`, `b32u`).
Prints texts/s (median over rounds, wall and process CPU time) and the largest difference of
each variant's vectors from the first's.
Timing figures: run under `flock /tmp/persona-bench.lock` (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from latency import FIRST_DAY, SEED, texts

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.domain.models import Episode, ExtractionStatus, SourceType
from persona_server.services.ingest import embedding_text

CALL = 100


def _rendered(text: str, speaker: str, i: int, when: Any) -> str:
    episode = Episode(
        id=f"ep_{i}",
        text=text,
        occurred_at=when,
        recorded_at=when,
        source_id=f"s{i}",
        source_type=SourceType.CHAT_MESSAGE,
        speaker=speaker,
        extraction=ExtractionStatus(updated_at=when),
    )
    return embedding_text(episode)


def synthetic(n: int) -> list[str]:
    stream = texts(SEED)
    return [
        _rendered(next(stream), "me", i, FIRST_DAY + timedelta(minutes=10 * i)) for i in range(n)
    ]


def locomo(data_dir: Path, n: int) -> list[str]:
    from locomo import load

    out: list[str] = []
    for conv in load(data_dir):
        for t in conv.turns:
            out.append(_rendered(t.ingest_text, t.speaker, len(out), t.occurred_at))
    return out[:n]


def parse_variant(raw: str) -> dict[str, Any]:
    """`b64` (texts per call), `t512` (padded word pieces per call), `x1` (threads), `s100`
    (spin microseconds), `p2` (calls at once), `q` (int8 activations), `u` (the float graph
    as shipped, not fused), combined: `b64t512x1`, `b32qs100`, `b32qp2`, `b32u`."""
    kwargs: dict[str, Any] = {
        "activations": "int8" if "q" in raw else "float",
        "fused": "u" not in raw,
    }
    keys = {
        "b": "batch_size",
        "t": "max_batch_tokens",
        "x": "intra_op_threads",
        "s": "spin_us",
        "p": "parallel_calls",
    }
    for key, value in re.findall(r"([btxsp])(\d+)", raw):
        kwargs[keys[key]] = int(value)
    return kwargs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", default="b64,b32,b16,b8")
    parser.add_argument("--locomo", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    corpus = locomo(args.locomo, args.texts) if args.locomo else synthetic(args.texts)
    names = args.variants.split(",")
    embedders = {}
    for name in names:
        embedder = LocalOnnxEmbedder(**parse_variant(name))
        embedder.load()
        embedder.embed_sync(corpus[:CALL])  # warm-up: first runs allocate arenas
        embedders[name] = embedder
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, np.ndarray[Any, Any]] = {}
    for _ in range(args.rounds):
        for name in names:
            started, started_cpu = time.perf_counter(), time.process_time()
            out = [
                embedders[name].embed_sync(corpus[i : i + CALL])
                for i in range(0, len(corpus), CALL)
            ]
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
            vectors[name] = np.concatenate(out)
    first = vectors[names[0]]
    report: dict[str, Any] = {
        "data": "locomo" if args.locomo else "latency.py synthetic",
        "texts": len(corpus),
        "call": CALL,
        "rounds": args.rounds,
        "variants": {},
    }
    for name in names:
        report["variants"][name] = {
            "texts_per_s_wall": round(len(corpus) / statistics.median(wall[name]), 1),
            "texts_per_s_wall_best": round(len(corpus) / min(wall[name]), 1),
            "cpu_s_per_1000": round(1000 * statistics.median(cpu[name]) / len(corpus), 3),
            "max_abs_diff_vs_first": float(np.abs(vectors[name] - first).max()),
        }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
