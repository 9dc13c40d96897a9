"""Recall latency and ingest throughput as one user's memory grows.

    python bench/latency.py --out results.json [--sizes 1000,10000,100000] [--store sqlite]
    python bench/latency.py --out off.json --server-setting PERSONA_RECALL_RELATED_WORDS=false
    python bench/latency.py --store neo4j [--neo4j-uri bolt://host:7687] --out results.json

Starts its own offline server (fresh temporary data directory, local embeddings, no LLM) and
fills ONE user with synthetic chat-like lines (daily life, work, family, hobbies, places,
dates), generated deterministically from a seeded RNG with templates and word lists. First, not
counted, a warm-up (300 items and a few recalls into another user: a freshly started process,
a JVM above all, compiles and plans on first use). Then, growing to each size in turn, it
measures:

- batch Ingest throughput (items/s), from the first batch sent until the last batch is both
  acknowledged and searchable (checked by recalling a unique marker text of the last batch);
- at each size, Recall latency p50/p95/p99 of 200 fixed queries (max_results 10, query
  embedding included) from one sequential client over loopback gRPC, after a few warm-up
  queries that are not counted;
- after the last size, single-item Ingest latency p50/p95 (100 one-item calls into that user);
- the server's peak resident memory (VmHWM of its process).

With `--store neo4j` and no `--neo4j-uri`, a Neo4j 5 is started for the run with the test
harness (`tests/neo4j_harness.py`, auth disabled, fresh temporary data directory) and stopped at
the end; with `--neo4j-uri` that server is used as is (its database should be empty).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _server import ServerProcess, add_embedder_options, exit_on_sigterm, percentile

from persona import AsyncPersonaClient, Item

USER = "bench-user"
WARMUP_USER = "bench-warmup"
WARMUP_ITEMS = 300
BATCH_SIZE = 100
QUERIES = 200
WARMUP_QUERIES = 5
SINGLE_INGESTS = 100
RECALL_MAX_RESULTS = 10
SEED = 20240501
SEARCHABLE_TIMEOUT_S = 300.0
FIRST_DAY = datetime(2021, 1, 1, 7, 0, tzinfo=UTC)
# The started Neo4j gets a server's page cache (docker-compose.yml: 1 GiB), so the store stays
# in memory as in a sized deployment; the test suite's harness default (32 MiB) suits CI.
BENCH_PAGE_CACHE_MB = 1024


# --- stores -------------------------------------------------------------------------------


REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StoreSetup:
    name: str
    env: dict[str, str]
    # For a store outside the server process: its files and its process, when known (the
    # server's own data directory and process are measured anyway).
    data_dir: Path | None = None
    pid: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def sqlite_setup(_args: argparse.Namespace) -> Iterator[StoreSetup]:
    # The embedded store lives in the server's fresh temporary data directory.
    yield StoreSetup("sqlite", {})


@contextlib.contextmanager
def neo4j_setup(args: argparse.Namespace) -> Iterator[StoreSetup]:
    uri = getattr(args, "neo4j_uri", None)
    user = getattr(args, "neo4j_user", None) or "neo4j"
    database = getattr(args, "neo4j_database", None) or "neo4j"
    if uri:
        # An external server: the password comes from the option or, so that it need not be
        # on the command line, from PERSONA_NEO4J_PASSWORD (empty: no authentication).
        password = getattr(args, "neo4j_password", None)
        if password is None:
            password = os.environ.get("PERSONA_NEO4J_PASSWORD", "")
        yield StoreSetup(
            "neo4j",
            _neo4j_env(uri, user, password, database),
            details={"neo4j_uri": uri, "neo4j_database": database, "neo4j_started": False},
        )
        return
    # `tests` is a package of the repository root, which is not on sys.path when this file
    # runs as a script.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.neo4j_harness import Neo4jProcess, build_launcher

    build_launcher()
    base = Path(tempfile.mkdtemp(prefix="persona-bench-neo4j-"))
    page_cache_mb = getattr(args, "neo4j_page_cache_mb", None) or BENCH_PAGE_CACHE_MB
    neo4j = Neo4jProcess(base, page_cache_mb=page_cache_mb)
    try:
        neo4j.start()
        # The harness runs Neo4j without authentication: an empty password means no auth.
        yield StoreSetup(
            "neo4j",
            _neo4j_env(neo4j.uri, user, "", database),
            data_dir=neo4j.data_dir,
            pid=neo4j.pid,
            details={
                "neo4j_uri": neo4j.uri,
                "neo4j_database": database,
                "neo4j_started": True,
                "neo4j_jvm_opts": list(neo4j.jvm_opts),
                "neo4j_page_cache_mb": neo4j.page_cache_mb,
                "neo4j_start_s": round(neo4j.last_start_seconds or 0.0, 1),
            },
        )
    finally:
        neo4j.stop()
        shutil.rmtree(base, ignore_errors=True)


def _neo4j_env(uri: str, user: str, password: str, database: str) -> dict[str, str]:
    return {
        "PERSONA_STORE": "neo4j",
        "PERSONA_NEO4J_URI": uri,
        "PERSONA_NEO4J_USER": user,
        "PERSONA_NEO4J_PASSWORD": password,
        "PERSONA_NEO4J_DATABASE": database,
    }


# One entry per store the benchmark can drive: a store adds its own options to the parser
# (see `main`) and maps them to server environment variables here; the context manager holds
# whatever the store needs (a Neo4j it started) for the whole run.
STORES: dict[str, Callable[[argparse.Namespace], AbstractContextManager[StoreSetup]]] = {
    "sqlite": sqlite_setup,
    "neo4j": neo4j_setup,
}


# --- synthetic data -----------------------------------------------------------------------

NAMES = [
    "Anna", "Ben", "Carla", "David", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Kemal", "Lena", "Marco", "Nadia", "Omar", "Priya", "Rosa", "Sven", "Tomas", "Uma",
    "Viktor", "Wen", "Yara", "Zoe",
]  # fmt: skip
RELATIONS = [
    "my sister", "my brother", "my mum", "my dad", "my boss", "my neighbour", "my best friend",
    "my partner", "my coworker", "my cousin", "our landlord", "my dentist", "my grandmother",
]  # fmt: skip
PLACES = [
    "Lisbon", "the gym", "the office", "Berlin", "the farmers market", "my parents' house",
    "the library", "Kyoto", "the park", "the beach", "the new cafe on Main Street",
    "the hospital", "the airport", "Toronto", "the climbing hall", "the lake", "Barcelona",
    "the train station", "the community garden", "Nairobi",
]  # fmt: skip
ACTIVITIES = [
    "hiking", "baking sourdough", "running", "painting", "learning Spanish", "playing guitar",
    "yoga", "cycling", "gardening", "photography", "chess", "swimming", "knitting",
    "bouldering", "birdwatching", "pottery",
]  # fmt: skip
FOODS = [
    "ramen", "tacos", "lasagna", "sushi", "pho", "green curry", "pancakes", "falafel",
    "dumplings", "paella", "shakshuka", "pierogi",
]  # fmt: skip
TOPICS = [
    "the quarterly report", "the database migration", "the budget review", "the hiring plan",
    "the client demo", "the security audit", "the product launch", "the onboarding docs",
    "the office move", "the annual conference talk",
]  # fmt: skip
TIMES = [
    "yesterday", "last weekend", "on Monday", "this morning", "two weeks ago", "last night",
    "on my birthday", "over the holidays", "after work", "on Friday evening",
]  # fmt: skip
FEELINGS = [
    "excited", "tired", "nervous", "happy", "stressed", "proud", "relieved", "annoyed",
    "grateful",
]  # fmt: skip
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
TEMPLATES = [
    "{time} I did {activity} with {rel} near {place}.",
    "{Rel} called {time} to talk about {topic}.",
    "I'm {feeling} about {topic}; the deadline is {date}.",
    "Had {food} at {place} {time}, it was really good.",
    "{name} from work recommended a book about {activity}.",
    "We are planning a trip to {place} on {date} with {name}.",
    "Reminder: {rel} has a doctor's appointment on {date} at {hour}.",
    "I finally finished {topic} {time} and I feel {feeling}.",
    "{name} and I practised {activity} for {n} hours {time}.",
    "My goal this year is to get better at {activity}.",
    "I don't really like {food} anymore, I prefer {food2} now.",
    "{Rel} moved to {place} {time}.",
    "{name}'s birthday is on {date}, I should get them something for {activity}.",
    "Spent the afternoon at {place} with {name}, we talked about {activity}.",
    "The meeting about {topic} got moved to {date} at {hour}.",
    "{Rel} is cooking {food} for dinner tonight.",
    "I felt {feeling} after {activity} {time}.",
    "Booked tickets to {place} for {date}; {name} is coming too.",
]


def _fill(rng: random.Random) -> str:
    rel = rng.choice(RELATIONS)
    food, food2 = rng.sample(FOODS, 2)
    text = rng.choice(TEMPLATES).format(
        time=rng.choice(TIMES),
        activity=rng.choice(ACTIVITIES),
        rel=rel,
        Rel=rel[0].upper() + rel[1:],
        place=rng.choice(PLACES),
        topic=rng.choice(TOPICS),
        feeling=rng.choice(FEELINGS),
        date=f"{rng.randint(1, 28)} {rng.choice(MONTHS)}",
        food=food,
        food2=food2,
        name=rng.choice(NAMES),
        hour=f"{rng.randint(8, 18)}:{rng.choice(['00', '15', '30', '45'])}",
        n=rng.randint(1, 4),
    )
    return text[0].upper() + text[1:]


def texts(seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    while True:
        yield _fill(rng)


QUERY_TEMPLATES = [
    "when did I go to {place}",
    "what did {rel} say about {topic}",
    "who do I go {activity} with",
    "where did I eat {food}",
    "what is {name}'s birthday",
    "what are my goals this year",
    "how did I feel about {topic}",
    "trip to {place} with {name}",
    "what food does {rel} cook",
    "doctor's appointment for {rel}",
    "what does {name} recommend",
    "{activity} last weekend",
]


def queries(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [
        rng.choice(QUERY_TEMPLATES).format(
            place=rng.choice(PLACES),
            rel=rng.choice(RELATIONS),
            topic=rng.choice(TOPICS),
            activity=rng.choice(ACTIVITIES),
            food=rng.choice(FOODS),
            name=rng.choice(NAMES),
        )
        for _ in range(n)
    ]


def marker(size: int) -> str:
    # Words that appear nowhere else, so full-text search finds exactly this item.
    return f"Locker code word quokkazephyr{size} for the storage unit"


# --- measurement --------------------------------------------------------------------------


def _ms_stats(samples: Sequence[float], qs: Sequence[float]) -> dict[str, float]:
    return {f"p{round(q * 100)}": round(percentile(samples, q), 3) for q in qs}


def _dir_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    total = 0
    for f in path.rglob("*"):
        with contextlib.suppress(OSError):
            if f.is_file():
                total += f.stat().st_size
    return total


def _process_memory_kb(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process, in kB (Linux only; empty when unknown)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


class Filler:
    """Ingests the synthetic stream into a user (USER), batch after batch, with ids in order."""

    def __init__(self, client: AsyncPersonaClient, user: str = USER, seed: int = SEED) -> None:
        self._client = client
        self._user = user
        self._texts = texts(seed)
        self.count = 0

    def _item(self, text: str) -> Item:
        i = self.count
        self.count += 1
        return Item(
            text,
            source_id=f"item-{i:07d}",
            # About one item every 10 minutes, in event-time order, all in the past.
            occurred_at=FIRST_DAY + timedelta(minutes=10 * i),
            source_type="chat_message",
            speaker="me",
        )

    async def grow_to(self, size: int) -> tuple[float, str]:
        """Ingest until USER holds `size` items; the last one carries a marker. Returns the
        seconds until that marker is searchable, and the marker's source id."""
        start = time.perf_counter()
        marker_id = ""
        while self.count < size:
            n = min(BATCH_SIZE, size - self.count)
            batch = [self._item(next(self._texts)) for _ in range(n - 1)]
            if self.count + 1 == size:
                marker_id = f"item-{self.count:07d}"
                batch.append(self._item(marker(size)))
            else:
                batch.append(self._item(next(self._texts)))
            await self._client.ingest(self._user, batch)
        await self._wait_searchable(marker(size), marker_id)
        return time.perf_counter() - start, marker_id

    async def _wait_searchable(self, text: str, source_id: str) -> None:
        deadline = time.perf_counter() + SEARCHABLE_TIMEOUT_S
        while True:
            response = await self._client.recall(self._user, text, max_results=RECALL_MAX_RESULTS)
            if any(source_id in r.memory.provenance.source_ids for r in response.results):
                return
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{source_id} not searchable after {SEARCHABLE_TIMEOUT_S} s")
            await asyncio.sleep(0.05)


