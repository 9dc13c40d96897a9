"""Benchmark of the Neo4j store: batch ingest throughput and Recall-shaped search latency.

Not a test (pytest does not collect it). Run::

    .venv/bin/python -m tests.neo4j.bench_store            # starts its own Neo4j (harness)
    PERSONA_NEO4J_URI=bolt://host:7687 .venv/bin/python -m tests.neo4j.bench_store

The harness Neo4j is started with server-like JVM settings (G1, 2 GiB heap, C2 JIT, 512 MiB page
cache) rather than the test suite's quick-start ones. The database first gets `--noise-users`
other users, so the indexes are shared as in a multi-tenant deployment; then one user with 1,000
and one with 10,000 memories (384-d vectors, synthetic English-like text).

Recall-shaped search = `search.vector(k=60)` and `search.text(k=60)` run concurrently, as
`RecallService` does; `recall store path` adds what Recall asks next (users.exists before,
expand + chain_neighbours of the first 5 hits and get_many of 40 after).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from persona_server.adapters.stores.neo4j import Neo4jGraphStore
from persona_server.domain.ids import new_id
from persona_server.domain.models import Entity, EntityKind, Episode, Fact, MemoryType, UserRef
from persona_server.ports.graph_store import DerivedWrite, MemoryFilter
from tests.neo4j_harness import Neo4jProcess, build_launcher

DIM = 384
K = 60
T0 = datetime(2023, 1, 1, tzinfo=UTC)
SERVER_JVM = ("-Xms1g", "-Xmx2g", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError")

_SYLLABLES = ("ka", "lo", "mi", "ra", "ne", "to", "su", "va", "de", "li", "po", "an", "er", "in")


def vocabulary(n: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class Corpus:
    """Zipf-distributed words, so a few terms are frequent and most are rare, as in speech."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.words = vocabulary(4000, self.rng)
        weights = 1.0 / np.arange(1, len(self.words) + 1) ** 1.1
        self.p = weights / weights.sum()

    def text(self, lo: int = 8, hi: int = 30) -> str:
        n = self.rng.randint(lo, hi)
        return " ".join(self.np_rng.choice(self.words, size=n, p=self.p))

    def vectors(self, n: int) -> npt.NDArray[np.float32]:
        v = self.np_rng.standard_normal((n, DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def episodes(corpus: Corpus, n: int, start: int) -> list[Episode]:
    now = datetime.now(UTC)
    return [
        Episode(
            id=new_id(MemoryType.EPISODE),
            source_id=f"s{start + i}",
            text=corpus.text(),
            occurred_at=T0 + timedelta(minutes=start + i),
            recorded_at=now,
            speaker="Ana" if i % 2 else "Ben",
        )
        for i in range(n)
    ]


def derived_for(
    episode: Episode, corpus: Corpus, people: list[Entity]
) -> tuple[list[Entity | Fact], dict[str, npt.NDArray[np.float32]], list[str]]:
    """What an extraction typically yields: a known person mentioned, a new fact about them."""
    person = corpus.rng.choice(people)
    cited = person.model_copy(
        update={
            "episode_ids": [*person.episode_ids[-3:], episode.id],
            "mention_count": person.mention_count + 1,
        }
    )
    fact = Fact(
        id=new_id(MemoryType.FACT),
        subject_id=person.id,
        predicate="said",
        object_value=corpus.text(3, 6),
        text=f"{person.name} said {corpus.text(3, 6)}",
        recorded_at=episode.recorded_at,
        occurred_at=episode.occurred_at,
        episode_ids=[episode.id],
    )
    return [cited, fact], {fact.id: corpus.vectors(1)[0]}, [person.id]


async def ingest(
    store: Neo4jGraphStore,
    user: UserRef,
    corpus: Corpus,
    n: int,
    batch: int,
    *,
    derived: bool,
) -> float:
    """Items per second for n episodes in batches (and their derived memories)."""
    people: list[Entity] = []
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        eps = episodes(corpus, min(batch, n - start), start)
        await store.episodes.put_batch(user, eps, corpus.vectors(len(eps)), replace=False)
        if not derived:
            continue
        if not people:
            people = [
                Entity(
                    id=new_id(MemoryType.ENTITY),
                    name=f"Person {i}",
                    text=f"Person {i}",
                    kind=EntityKind.PERSON,
                    recorded_at=eps[0].recorded_at,
                )
                for i in range(20)
            ]
            vecs = corpus.vectors(len(people))
            await store.memories.write_derived(
                user,
                DerivedWrite(
                    eps[0].id,
                    people,
                    {p.id: vecs[i] for i, p in enumerate(people)},
                    mentions=[p.id for p in people],
                ),
            )
        writes = []
        for ep in eps:
            memories, vectors, mentions = derived_for(ep, corpus, people)
            writes.append(DerivedWrite(ep.id, memories, vectors, mentions=mentions))
        await store.memories.write_derived(user, *writes)
    return n / (time.perf_counter() - t0)


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))]

    return (
        f"p50 {statistics.median(ms):6.1f} ms  p95 {pct(0.95):6.1f} ms  "
        f"p99 {pct(0.99):6.1f} ms  (n={len(ms)})"
    )


