"""Full-text search at scale with and without the common-term cap, measured side by side.

    .venv/bin/python bench/fulltext_cap.py --out /tmp/fulltext_cap.json [--size 100000]

Builds one user of `--size` episodes in a temporary embedded store from `bench/latency.py`'s
text generator (random vectors: only full-text is measured), reopens it, then runs
`latency.py`'s 200 fixed queries through `SearchOps.text` (k = 60, Recall's depth), alternating
for every query between the cap as shipped (`search.COMMON_TERM_ROWS`) and no cap, so machine
load hits both alike.
LoCoMo recall is unaffected by construction: no dev user holds 2,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import latency
import numpy as np
from _server import percentile

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.adapters.stores.sqlite import search as sqlite_search
from persona_server.domain.ids import new_id
from persona_server.domain.models import Episode, MemoryType, UserRef
from persona_server.ports.graph_store import MemoryFilter

USER = UserRef(tenant="bench", user_id="u")
BATCH = 1000
DEPTH = 60
NO_CAP = 10**12


async def fill(store: SqliteGraphStore, size: int) -> None:
    texts = latency.texts(latency.SEED)
    rng = np.random.default_rng(latency.SEED)
    for start in range(0, size, BATCH):
        episodes = []
        for k in range(start, min(size, start + BATCH)):
            when = latency.FIRST_DAY + timedelta(minutes=10 * k)
            episodes.append(
                Episode(
                    id=new_id(MemoryType.EPISODE),
                    text=next(texts),
                    occurred_at=when,
                    recorded_at=when,
                    source_id=f"s{k}",
                    speaker="me",
                )
            )
        vectors = rng.standard_normal((len(episodes), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        await store.episodes.put_batch(USER, episodes, vectors, replace=False)


async def run(size: int) -> dict[str, Any]:
    shipped = sqlite_search.COMMON_TERM_ROWS
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "persona.db"
        store = SqliteGraphStore(path)
        await store.open(embedding_model="bench", dimension=384)
        await fill(store, size)
        # Reopened: closing checkpoints the write-ahead log, as a running server's automatic
        # checkpoints do; reading 100k fresh rows through the log measures the log instead.
        await store.close()
        store = SqliteGraphStore(path)
        await store.open(embedding_model="bench", dimension=384)
        try:
            queries = latency.queries(latency.SEED + 1, latency.QUERIES)
            caps = {"capped": shipped, "uncapped": NO_CAP}
            samples: dict[str, list[float]] = {name: [] for name in caps}
            for q in queries[:10]:  # warm the page cache
                await store.search.text(USER, q, DEPTH, MemoryFilter())
            for q in queries:
                for name, cap in caps.items():
                    sqlite_search.COMMON_TERM_ROWS = cap
                    started = time.perf_counter()
                    await store.search.text(USER, q, DEPTH, MemoryFilter())
                    samples[name].append((time.perf_counter() - started) * 1000)
        finally:
            sqlite_search.COMMON_TERM_ROWS = shipped
            await store.close()
    return {
        "size": size,
        "cap_rows": shipped,
        "queries": len(queries),
        "text_search_ms": {
            name: {f"p{q}": round(percentile(v, q / 100), 2) for q in (50, 95, 99)}
            for name, v in samples.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = asyncio.run(run(args.size))
    for name, stats in report["text_search_ms"].items():
        print(f"{name:>9}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in stats.items()))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