async def recall_latencies(client: AsyncPersonaClient, qs: Sequence[str]) -> list[float]:
    for q in queries(SEED + 2, WARMUP_QUERIES):
        await client.recall(USER, q, max_results=RECALL_MAX_RESULTS)
    samples = []
    for q in qs:
        start = time.perf_counter()
        await client.recall(USER, q, max_results=RECALL_MAX_RESULTS)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def single_ingest_latencies(client: AsyncPersonaClient, start_index: int) -> list[float]:
    rng = random.Random(SEED + 3)
    samples = []
    for i in range(SINGLE_INGESTS):
        item = Item(
            _fill(rng),
            source_id=f"single-{start_index + i:07d}",
            occurred_at=datetime.now(UTC) - timedelta(minutes=SINGLE_INGESTS - i),
            source_type="chat_message",
            speaker="me",
        )
        start = time.perf_counter()
        await client.ingest(USER, [item])
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def measure(
    server: ServerProcess,
    sizes: Sequence[int],
    log: Callable[[str], None],
    checkpoint: Callable[[dict[str, Any]], None],
    setup: StoreSetup | None = None,
) -> dict[str, Any]:
    def store_bytes() -> int:
        if setup is not None and setup.data_dir is not None:
            return _dir_bytes(setup.data_dir)
        return server.data_bytes()

    def store_process_memory() -> dict[str, int]:
        return _process_memory_kb(setup.pid) if setup is not None and setup.pid else {}

    qs = queries(SEED + 1, QUERIES)
    report: dict[str, Any] = {
        "recall_ms": {},
        "ingest_items_per_s": 0.0,
        "ingest_batch_size": BATCH_SIZE,
        "per_size": {},
        "complete": False,
    }
    total_items = 0
    total_s = 0.0
    async with AsyncPersonaClient(server.target, default_timeout_s=300.0) as client:
        # Not counted: a process that just started (a JVM above all) compiles code and plans
        # statements on first use. Another user, so USER's figures start from empty.
        warm = Filler(client, WARMUP_USER, SEED + 9)
        await warm.grow_to(WARMUP_ITEMS)
        for q in queries(SEED + 8, WARMUP_QUERIES):
            await client.recall(WARMUP_USER, q, max_results=RECALL_MAX_RESULTS)
        filler = Filler(client)
        for size in sizes:
            added = size - filler.count
            seconds, _ = await filler.grow_to(size)
            total_items += added
            total_s += seconds
            log(f"{size} items: +{added} in {seconds:.1f} s ({added / seconds:.0f}/s)")
            samples = await recall_latencies(client, qs)
            report["recall_ms"][str(size)] = _ms_stats(samples, (0.5, 0.95, 0.99))
            mem = server.memory_kb()
            report["per_size"][str(size)] = {
                "ingested_items": added,
                "ingest_s": round(seconds, 2),
                "ingest_items_per_s": round(added / seconds, 1),
                "recall_ms_mean": round(sum(samples) / len(samples), 3),
                "recall_ms_max": round(max(samples), 3),
                "server_rss_mb": round(mem.get("VmRSS", 0) / 1024, 1),
                "server_peak_rss_mb": round(mem.get("VmHWM", 0) / 1024, 1),
                "store_mb": round(store_bytes() / 2**20, 1),
            }
            store_mem = store_process_memory()
            if store_mem:
                report["per_size"][str(size)]["store_process_rss_mb"] = round(
                    store_mem.get("VmRSS", 0) / 1024, 1
                )
            report["ingest_items_per_s"] = round(total_items / total_s, 1)
            report["peak_rss_mb"] = round(mem.get("VmHWM", 0) / 1024, 1)
            log(f"{size} items: recall {report['recall_ms'][str(size)]}")
            # A long run that is stopped later still leaves the sizes it finished.
            checkpoint(report)
        single = await single_ingest_latencies(client, 0)
    report["ingest_single_ms"] = _ms_stats(single, (0.5, 0.95))
    report["ingest_single_at_items"] = filler.count
    report["peak_rss_mb"] = round(server.memory_kb().get("VmHWM", 0) / 1024, 1)
    store_mem = store_process_memory()
    if store_mem:
        # Neo4j's JVM, which the harness started: not part of the Persona server's RSS.
        report["store_process_peak_rss_mb"] = round(store_mem.get("VmHWM", 0) / 1024, 1)
    report["complete"] = True
    return report


