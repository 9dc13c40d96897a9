"""Retention: how long expiring half of a tenant's episodes takes, and how long each batch
holds the write lock (other writers of those users wait that long at worst).

    .venv/bin/python bench/retention.py --out bench/results/retention.json
    .venv/bin/python bench/retention.py --store neo4j --out bench/results/retention_neo4j.json

With `--store neo4j` a Neo4j 5 is started for the run with the test harness
(`tests/neo4j_harness.py`, fresh temporary data directory) and stopped at the end.

A tenant of `--users` users with `--episodes` episodes each, a day apart; every episode has one
psyche memory derived only from it, and each user has one entity derived from every episode
(a hub, so the kept half keeps it: the mixed-provenance path). Vectors are random 384-d unit
vectors. The pass expires the older half through `EpisodeOps.expire` in batches of
`services.retention.BATCH`, as the job does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.ids import new_id
from persona_server.domain.models import Entity, Episode, MemoryType, Psyche, UserRef
from persona_server.ports.graph_store import DerivedWrite, GraphStore
from persona_server.services.retention import BATCH

DIM = 384
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _units(rng: np.random.Generator, n: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


async def _fill(store: GraphStore, user: UserRef, n: int, rng: np.random.Generator) -> None:
    hub = Entity(
        id=new_id(MemoryType.ENTITY), name=f"{user.user_id} hub", text="hub", recorded_at=T0
    )
    for start in range(0, n, 100):
        eps = [
            Episode(
                id=new_id(MemoryType.EPISODE),
                source_id=f"s{i}",
                text=f"day {i}: met a friend and talked about plan {i % 97}",
                occurred_at=T0 + timedelta(days=i),
                recorded_at=T0 + timedelta(days=i),
            )
            for i in range(start, min(start + 100, n))
        ]
        await store.episodes.put_batch(user, eps, _units(rng, len(eps)), replace=False)
        writes = []
        for ep in eps:
            likes = Psyche(
                id=new_id(MemoryType.PSYCHE), text=f"likes {ep.source_id}", recorded_at=T0
            )
            vecs = _units(rng, 2)
            writes.append(
                DerivedWrite(ep.id, [hub, likes], {hub.id: vecs[0], likes.id: vecs[1]}, [hub.id])
            )
        await store.memories.write_derived(user, *writes)


async def run(
    store: GraphStore, users: int, episodes: int, batch_size: int = BATCH
) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    await store.open(embedding_model="bench", dimension=DIM)
    try:
        t = time.perf_counter()
        refs = [UserRef(tenant="bench", user_id=f"u{i}") for i in range(users)]
        for ref in refs:
            await _fill(store, ref, episodes, rng)
        fill_s = time.perf_counter() - t
        cutoff = T0 + timedelta(days=episodes // 2)
        batch_s: list[float] = []
        expired = derived = kept = 0
        t = time.perf_counter()
        while True:
            b0 = time.perf_counter()
            batch = await store.episodes.expire("bench", cutoff, batch_size)
            batch_s.append(time.perf_counter() - b0)
            expired += sum(x.episodes for x in batch)
            derived += sum(x.derived for x in batch)
            kept += sum(x.kept for x in batch)
            if sum(x.episodes for x in batch) < batch_size:
                break
        total_s = time.perf_counter() - t
        left = 0
        for r in refs:
            left += len(await store.episodes.chain(r))
    finally:
        await store.close()
    return {
        "users": users,
        "episodes_per_user": episodes,
        "memories_before": users * (2 * episodes + 1),
        "fill_s": round(fill_s, 1),
        "expired_episodes": expired,
        "expired_derived": derived,
        "kept_updated": kept,
        "episodes_left": left,
        "batch_size": batch_size,
        "batches": len(batch_s),
        "pass_s": round(total_s, 2),
        "episodes_per_s": round(expired / total_s),
        "batch_ms_p50": round(1000 * statistics.median(batch_s), 1),
        "batch_ms_max": round(1000 * max(batch_s), 1),
        "machine": platform.machine(),
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_neo4j(users: int, episodes: int, batch_size: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from persona_server.adapters.stores.neo4j import Neo4jGraphStore
    from tests.neo4j_harness import Neo4jProcess, build_launcher

    build_launcher()
    with tempfile.TemporaryDirectory(prefix="persona-bench-retention-neo4j-") as tmp:
        neo4j = Neo4jProcess(Path(tmp))
        neo4j.start()
        try:
            return asyncio.run(run(Neo4jGraphStore(neo4j.uri), users, episodes, batch_size))
        finally:
            neo4j.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "neo4j"), default="sqlite")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=1000, help="per user")
    parser.add_argument("--batch", type=int, default=BATCH, help="episodes per transaction")
    parser.add_argument("--out", type=Path, default=Path("bench/results/retention.json"))
    args = parser.parse_args()
    if args.store == "neo4j":
        result = {"store": "neo4j", **run_neo4j(args.users, args.episodes, args.batch)}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteGraphStore(Path(tmp) / "persona.db")
            result = {
                "store": "sqlite",
                **asyncio.run(run(store, args.users, args.episodes, args.batch)),
            }
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
