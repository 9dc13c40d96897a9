"""Offline extractor speed: items/s and per-item latency on realistic chat lines.

    python bench/extractor_speed.py [--out results.json] [--items 5000] [--locomo DIR]

The built-in corpus is hand-written chat turns (greetings, plans, preferences, family, places,
dates). With --locomo DIR, the turns of the LoCoMo conversations in DIR are measured as well
(read at run time, never copied: that data is CC BY-NC, for evaluation only). Prints the figures
and, with --out, writes them as JSON. Single-threaded, like the ingest path.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from persona_server.extraction.offline import OfflineExtractor
from persona_server.ports.extractor import ExtractionInput

LINES = [
    "Hi Sam, long time! How are things going with the new flat?",
    "I went to a climbing gym yesterday and it was so much fun.",
    "Thanks! That sounds great. Yesterday I took the kids to the park.",
    "I moved to Lisbon three years ago and I still love it here.",
    "My sister Anna lives in Porto and works at a bakery near the river.",
    "I'm planning to run a half marathon next spring, wish me luck!",
    "Dr. Patel said I should cut down on coffee, which is hard because I love coffee.",
    "We spent last weekend hiking in the Smoky Mountains with my brother Tom.",
    "Honestly I can't stand crowded places, I'm more of a homebody.",
    "Congrats on the new job! When do you start at Google?",
    "I finally finished my first pottery class last Friday.",
    "My favourite food is sushi, but I'm trying to eat less fish these days.",
    "Not much, just work and more work. How about you?",
    "I've been thinking about adopting a dog, maybe a rescue from the shelter.",
    "Family is really important to me, so we do Sunday dinners every week.",
    "Haha yes! I remember that trip to Rome in 2019, the food was amazing.",
    "I gave up on learning the violin, it just wasn't for me.",
    "My goal is to save enough for a house by next year.",
    "We're going to Japan in March for two weeks, I can't wait!",
    "I'm allergic to peanuts so I always check the labels.",
    "That's awesome, Jolene! Your paintings are beautiful.",
    "Melanie and I met at Stanford University back in 2015.",
    "I work as a nurse at St. Mary's Hospital, mostly night shifts.",
    "lol no, i was at home all day watching movies",
    "Tonight I'm cooking pasta for my roommate Priya and her boyfriend.",
    "I'm a pretty introverted person but I enjoy small dinner parties.",
    "The conference in Berlin was two weeks ago and I'm still exhausted.",
    "I want to learn Spanish before our trip to Mexico next summer.",
    "Grandma turned 90 on May 7, 2023 and we threw her a surprise party!",
    "Ok see you tomorrow, bye!",
]


def corpus(n: int) -> list[ExtractionInput]:
    base = datetime(2023, 5, 8, 14, 0, tzinfo=UTC)
    speakers = ["Caroline", "Jon", "", "Maria"]
    return [
        ExtractionInput(
            text=LINES[i % len(LINES)],
            occurred_at=base + timedelta(hours=i),
            speaker=speakers[i % len(speakers)],
        )
        for i in range(n)
    ]


def locomo_corpus(data_dir: Path) -> list[ExtractionInput]:
    items: list[ExtractionInput] = []
    for path in sorted(data_dir.glob("*.json")):
        conv = json.loads(path.read_text())
        conv = conv.get("conversation", conv)
        for key, turns in conv.items():
            if not re.fullmatch(r"session_\d+", key) or not isinstance(turns, list):
                continue
            when = datetime.strptime(conv[f"{key}_date_time"], "%I:%M %p on %d %B, %Y")
            for turn in turns:
                items.append(
                    ExtractionInput(
                        text=turn["text"],
                        occurred_at=when.replace(tzinfo=UTC),
                        speaker=turn["speaker"],
                    )
                )
    return items


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(items: list[ExtractionInput], repeats: int) -> dict[str, Any]:
    extractor = OfflineExtractor()
    for item in items[:200]:  # warm-up: regex caches, name memo
        extractor.extract_sync(item)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            extractor.extract_sync(item)
        best = min(best, time.perf_counter() - start)
    latencies: list[float] = []
    for item in items:
        start = time.perf_counter()
        extractor.extract_sync(item)
        latencies.append((time.perf_counter() - start) * 1e6)
    found = [extractor.extract_sync(item) for item in items]
    return {
        "items": len(items),
        "items_per_s": round(len(items) / best, 1),
        "mean_us": round(statistics.fmean(latencies), 1),
        "p50_us": round(percentile(latencies, 0.50), 1),
        "p95_us": round(percentile(latencies, 0.95), 1),
        "p99_us": round(percentile(latencies, 0.99), 1),
        "max_us": round(max(latencies), 1),
        "mean_chars": round(statistics.fmean(len(i.text) for i in items), 1),
        "per_item": {
            "entities": round(statistics.fmean(len(r.entities) for r in found), 2),
            "relations": round(statistics.fmean(len(r.relations) for r in found), 2),
            "psyche": round(statistics.fmean(len(r.psyche) for r in found), 2),
            "goals": round(statistics.fmean(len(r.goals) for r in found), 2),
            "dates": round(statistics.fmean(len(r.dates) for r in found), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--items", type=int, default=5000, help="built-in corpus size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--locomo", type=Path, help="directory of LoCoMo *.json to measure too")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "extractor": OfflineExtractor.name,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "builtin": measure(corpus(args.items), args.repeats),
    }
    if args.locomo:
        report["locomo"] = measure(locomo_corpus(args.locomo), args.repeats)

    for name in ("builtin", "locomo"):
        if name in report:
            r = report[name]
            print(
                f"{name:8} {r['items']:6} items  {r['items_per_s']:9.0f} items/s  "
                f"mean {r['mean_us']:.0f} us  p50 {r['p50_us']:.0f} us  p95 {r['p95_us']:.0f} us  "
                f"p99 {r['p99_us']:.0f} us  max {r['max_us']:.0f} us  ({r['mean_chars']:.0f} chars)"
            )
            print(f"{'':8} per item: {r['per_item']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
