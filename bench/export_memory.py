"""ExportGraph at size: time and the server's memory while it streams a user's whole graph.

    python bench/export_memory.py --sizes 10000,100000 --out bench/results/export_memory.json
    python bench/export_memory.py --store neo4j --sizes 10000,100000 \
        --out bench/results/export_memory_neo4j.json

For each size a fresh store (embedded, or a Neo4j 5.26 the test harness starts) is filled
straight through the store port (random unit vectors: an export never reads them), then a
server process (`persona serve`, offline) opens it and one SDK client drains `ExportGraph` for
the user. A sampler reads the server's VmRSS every 10 ms during the export. Bounded memory
means the export's peak over the server's idle RSS stays flat from one size to the next, while
the graph grows tenfold.

The graph: 70% episodes (a chain ingested in batches, one in ten back-filled), 10% entities,
15% facts, 5% psyche items; one hub entity mentioned by, and derived from, every episode (the
user's own entity: one DERIVED_FROM page run spans all of them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import ServerProcess

from persona import AsyncPersonaClient
from persona_server.adapters.embedders.local_onnx import DIMENSION, MODEL_ID
from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import (
    Entity,
    EntityKind,
    Episode,
    ExtractionState,
    ExtractionStatus,
    Fact,
    Psyche,
    UserRef,
)
from persona_server.ports.graph_store import DerivedWrite, GraphStore

USER = UserRef(tenant="default", user_id="bench-export")
T0 = datetime(2023, 1, 1, tzinfo=UTC)
BATCH = 1000


def _units(rng: np.random.Generator, n: int) -> Any:
    v = rng.standard_normal((n, DIMENSION)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def fill(store: GraphStore, size: int) -> dict[str, int]:
    rng = np.random.default_rng(size)
    await store.open(embedding_model=MODEL_ID, dimension=DIMENSION)
    n_ep = int(size * 0.7)
    n_en = int(size * 0.1) - 1
    n_fa = int(size * 0.15)
    n_ps = size - n_ep - n_en - n_fa - 1
    episodes = []
    for i in range(n_ep):
        at = T0 + timedelta(minutes=(i - 500 if i % 10 == 9 else i) * 7)
        episodes.append(
            Episode(
                id=f"ep_{i:08d}",
                text=f"Synthetic chat line number {i}: about place {i % 97} and friend {i % 53}",
                occurred_at=at,
                recorded_at=T0 + timedelta(seconds=i),
                source_id=f"s{i}",
                speaker="Sam",
                metadata={"session": str(i // 20)},
                extraction=ExtractionStatus(state=ExtractionState.DONE, attempts=1),
            )
        )
    for start in range(0, n_ep, BATCH):
        batch = episodes[start : start + BATCH]
        await store.episodes.put_batch(USER, batch, _units(rng, len(batch)), replace=False)
    hub = Entity(
        id="en_hub",
        text="Sam",
        name="Sam",
        kind=EntityKind.PERSON,
        recorded_at=T0,
        mention_count=n_ep,
        episode_ids=[e.id for e in episodes],
    )
    await store.memories.write_derived(
        USER, DerivedWrite(episodes[0].id, [hub], {hub.id: _units(rng, 1)[0]})
    )
    entities = [
        Entity(
            id=f"en_{k:08d}",
            text=f"Thing {k}",
            name=f"Thing {k}",
            kind=EntityKind.THING,
            recorded_at=T0 + timedelta(seconds=k),
        )
        for k in range(n_en)
    ]
    derived: list[tuple[str, Any]] = []
    for k, e in enumerate(entities):
        derived.append((episodes[(k * 7) % n_ep].id, e))
    for k in range(n_fa):
        a, b = entities[k % n_en], entities[(k * 13 + 1) % n_en]
        derived.append(
            (
                episodes[(k * 11) % n_ep].id,
                Fact(
                    id=f"fa_{k:08d}",
                    text=f"{a.name} is near {b.name}",
                    subject_id=a.id,
                    predicate="near",
                    object_id=b.id,
                    recorded_at=T0 + timedelta(seconds=n_en + k),
                    invalid_at=T0 if k % 17 == 0 else None,
                ),
            )
        )
    for k in range(n_ps):
        derived.append(
            (
                episodes[(k * 5) % n_ep].id,
                Psyche(
                    id=f"ps_{k:08d}",
                    text=f"Sam likes thing {k}",
                    key=f"likes {k}",
                    recorded_at=T0 + timedelta(seconds=k),
                ),
            )
        )
    for start in range(0, len(derived), BATCH):
        chunk = derived[start : start + BATCH]
        vecs = _units(rng, len(chunk))
        await store.memories.write_derived(
            USER,
            *(DerivedWrite(eid, [m], {m.id: vecs[i]}) for i, (eid, m) in enumerate(chunk)),
        )
    for start in range(0, n_ep, BATCH):
        await store.memories.write_derived(
            USER,
            *(
                DerivedWrite(e.id, [], mentions=[hub.id, entities[i % n_en].id])
                for i, e in enumerate(episodes[start : start + BATCH], start=start)
            ),
        )
    await store.close()
    return {"episodes": n_ep, "entities": n_en + 1, "facts": n_fa, "psyche": n_ps}


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def export(target: str, pid: int) -> dict[str, Any]:
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_rss_kb(pid))
            time.sleep(0.01)

    idle = _rss_kb(pid)
    thread = threading.Thread(target=sample, daemon=True)
    nodes = edges = chunks = 0
    async with AsyncPersonaClient(target, api_key=None) as client:
        thread.start()
        started = time.perf_counter()
        async for chunk in client.export_graph(USER.user_id):
            nodes += len(chunk.nodes)
            edges += len(chunk.edges)
            chunks += 1
        seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    peak = max(samples or [idle])
    return {
        "nodes": nodes,
        "edges": edges,
        "chunks": chunks,
        "seconds": round(seconds, 2),
        "records_per_s": round((nodes + edges) / seconds),
        "server_rss_idle_mb": round(idle / 1024, 1),
        "server_rss_peak_mb": round(peak / 1024, 1),
        "export_peak_over_idle_mb": round((peak - idle) / 1024, 1),
    }


def run_sqlite(size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="persona-bench-export-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        started = time.perf_counter()
        shape = asyncio.run(fill(SqliteGraphStore(data / "persona.db"), size))
        filled = time.perf_counter() - started
        with ServerProcess(data_dir=data) as server:
            return {**shape, "fill_s": round(filled, 1), **_measure(server)}


def run_neo4j(size: int) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from latency import _neo4j_env

    from persona_server.adapters.stores.neo4j import Neo4jGraphStore
    from tests.neo4j_harness import Neo4jProcess, build_launcher

    build_launcher()
    with tempfile.TemporaryDirectory(prefix="persona-bench-export-neo4j-") as tmp:
        neo4j = Neo4jProcess(Path(tmp))
        neo4j.start()
        try:
            started = time.perf_counter()
            shape = asyncio.run(fill(Neo4jGraphStore(neo4j.uri), size))
            filled = time.perf_counter() - started
            env = _neo4j_env(neo4j.uri, "neo4j", "", "neo4j")
            with ServerProcess(store="neo4j", extra_env=env) as server:
                return {**shape, "fill_s": round(filled, 1), **_measure(server)}
        finally:
            neo4j.stop()


def _measure(server: ServerProcess) -> dict[str, Any]:
    # A first, uncounted export warms the caches and the server's code paths.
    asyncio.run(export(server.target, server.pid))
    return asyncio.run(export(server.target, server.pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--store", choices=("sqlite", "neo4j"), default="sqlite")
    parser.add_argument("--out", type=Path, default=Path("bench/results/export_memory.json"))
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        run = run_neo4j if args.store == "neo4j" else run_sqlite
        row = {"store": args.store, "memories": size, **run(size)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "export_memory",
        "store": args.store,
        "at": datetime.now(UTC).isoformat(),
        "runs": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| memories | edges | export s | records/s | server RSS idle | peak | peak over idle |")
    for r in rows:
        print(
            f"| {r['memories']:,} | {r['edges']:,} | {r['seconds']} | {r['records_per_s']:,} | "
            f"{r['server_rss_idle_mb']} MB | {r['server_rss_peak_mb']} MB | "
            f"{r['export_peak_over_idle_mb']} MB |"
        )


if __name__ == "__main__":
    main()