def machine() -> dict[str, Any]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem_total_mb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_mb = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {
        "cpus_usable": cpus,
        "cpu": platform.processor() or platform.machine(),
        "mem_total_mb": round(mem_total_mb),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def run(
    sizes: Sequence[int],
    *,
    store: str = "sqlite",
    args: argparse.Namespace | None = None,
    log: Callable[[str], None] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    server_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; `checkpoint` gets the partial report after each size; `server_env`:
    settings for the server on top of the offline ones (`--server-setting`)."""
    say = log or (lambda _msg: None)
    started = time.perf_counter()
    with STORES[store](args or argparse.Namespace()) as setup:
        if setup.details:
            say(f"store {setup.name}: {setup.details}")
        about = {
            "store": setup.name,
            **({"store_details": setup.details} if setup.details else {}),
            "sizes": list(sizes),
            **({"server_settings": dict(server_env)} if server_env else {}),
            "queries": QUERIES,
            "recall_max_results": RECALL_MAX_RESULTS,
            "single_ingests": SINGLE_INGESTS,
            "machine": machine(),
        }

        def save(partial: dict[str, Any]) -> None:
            if checkpoint is not None:
                elapsed = round(time.perf_counter() - started, 1)
                checkpoint({**partial, **about, "wall_s": elapsed})

        activations = getattr(args, "activations", "float")
        spin_us = str(getattr(args, "spin_us", 0))
        about["embeddings_local_activations"] = activations
        parallel = str(getattr(args, "parallel_calls", 1))
        about["embeddings_local_spin_us"] = spin_us
        about["embeddings_local_parallel_calls"] = parallel
        fused = "false" if getattr(args, "unfused", False) else "true"
        about["embeddings_local_fused"] = fused
        env = {
            **setup.env,
            "PERSONA_EMBEDDINGS_LOCAL_ACTIVATIONS": activations,
            "PERSONA_EMBEDDINGS_LOCAL_SPIN_US": spin_us,
            "PERSONA_EMBEDDINGS_LOCAL_PARALLEL_CALLS": parallel,
            "PERSONA_EMBEDDINGS_LOCAL_FUSED": fused,
            **(server_env or {}),  # --server-setting wins over the flags above
        }
        with ServerProcess(store=setup.name, extra_env=env) as server:
            say(f"server up on {server.target} (pid {server.pid}, store {setup.name})")
            report = asyncio.run(measure(server, sizes, say, save, setup))
    return {**report, **about, "wall_s": round(time.perf_counter() - started, 1)}


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"{'items':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'ingest/s':>9} {'RSS MB':>7}"
        f" {'store MB':>9}"
    ]
    for size, stats in report["recall_ms"].items():
        extra = report["per_size"][size]
        lines.append(
            f"{int(size):>8} {stats['p50']:>8.2f} {stats['p95']:>8.2f} {stats['p99']:>8.2f}"
            f" {extra['ingest_items_per_s']:>9.0f} {extra['server_rss_mb']:>7.0f}"
            f" {extra['store_mb']:>9.1f}"
        )
    single = report["ingest_single_ms"]
    lines.append(
        f"ingest {report['ingest_items_per_s']:.0f} items/s in batches of "
        f"{report['ingest_batch_size']} (until searchable); single-item ingest p50 "
        f"{single['p50']:.1f} ms, p95 {single['p95']:.1f} ms (at {report['ingest_single_at_items']}"
        f" items); server peak RSS {report['peak_rss_mb']:.0f} MB; store {report['store']}; "
        f"{report['machine']['cpus_usable']} CPUs; {report['wall_s']:.0f} s"
    )
    if "store_process_peak_rss_mb" in report:
        lines.append(
            f"store process (not in the server's RSS) peak RSS "
            f"{report['store_process_peak_rss_mb']:.0f} MB"
        )
    return "\n".join(lines)


def _sizes(value: str) -> list[int]:
    sizes = [int(part) for part in value.split(",") if part.strip()]
    if not sizes or any(s < 1 for s in sizes) or sizes != sorted(set(sizes)):
        raise argparse.ArgumentTypeError("sizes: increasing positive integers, e.g. 1000,10000")
    return sizes


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("PERSONA_"):
        raise argparse.ArgumentTypeError(f"expected PERSONA_NAME=VALUE, got {text!r}")
    return name, value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--sizes", type=_sizes, default=[1000, 10000, 100000])
    parser.add_argument("--store", choices=sorted(STORES), default="sqlite")
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        type=_setting,
        metavar="PERSONA_NAME=VALUE",
        help="a server setting for the run (repeatable), e.g. PERSONA_RECALL_RELATED_WORDS=false "
        "to measure without a channel; the caller's own PERSONA_* variables never reach it",
    )
    add_embedder_options(parser, parallel_calls=True)
    neo4j = parser.add_argument_group("neo4j store (--store neo4j)")
    neo4j.add_argument(
        "--neo4j-uri",
        help="use this Neo4j 5 (its database should be empty); default: start one with "
        "tests/neo4j_harness.py for the run",
    )
    neo4j.add_argument("--neo4j-user", default="neo4j")
    neo4j.add_argument(
        "--neo4j-password",
        help="with --neo4j-uri; default: $PERSONA_NEO4J_PASSWORD, else none (no auth)",
    )
    neo4j.add_argument("--neo4j-database", default="neo4j")
    neo4j.add_argument(
        "--neo4j-page-cache-mb",
        type=int,
        default=BENCH_PAGE_CACHE_MB,
        help="page cache of the Neo4j this run starts (default: as docker-compose.yml sets it)",
    )
    args = parser.parse_args(argv)
    exit_on_sigterm()

    def write(report: dict[str, Any]) -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")

    report = run(
        args.sizes,
        store=args.store,
        args=args,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
        checkpoint=write,
        server_env=dict(args.server_setting),
    )
    print(format_table(report))
    write(report)
    if args.out:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