async def timed(fn: Callable[[], Awaitable[Any]], n: int, warmup: int = 30) -> list[float]:
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def search_bench(
    store: Neo4jGraphStore, user: UserRef, corpus: Corpus, queries: int, label: str
) -> None:
    flt = MemoryFilter()
    texts = [corpus.text(4, 10) for _ in range(queries + 20)]
    vecs = corpus.vectors(queries + 20)
    it = iter(range(10**9))

    def nxt() -> tuple[str, npt.NDArray[np.float32]]:
        i = next(it) % len(texts)
        return texts[i], vecs[i : i + 1]

    async def vector() -> None:
        _, v = nxt()
        await store.search.vector(user, v, K, flt)

    async def text() -> None:
        t, _ = nxt()
        await store.search.text(user, t, K, flt)

    async def both() -> None:
        t, v = nxt()
        await asyncio.gather(
            store.search.vector(user, v, K, flt), store.search.text(user, t, K, flt)
        )

    async def recall() -> None:
        t, v = nxt()
        await store.users.exists(user)
        vh, th = await asyncio.gather(
            store.search.vector(user, v, K, flt), store.search.text(user, t, K, flt)
        )
        seeds = list(dict.fromkeys([h.memory_id for h in vh[:3]] + [h.memory_id for h in th[:3]]))
        await asyncio.gather(
            store.search.expand(user, seeds[:5], 10),
            store.episodes.chain_neighbours(user, [s for s in seeds if s.startswith("ep_")][:5]),
        )
        await store.memories.get_many(user, [h.memory_id for h in vh[:20] + th[:20]])

    print(f"  {label} vector (k={K})          {summary(await timed(vector, queries))}")
    print(f"  {label} text (k={K})            {summary(await timed(text, queries))}")
    print(f"  {label} vector + text (Recall)  {summary(await timed(both, queries))}")
    print(f"  {label} recall store path       {summary(await timed(recall, queries))}")


async def index_path(
    store: Neo4jGraphStore, user: UserRef, corpus: Corpus, queries: int
) -> list[float]:
    vecs = corpus.vectors(queries)
    it = iter(range(10**9))

    async def ann() -> None:
        await store.search.vector(user, vecs[next(it) % len(vecs)][None, :], K, MemoryFilter())

    return await timed(ann, queries)


async def run(uri: str, auth: tuple[str, str] | None, args: argparse.Namespace) -> None:
    user_name, password = auth or ("neo4j", "")
    store = Neo4jGraphStore(uri, user_name, password)
    await store.open(embedding_model="bench-384", dimension=DIM)
    corpus = Corpus()
    run_id = f"{time.time_ns():x}"
    try:
        print(f"noise: {args.noise_users} users x {args.noise_size} memories")
        for u in range(args.noise_users):
            user = UserRef(tenant=f"bench-{run_id}", user_id=f"noise-{u}")
            await ingest(store, user, corpus, args.noise_size, 200, derived=False)

        print("batch ingest (put_batch, 384-d vectors), items/s:")
        for batch in (1, 10, 100):
            n = 200 if batch == 1 else 1000
            user = UserRef(tenant=f"bench-{run_id}", user_id=f"ingest-{batch}")
            rate = await ingest(store, user, corpus, n, batch, derived=False)
            print(f"  batch {batch:4d}: {rate:7.0f} items/s")
        user = UserRef(tenant=f"bench-{run_id}", user_id="ingest-derived")
        rate = await ingest(store, user, corpus, 1000, 100, derived=True)
        print(f"  batch  100 + write_derived (1 entity cited + 1 fact each): {rate:7.0f} items/s")

        users = {}
        for size in (1000, 10000):
            user = UserRef(tenant=f"bench-{run_id}", user_id=f"user-{size}")
            t0 = time.perf_counter()
            rate = await ingest(store, user, corpus, size, 200, derived=True)
            print(f"user with {size} episodes (+ derived) loaded at {rate:.0f} items/s")
            users[size] = user
            del t0

        print("search latency, one user, default filter:")
        for size, user in users.items():
            t0 = time.perf_counter()
            await store.search.vector(user, corpus.vectors(1), K, MemoryFilter())
            print(f"  {size:5d}: first vector search (cache load) {time.perf_counter() - t0:.2f} s")
            await search_bench(store, user, corpus, args.queries, f"{size:5d}:")

        no_cache = Neo4jGraphStore(uri, user_name, password, vector_cache_bytes=0)
        await no_cache.open(embedding_model="bench-384", dimension=DIM)
        try:
            print("vector search on the native index (cache off; shared index, exact fallback):")
            for size, user in users.items():
                samples = await index_path(no_cache, user, corpus, args.queries // 4)
                print(f"  {size:5d}: vector (k={K})  {summary(samples)}")
        finally:
            await no_cache.close()
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noise-users", type=int, default=10)
    parser.add_argument("--noise-size", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    uri = os.environ.get("PERSONA_NEO4J_URI")
    if uri:
        user = os.environ.get("PERSONA_NEO4J_USER")
        auth = (user, os.environ.get("PERSONA_NEO4J_PASSWORD", "")) if user else None
        asyncio.run(run(uri, auth, args))
        return
    build_launcher()
    base = Path(tempfile.mkdtemp(prefix="persona-neo4j-bench-"))
    server = Neo4jProcess(base, jvm_opts=SERVER_JVM, page_cache_mb=512)
    try:
        server.start()
        print(f"Neo4j harness on {server.uri} (started in {server.last_start_seconds:.1f}s)")
        asyncio.run(run(server.uri, None, args))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
