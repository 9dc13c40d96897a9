"""Load: Recall and Ingest from 50 concurrent gRPC clients (ghz), then both at once.

    python bench/load.py --out FILE.json [--memories 10000] [--clients 50] [--duration 60]

Starts an offline server (embedded store, local embeddings), fills ONE user with `--memories`
synthetic chat lines (the same generator as bench/latency.py), then drives it over loopback
with ghz (https://ghz.sh, a Go load tool; `make bench-load` installs the pinned version into
.tools/bin with `go install` through the Go module proxy):

1. Recall for `--duration` seconds from `--clients` concurrent clients (queries round-robin from
   a fixed set of 200, max_results 10);
2. Ingest for `--duration` seconds from `--clients` concurrent clients (one new item per call,
   unique source ids, into the same user);
3. both at once, each with `--clients` clients.

ghz reads the API from a descriptor set that buf builds from protos/. Reported per phase:
requests per second, latency p50/p95/p99 (ms), errors (every call that did not end OK, by
status), and the server's peak resident memory (VmHWM) over the whole run. Target: errors = 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _server import ServerProcess, exit_on_sigterm
from latency import Filler, machine, queries

from persona import AsyncPersonaClient

ROOT = Path(__file__).resolve().parent.parent
GHZ_VERSION = "v0.121.0"
USER = "load-user"
SERVICE = "persona.v1.MemoryService"


def find_ghz(explicit: str | None) -> str:
    for candidate in (explicit, str(ROOT / ".tools" / "bin" / "ghz"), shutil.which("ghz")):
        if candidate and Path(candidate).is_file():
            return candidate
    sys.exit(
        "ghz not found: run `make bench-load` "
        f"(go install github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION})"
    )


def protoset(directory: Path) -> Path:
    """The API's descriptors (imports included) as ghz reads them, built by buf from protos/."""
    buf = Path(sys.executable).parent / "buf"
    out = directory / "persona.protoset"
    subprocess.run(
        [str(buf), "build", "--as-file-descriptor-set", "-o", str(out)], cwd=ROOT, check=True
    )
    return out


def _ghz(
    ghz: str, descriptors: Path, target: str, call: str, data: Any, clients: int, seconds: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "data.json"
        data_file.write_text(json.dumps(data))
        out = Path(tmp) / "report.json"
        command = [
            ghz,
            "--insecure",
            "--protoset",
            str(descriptors),
            "--call",
            f"{SERVICE}.{call}",
            "--data-file",
            str(data_file),
            "--concurrency",
            str(clients),
            # One connection per client, as 50 separate services would have.
            "--connections",
            str(clients),
            "--duration",
            f"{seconds}s",
            "--timeout",
            "30s",
            # At the end of the duration, let calls in flight finish instead of cutting their
            # connections (which ghz would count as UNAVAILABLE errors of the server's).
            "--duration-stop",
            "wait",
            "--format",
            "json",
            "--output",
            str(out),
            target,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"ghz failed ({done.returncode}): {done.stderr or done.stdout}")
        return dict(json.loads(out.read_text()))


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    latencies = {
        d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []
    }
    statuses = dict(report.get("statusCodeDistribution") or {})
    return {
        "requests": report["count"],
        "rps": round(report["rps"], 1),
        "p50_ms": round(latencies.get(50, float("nan")), 2),
        "p95_ms": round(latencies.get(95, float("nan")), 2),
        "p99_ms": round(latencies.get(99, float("nan")), 2),
        "errors": sum(n for status, n in statuses.items() if status != "OK"),
        "statuses": statuses,
    }


def _recall_data() -> list[dict[str, Any]]:
    return [{"user_id": USER, "query": q, "max_results": 10} for q in queries(20261202, 200)]


def _ingest_data(phase: str) -> dict[str, Any]:
    # ghz fills the templates per request: every call stores one new item.
    return {
        "user_id": USER,
        "items": [
            {
                "text": "Load note {{.RequestNumber}}: walked to the market and bought figs",
                "source_id": phase + "-{{.UUID}}",
                "source_type": "SOURCE_TYPE_CHAT_MESSAGE",
                "speaker": "me",
            }
        ],
    }


class PeakMemory:
    """Samples the server's VmHWM (its own high-water mark) until stopped."""

    def __init__(self, server: ServerProcess) -> None:
        self._server = server
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.peak_kb = max(self.peak_kb, self._server.memory_kb().get("VmHWM", 0))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self._server.memory_kb().get("VmHWM", 0))


async def _fill(target: str, memories: int) -> float:
    async with AsyncPersonaClient(target) as client:
        seconds, _ = await Filler(client, user=USER).grow_to(memories)
    return seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    ghz = find_ghz(args.ghz)
    with tempfile.TemporaryDirectory() as tmp, ServerProcess() as server:
        descriptors = protoset(Path(tmp))
        target = server.target
        fill_s = asyncio.run(_fill(target, args.memories))
        print(f"filled {USER} with {args.memories} memories in {fill_s:.0f} s", flush=True)
        result: dict[str, Any] = {}
        with PeakMemory(server) as memory:
            recall = _ghz(
                ghz, descriptors, target, "Recall", _recall_data(), args.clients, args.duration
            )
            result["recall"] = _summary(recall)
            print(f"recall: {result['recall']}", flush=True)
            ingest = _ghz(
                ghz,
                descriptors,
                target,
                "Ingest",
                _ingest_data("ingest"),
                args.clients,
                args.duration,
            )
            result["ingest"] = _summary(ingest)
            print(f"ingest: {result['ingest']}", flush=True)
            both: dict[str, dict[str, Any]] = {}

            def phase(call: str, data: Any) -> None:
                both[call] = _ghz(ghz, descriptors, target, call, data, args.clients, args.duration)

            threads = [
                threading.Thread(target=phase, args=("Recall", _recall_data())),
                threading.Thread(target=phase, args=("Ingest", _ingest_data("mixed"))),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            parts = {call.lower(): _summary(report) for call, report in both.items()}
            result["mixed"] = {
                "rps": round(sum(p["rps"] for p in parts.values()), 1),
                # The slower of the two: what a client of either call could wait.
                "p50_ms": max(p["p50_ms"] for p in parts.values()),
                "p95_ms": max(p["p95_ms"] for p in parts.values()),
                "p99_ms": max(p["p99_ms"] for p in parts.values()),
                "errors": sum(p["errors"] for p in parts.values()),
                **parts,
            }
            print(f"mixed: {result['mixed']}", flush=True)
        result["server_rss_mb"] = round(memory.peak_kb / 1024, 1)
        result["data_mb"] = round(server.data_bytes() / 1e6, 1)
    result["settings"] = {
        "memories": args.memories,
        "clients": args.clients,
        "duration_s": args.duration,
        "ghz": GHZ_VERSION,
        "fill_s": round(fill_s, 1),
    }
    result["machine"] = machine()
    result["command"] = "python bench/load.py " + " ".join(sys.argv[1:])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=int, default=60, help="seconds per phase")
    parser.add_argument("--ghz", help="path to ghz (default .tools/bin/ghz, then PATH)")
    args = parser.parse_args()
    exit_on_sigterm()
    started = time.monotonic()
    result = run(args)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    errors = sum(result[p]["errors"] for p in ("recall", "ingest", "mixed"))
    print(f"server peak RSS {result['server_rss_mb']} MB; errors {errors}; wrote {args.out}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
