"""GetProfile latency at a given number of memories.

    python bench/profile.py --out /tmp/persona-profile.json [--memories 10000] [--calls 200]

Starts its own offline server (fresh temporary data directory, local embeddings, no LLM) and
fills one user with bench/latency.py's synthetic chat lines (one every 10 minutes of event
time from 2021) until the user holds at least `--memories` memories of every type (episodes
and what offline extraction derives from them, as GetProfile's counts report). Then, from one
sequential client over loopback gRPC, after a few warm-up calls that are not counted, it times
`--calls` GetProfile calls (max_items 10) in two ways:

- `now`: as of now, dormant memories left out (the default request). Derived memories of the
  synthetic history (2021 on) that were said rarely are dormant by now, so a group may be read
  again larger to find enough awake ones;
- `include_dormant`: nothing filtered, each group one bounded read;
- `before_recorded`: as of the last item's event time, which is before any of it was recorded
  (ingested now): nothing qualifies, so every group is read again at its largest and still
  found empty. The worst case of the bounded growth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from _server import ServerProcess, exit_on_sigterm, percentile
from latency import FIRST_DAY, USER, Filler, machine

from persona import AsyncPersonaClient
from persona.v1 import profile_pb2

WARMUP_CALLS = 10
GROW_STEP = 1000
MAX_ITEMS = 10


def total(counts: profile_pb2.ProfileCounts) -> int:
    return counts.episodes + counts.psyche + counts.goals + counts.entities + counts.facts


async def timed(client: AsyncPersonaClient, calls: int, **kw: Any) -> dict[str, float]:
    for _ in range(WARMUP_CALLS):
        await client.get_profile(USER, max_items=MAX_ITEMS, **kw)
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await client.get_profile(USER, max_items=MAX_ITEMS, **kw)
        samples.append((time.perf_counter() - start) * 1000)
    return {f"p{q}_ms": round(percentile(samples, q / 100), 2) for q in (50, 95, 99)}


async def measure(server: ServerProcess, memories: int, calls: int) -> dict[str, Any]:
    async with AsyncPersonaClient(server.target, default_timeout_s=300.0) as client:
        filler = Filler(client)
        held = 0
        started = time.perf_counter()
        while held < memories:
            await filler.grow_to(filler.count + GROW_STEP)
            held = total((await client.get_profile(USER, max_items=1)).counts)
            print(f"{filler.count} items: {held} memories", file=sys.stderr)
        fill_s = time.perf_counter() - started
        last = FIRST_DAY + timedelta(minutes=10 * (filler.count - 1))
        sample = await client.get_profile(USER, max_items=MAX_ITEMS)
        return {
            "items": filler.count,
            "memories": held,
            "counts": {
                "episodes": sample.counts.episodes,
                "psyche": sample.counts.psyche,
                "goals": sample.counts.goals,
                "entities": sample.counts.entities,
                "facts": sample.counts.facts,
            },
            "fill_s": round(fill_s, 1),
            "shown_now": {
                g: len(getattr(sample, g)) for g in ("psyche", "goals", "entities", "episodes")
            },
            "now": await timed(client, calls),
            "include_dormant": await timed(client, calls, include_dormant=True),
            "before_recorded": await timed(client, calls, as_of=last),
        }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    with ServerProcess() as server:
        report = asyncio.run(measure(server, args.memories, args.calls))
    report.update(calls=args.calls, max_items=MAX_ITEMS, store="sqlite", machine=machine())
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
