"""Embedded store speed: ingest throughput and search latency for one user at 10k and 100k.

    .venv/bin/python bench/store_speed.py --out bench/results/store_speed.json

Vectors are random unit vectors (384 dimensions, like MiniLM) and texts are short generated
sentences over a Zipf-distributed vocabulary, both seeded, so runs are comparable. Latencies are
measured through the async port, executor hop included, after one warm-up search (the first
search loads the user's matrix; its time is reported separately as `vector_cache_load_s`).
`text_broad` searches the most frequent words, which match a large share of the user's rows:
the worst case for BM25, whose cost grows with the number of matching rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.ids import new_id
from persona_server.domain.models import Episode, MemoryType, UserRef
from persona_server.ports.graph_store import MemoryFilter

DIM = 384
BATCH = 100
QUERIES = 200
K = 20

# Word frequencies in real text follow Zipf's law: a few words everywhere, a long tail of rare
# ones. Real words head each list; seeded pseudo-words make the tail (a user's 100k memories
# mention thousands of distinct things).
# fmt: off
NAMES = [
    "Ana", "Bob", "Chen", "Dana", "Eli", "Farah", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena",
    "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tomas", "Uma", "Vik", "Wen",
]
VERBS = [
    "visited", "met", "called", "cooked", "discussed", "planned", "painted", "read", "watched",
    "bought", "fixed", "cleaned", "booked", "sold", "borrowed", "baked", "tried", "finished",
    "started", "cancelled", "ordered", "repaired", "practised", "organised", "shared", "found",
]
NOUNS = [
    "recipe", "report", "album", "bike", "bread", "chess", "fence", "novel", "shoes", "pottery",
    "homework", "budget", "gift", "camera", "concert", "tickets", "garden", "guitar", "laptop",
    "passport", "dentist", "interview", "marathon", "piano", "apartment", "vacation", "wedding",
    "podcast", "painting", "jacket", "coffee", "dinner", "movie", "photos", "flight", "lease",
]
PLACES = [
    "Lisbon", "Berlin", "office", "gym", "park", "Kyoto", "lake", "clinic", "Austin", "cafe",
    "library", "Nairobi", "beach", "market", "airport", "museum", "school", "studio",
]
FEELINGS = ["happy", "tired", "excited", "worried", "relaxed", "proud", "curious", "grateful"]
TEMPLATES = [
    "{name} {verb} the {noun} at the {place} and felt {feeling} about it.",
    "Today {name} and I {verb} a {noun} near the {place}; the {noun2} was next.",
    "{name} said the {noun} from the {place} was better than the {noun2}.",
    "I {verb} my {noun} with {name} after the {place}, then we talked about the {noun2}.",
    "Reminder: {name} wants the {noun} back before the trip to the {place}.",
]
# fmt: on
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


class Vocabulary:
    def __init__(self, seed: int, extra_nouns: int = 4000, extra_places: int = 400) -> None:
        rng = np.random.default_rng(seed)

        def pseudo(n: int) -> list[str]:
            words: set[str] = set()
            while len(words) < n:
                parts = rng.integers(len(_SYLLABLES), size=int(rng.integers(2, 4)))
                words.add("".join(_SYLLABLES[i] for i in parts))
            return sorted(words)

        self.names = NAMES
        self.verbs = VERBS
        self.nouns = NOUNS + pseudo(extra_nouns)
        self.places = PLACES + [w.capitalize() for w in pseudo(extra_places)]

    @staticmethod
    def pick(rng: np.random.Generator, words: list[str], s: float = 1.1) -> str:
        # Zipf over ranks; the cumulative weights are cached per list length and exponent.
        cdf = _zipf_cdf(len(words), s)
        return words[int(np.searchsorted(cdf, rng.random()))]

    def text(self, rng: np.random.Generator) -> str:
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        return template.format(
            name=self.pick(rng, self.names),
            verb=self.pick(rng, self.verbs),
            noun=self.pick(rng, self.nouns),
            noun2=self.pick(rng, self.nouns),
            place=self.pick(rng, self.places),
            feeling=FEELINGS[int(rng.integers(len(FEELINGS)))],
        )

    def query(self, rng: np.random.Generator) -> str:
        name, noun = self.pick(rng, self.names), self.pick(rng, self.nouns)
        if rng.random() < 0.5:
            return f"when did {name} {self.pick(rng, self.verbs)} the {noun}?"
        return f"what did {name} say about the {noun} at the {self.pick(rng, self.places)}"

    def broad_query(self) -> str:
        # The most frequent words of each list: matches a large share of every user's rows.
        return f"{self.names[0]} {self.verbs[0]} {self.nouns[0]} {self.places[0]}"


_CDF_CACHE: dict[tuple[int, float], npt.NDArray[np.float64]] = {}


def _zipf_cdf(n: int, s: float) -> npt.NDArray[np.float64]:
    cdf = _CDF_CACHE.get((n, s))
    if cdf is None:
        weights = 1.0 / np.arange(1, n + 1) ** s
        cdf = np.cumsum(weights / weights.sum())
        cdf[-1] = 1.0
        _CDF_CACHE[(n, s)] = cdf
    return cdf


VOCAB = Vocabulary(seed=42)


def unit_rows(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50_ms": round(pct(ms, 0.5), 3),
        "p95_ms": round(pct(ms, 0.95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


async def ingest(store: SqliteGraphStore, user: UserRef, n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    start_at = datetime(2023, 1, 1, tzinfo=UTC)
    batch_times: list[float] = []
    t0 = time.perf_counter()
    for b in range(0, n, BATCH):
        size = min(BATCH, n - b)
        now = datetime.now(UTC)
        episodes = [
            Episode(
                id=new_id(MemoryType.EPISODE),
                source_id=f"s{b + i}",
                text=VOCAB.text(rng),
                occurred_at=start_at + timedelta(minutes=7 * (b + i)),
                recorded_at=now,
                metadata={"channel": "chat" if (b + i) % 3 else "email"},
            )
            for i in range(size)
        ]
        vectors = unit_rows(rng, size)
        t = time.perf_counter()
        await store.episodes.put_batch(user, episodes, vectors, replace=False)
        batch_times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {
        "memories": n,
        "batch_size": BATCH,
        "episodes_per_s": round(n / sum(batch_times), 1),
        "wall_s_incl_generation": round(total, 2),
        "batch": summary_ms(batch_times),
    }


async def latencies(
    store: SqliteGraphStore, user: UserRef, seed: int
) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    qvecs = unit_rows(rng, QUERIES)
    qtexts = [VOCAB.query(rng) for _ in range(QUERIES)]
    none = MemoryFilter()
    filtered = MemoryFilter(
        types=frozenset({MemoryType.EPISODE}),
        occurred_from=datetime(2023, 3, 1, tzinfo=UTC),
        metadata={"channel": "chat"},
    )
    out: dict[str, list[float]] = {
        "vector": [],
        "vector_filtered": [],
        "text": [],
        "text_filtered": [],
        "vector_and_text_concurrent": [],
        "text_broad": [],
    }
    for i in range(QUERIES):
        q = qvecs[i : i + 1]
        t = time.perf_counter()
        await store.search.vector(user, q, K, none)
        out["vector"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await store.search.vector(user, q, K, filtered)
        out["vector_filtered"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await store.search.text(user, qtexts[i], K, none)
        out["text"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await store.search.text(user, qtexts[i], K, filtered)
        out["text_filtered"].append(time.perf_counter() - t)
        # What Recall does: both channels at once.
        t = time.perf_counter()
        await asyncio.gather(
            store.search.vector(user, q, K, none), store.search.text(user, qtexts[i], K, none)
        )
        out["vector_and_text_concurrent"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await store.search.text(user, VOCAB.broad_query(), K, none)
        out["text_broad"].append(time.perf_counter() - t)
    return {name: summary_ms(values) for name, values in out.items()}


async def run(sizes: list[int], workdir: Path) -> dict[str, Any]:
    store = SqliteGraphStore(workdir / "bench.db")
    await store.open(embedding_model="bench-random-384", dimension=DIM)
    results: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            # Other work on the machine skews latencies; record how busy it was.
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "dimension": DIM,
        "k": K,
        "queries": QUERIES,
        "sizes": {},
    }
    try:
        for n in sizes:
            user = UserRef(tenant="bench", user_id=f"user-{n}")
            print(f"ingesting {n} memories ...", flush=True)
            ing = await ingest(store, user, n, seed=n)
            t = time.perf_counter()
            await store.search.vector(
                user, unit_rows(np.random.default_rng(1), 1), K, MemoryFilter()
            )
            load_s = time.perf_counter() - t
            await store.search.text(user, "warm up the page cache", K, MemoryFilter())
            print(f"searching {n} memories ...", flush=True)
            lat = await latencies(store, user, seed=n + 1)
            results["sizes"][str(n)] = {
                "ingest": ing,
                "vector_cache_load_s": round(load_s, 3),
                "search": lat,
            }
            print(json.dumps(results["sizes"][str(n)], indent=2), flush=True)
        for n in sizes:
            user = UserRef(tenant="bench", user_id=f"user-{n}")
            t = time.perf_counter()
            await store.users.delete(user)
            results["sizes"][str(n)]["delete_user_s"] = round(time.perf_counter() - t, 3)
            print(f"delete user with {n} memories: {results['sizes'][str(n)]['delete_user_s']} s")
        results["db_bytes_after_delete"] = (workdir / "bench.db").stat().st_size
        results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/store_speed.json"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=None, help="where the bench db goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = asyncio.run(run(args.sizes, Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
