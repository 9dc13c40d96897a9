"""StreamContext freshness and server memory with 1 and with 1,000 subscribers.

    python bench/stream.py --out FILE.json [--items-1 N] [--items-1000 N]

Starts its own offline server (`_server.ServerProcess`: fresh data directory, local
embeddings, no LLM, loopback), fills one user with `PREFILL` chat-like items, then, for 1 and
then 1,000 subscribers of that user on that server (profile streams: no query, so every new
episode enters the context and each item is one update at every subscriber):

- opens the streams (the SDK's `AsyncPersonaClient`, 100 streams per channel) in
  `CLIENT_PROCESSES` client processes and waits for every snapshot;
- ingests items through the API one at a time; for each, freshness is the time from Ingest's
  acknowledgement (the call returned) to the first update at a subscriber that names the new
  episode, one sample per subscriber and item. An update can reach a subscriber before the
  acknowledgement does (Ingest answers after inline extraction; the stream may be told at the
  first commit): such a sample counts as 0 ms, and how many did is printed, with the same
  times measured from the Ingest request leaving the client (which includes the Ingest call
  itself). The next item is sent once every subscriber has the previous one (freshness, not
  throughput);
- reads the server's resident memory (VmRSS) with those streams open.

Prints the figures and writes `{"freshness_ms": {"1": {"p50", "p95"}, "1000": {...}},
"server_rss_mb": {"1": .., "1000": ..}}`. Clients and server share the machine: the clients'
own work for 1,000 streams is inside the figures (their CPU per item is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _server import ServerProcess, exit_on_sigterm, percentile

from persona import AsyncPersonaClient, Item
from persona_server import event_loop

USER = "stream-user"
PREFILL = 300
STREAMS_PER_CHANNEL = 100
# Subscribers live in client processes of their own (as they would: other services), so that
# one client's event loop does not queue them behind each other.
CLIENT_PROCESSES = 2
SUBSCRIBERS = (1, 1000)
ITEMS = {1: 100, 1000: 30}
WARMUP_ITEMS = 5
PAUSE_S = 0.05
WAIT_S = 30.0

TOPICS = [
    "I had coffee with {name} near the station.",
    "{name} sent me photos from the hiking trip.",
    "Dinner with {name} at the new ramen place.",
    "I want to visit {place} next spring.",
    "I love rainy mornings in {place}.",
    "Meeting with {name} about the budget moved to Friday.",
]
NAMES = ["Alice", "Bruno", "Chiara", "Dmitri", "Esther", "Farid"]
PLACES = ["Lisbon", "Kyoto", "Oslo", "Lima"]


def item_text(i: int) -> str:
    return TOPICS[i % len(TOPICS)].format(name=NAMES[i % len(NAMES)], place=PLACES[i % 4])


class Subscriber:
    """One stream: records when each episode id first shows up in an update."""

    def __init__(self, client: AsyncPersonaClient) -> None:
        self._stream = client.stream_context(USER, heartbeat_seconds=60)
        self.ready = asyncio.Event()
        self.seen: dict[str, float] = {}
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self._stream:
            now = time.perf_counter()
            which = event.WhichOneof("event")
            if which in ("snapshot", "resync"):
                self.ready.set()
            elif which == "update":
                for change in event.update.changes:
                    self.seen.setdefault(change.result.memory.id, now)

    async def close(self) -> None:
        await self._stream.aclose()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def subscriber_process(target: str, count: int, conn: Connection, use_uvloop: bool) -> None:
    """A client process holding `count` streams. Asked for an episode id, it answers with the
    times (time.perf_counter: CLOCK_MONOTONIC, the same clock in every process) at which each
    of its streams first saw it; "stop" ends it with its CPU time."""
    event_loop.run(_subscribe(target, count, conn), use_uvloop)


async def _subscribe(target: str, count: int, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    channels = [
        AsyncPersonaClient(target, default_timeout_s=60)
        for _ in range(max(1, -(-count // STREAMS_PER_CHANNEL)))
    ]
    subs = [Subscriber(channels[i % len(channels)]) for i in range(count)]
    try:
        await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 120)
        conn.send("ready")
        cpu = time.process_time()
        while (episode_id := await loop.run_in_executor(None, conn.recv)) != "stop":
            deadline = time.perf_counter() + WAIT_S
            # (Each stream's task takes the time as the update arrives; this only waits.)
            while any(episode_id not in s.seen for s in subs):
                if time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.002)
            conn.send([s.seen.get(episode_id) for s in subs])
        conn.send(time.process_time() - cpu)
    finally:
        await asyncio.gather(*(s.close() for s in subs))
        for channel in channels:
            await channel.close()


async def run_phase(
    server: ServerProcess,
    writer: AsyncPersonaClient,
    n: int,
    items: int,
    tag: str,
    use_uvloop: bool,
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")  # no fork after gRPC has started threads
    shares = [n // CLIENT_PROCESSES + (i < n % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)]
    pipes, procs = [], []
    for share in (s for s in shares if s):
        ours, theirs = context.Pipe()
        proc = context.Process(
            target=subscriber_process,
            args=(server.target, share, theirs, use_uvloop),
            daemon=True,
        )
        proc.start()
        pipes.append(ours)
        procs.append(proc)
    try:
        for pipe in pipes:
            if not pipe.poll(180) or pipe.recv() != "ready":
                raise TimeoutError("subscribers did not get their snapshots")
        cpu_before = server_cpu_s(server)
        samples: list[float] = []
        from_send: list[float] = []  # from the Ingest request leaving the client instead
        ingest_ms: list[float] = []
        early = 0
        for i in range(WARMUP_ITEMS + items):
            text = f"{item_text(i)} ({tag} {i})"
            sent = time.perf_counter()
            response = await writer.ingest(USER, [Item(text, source_id=f"{tag}-{i}")])
            acked = time.perf_counter()
            episode_id = response.results[0].episode_id
            for pipe in pipes:
                pipe.send(episode_id)
            times = [t for pipe in pipes for t in await asyncio.to_thread(pipe.recv)]
            if None in times:
                missing = times.count(None)
                raise TimeoutError(f"{missing} of {n} subscribers never got {text!r}")
            if i >= WARMUP_ITEMS:
                for seen in times:
                    delay = seen - acked
                    early += delay < 0
                    samples.append(max(delay, 0.0) * 1000)
                    from_send.append((seen - sent) * 1000)
                ingest_ms.append((acked - sent) * 1000)
            await asyncio.sleep(PAUSE_S)
        rss_kb = server.memory_kb().get("VmRSS", 0)
        cpu_ms = (server_cpu_s(server) - cpu_before) * 1000 / (WARMUP_ITEMS + items)
        for pipe in pipes:
            pipe.send("stop")
        client_s = sum([await asyncio.to_thread(pipe.recv) for pipe in pipes])
        client_ms = client_s * 1000 / (WARMUP_ITEMS + items)
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return {
        "subscribers": n,
        "items": items,
        "samples": len(samples),
        "p50": percentile(samples, 0.5),
        "p95": percentile(samples, 0.95),
        "max": max(samples),
        "before_ack": early,
        "from_send_p50": percentile(from_send, 0.5),
        "from_send_p95": percentile(from_send, 0.95),
        "ingest_p50": percentile(ingest_ms, 0.5),
        "rss_mb": rss_kb / 1024,
        "server_cpu_ms_per_item": cpu_ms,
        "client_cpu_ms_per_item": client_ms,
    }


def server_cpu_s(server: ServerProcess) -> float:
    """User + system CPU seconds the server process has used (Linux)."""
    try:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(server: ServerProcess, items: dict[int, int], use_uvloop: bool) -> dict[str, Any]:
    async with AsyncPersonaClient(server.target, default_timeout_s=60) as writer:
        for start in range(0, PREFILL, 100):
            batch = [
                Item(item_text(i), source_id=f"prefill-{i}")
                for i in range(start, min(start + 100, PREFILL))
            ]
            await writer.ingest(USER, batch)
        phases = {}
        for n in SUBSCRIBERS:
            phases[n] = await run_phase(server, writer, n, items[n], f"n{n}", use_uvloop)
            p = phases[n]
            print(
                f"{n:>5} subscriber(s): freshness p50 {p['p50']:.1f} ms, p95 {p['p95']:.1f} ms, "
                f"max {p['max']:.1f} ms over {p['samples']} samples "
                f"({p['before_ack']} arrived before the ack); from the Ingest request: "
                f"p50 {p['from_send_p50']:.1f} ms, p95 {p['from_send_p95']:.1f} ms "
                f"(Ingest itself p50 {p['ingest_p50']:.1f} ms); "
                f"CPU per item: server {p['server_cpu_ms_per_item']:.1f} ms, "
                f"client {p['client_cpu_ms_per_item']:.1f} ms; "
                f"server RSS {p['rss_mb']:.0f} MB",
                flush=True,
            )
    return phases


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--items-1", type=int, default=ITEMS[1], help="items measured with 1")
    parser.add_argument(
        "--items-1000", type=int, default=ITEMS[1000], help="items measured with 1,000"
    )
    parser.add_argument(
        "--asyncio",
        action="store_true",
        help="asyncio's own event loop in the server and the clients (default: uvloop when "
        "installed, as the server uses)",
    )
    args = parser.parse_args(argv)
    use_uvloop = not args.asyncio and event_loop.loop_factory(True) is not None
    exit_on_sigterm()
    cpus = os.cpu_count()
    print(
        f"{platform.platform()}, Python {platform.python_version()}, {cpus} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; profile streams (no query); "
        f"event loop: {'uvloop' if use_uvloop else 'asyncio'}",
        flush=True,
    )
    env = {"PERSONA_UVLOOP": "true" if use_uvloop else "false"}
    with ServerProcess(extra_env=env) as server:
        items = {1: args.items_1, 1000: args.items_1000}
        phases = event_loop.run(bench(server, items, use_uvloop), use_uvloop)
    report = {
        "event_loop": "uvloop" if use_uvloop else "asyncio",
        "freshness_ms": {
            str(n): {"p50": round(p["p50"], 2), "p95": round(p["p95"], 2)}
            for n, p in phases.items()
        },
        "server_rss_mb": {str(n): round(p["rss_mb"], 1) for n, p in phases.items()},
    }
    print(json.dumps(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
