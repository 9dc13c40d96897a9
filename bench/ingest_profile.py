"""Where batch Ingest spends its time, in process: embedding against everything else.

    python bench/ingest_profile.py [--items 2000] [--fill 0] [--locomo ../shared/locomo/dev]
        [--out F.json] [--batch-size 32] [--max-batch-tokens 512] [--activations float|int8]
        [--unfused]

Starts the offline app in process on a fresh temporary data directory (no gRPC) and ingests
`bench/latency.py`'s synthetic lines (or, with --locomo, the dev conversations' turns) in
batches of 100, as `bench/latency.py` does (after `--fill` uncounted items into the same user,
to profile a grown store). The embedder is wrapped to count its calls, texts, word pieces and
wall time, and the store's episode and derived writes, the extraction and the extractor to time
them, so the print-out splits ingest into its phases (`phases_s`; extraction includes the
derived write and the extractor, and its own embedding of new derived memories).
Timing figures: run under `flock /tmp/persona-bench.lock` (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from latency import FIRST_DAY, SEED, texts

from persona_server.adapters.embedders.local_onnx import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BATCH_TOKENS,
    LocalOnnxEmbedder,
)
from persona_server.app import start
from persona_server.config import Settings
from persona_server.domain.models import SourceType, UserRef
from persona_server.services.commands import IngestCommand, NewItem

BATCH = 100


class PhaseTimes:
    """Wall seconds spent in wrapped async methods, by phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner: object, method: str, phase: str) -> None:
        inner = getattr(owner, method)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await inner(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed

        setattr(owner, method, timed)


class CountingEmbedder:
    """The local embedder, with a tally of what each call costs."""

    def __init__(self, inner: LocalOnnxEmbedder) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0
        self.seconds = 0.0
        self.call_sizes: list[int] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    async def start(self) -> None:
        await self.inner.start()

    async def embed(self, batch: Sequence[str]) -> npt.NDArray[np.float32]:
        started = time.perf_counter()
        out = await self.inner.embed(batch)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        self.texts += len(batch)
        self.call_sizes.append(len(batch))
        return out

    async def close(self) -> None:
        await self.inner.close()


def synthetic_items(n: int) -> list[NewItem]:
    stream = texts(SEED)
    return [
        NewItem(
            text=next(stream),
            source_id=f"item-{i:07d}",
            occurred_at=FIRST_DAY + timedelta(minutes=10 * i),
            source_type=SourceType.CHAT_MESSAGE,
            speaker="me",
        )
        for i in range(n)
    ]


def locomo_items(data_dir: Path, n: int) -> list[tuple[str, list[NewItem]]]:
    from locomo import load

    out = []
    left = n
    for conv in load(data_dir):
        items = [
            NewItem(
                text=t.ingest_text,
                source_id=t.dia_id,
                occurred_at=t.occurred_at,
                source_type=SourceType.CHAT_MESSAGE,
                speaker=t.speaker,
            )
            for t in conv.turns
        ][:left]
        out.append((conv.user_id, items))
        left -= len(items)
        if left <= 0:
            break
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    embedder = CountingEmbedder(
        LocalOnnxEmbedder(
            batch_size=args.batch_size,
            max_batch_tokens=args.max_batch_tokens,
            activations=args.activations,
            fused=not args.unfused,
        )
    )
    await embedder.start()
    with tempfile.TemporaryDirectory(prefix="persona-ingest-profile-") as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, listen="127.0.0.1:0", data_dir=Path(tmp), llm_model=""
        )
        app = await start(settings, embedder=embedder)  # type: ignore[arg-type]
        try:
            # Uncounted warm-up into another user: first runs allocate onnxruntime's arenas.
            warm = synthetic_items(300)
            warm_user = UserRef(tenant="default", user_id="warm")
            for i in range(0, len(warm), BATCH):
                cmd = IngestCommand(user=warm_user, items=warm[i : i + BATCH])
                await app.services.ingest.ingest(cmd)
            if args.locomo:
                users = locomo_items(args.locomo, args.items)
            else:
                stream = synthetic_items(args.fill + args.items)
                fill, counted = stream[: args.fill], stream[args.fill :]
                user = UserRef(tenant="default", user_id="bench-user")
                for i in range(0, len(fill), BATCH):
                    await app.services.ingest.ingest(
                        IngestCommand(user=user, items=fill[i : i + BATCH])
                    )
                users = [("bench-user", counted)]
            embedder.calls = embedder.texts = 0
            embedder.seconds = 0.0
            embedder.call_sizes = []
            phases = PhaseTimes()
            phases.wrap(app.store.episodes, "put_batch", "episode_write")
            phases.wrap(app.store.memories, "write_derived", "derived_write")
            # The service's private parts: a bench may look inside, the app does not expose them.
            extraction = app.services.ingest._extraction
            if extraction is not None:
                phases.wrap(extraction, "submit", "extraction")
                pipeline = getattr(extraction, "_pipeline", None)
                if pipeline is not None:
                    phases.wrap(pipeline._extractor, "extract", "extractor")
            started = time.perf_counter()
            count = 0
            for user_id, items in users:
                user = UserRef(tenant="default", user_id=user_id)
                for i in range(0, len(items), BATCH):
                    cmd = IngestCommand(user=user, items=items[i : i + BATCH])
                    await app.services.ingest.ingest(cmd)
                count += len(items)
            total = time.perf_counter() - started
        finally:
            await app.stop(grace_s=0)
    sizes = embedder.call_sizes
    return {
        "data": "locomo" if args.locomo else "latency.py synthetic",
        "embedder": {
            "batch_size": args.batch_size,
            "max_batch_tokens": args.max_batch_tokens,
            "activations": args.activations,
        },
        "items": count,
        "seconds": round(total, 3),
        "items_per_s": round(count / total, 1),
        "embed_seconds": round(embedder.seconds, 3),
        "embed_share": round(embedder.seconds / total, 3),
        "embed_calls": embedder.calls,
        "embed_texts": embedder.texts,
        "embed_texts_per_item": round(embedder.texts / count, 3),
        "call_size_mean": round(sum(sizes) / len(sizes), 1) if sizes else 0,
        "fill": 0 if args.locomo else args.fill,
        "phases_s": {k: round(v, 3) for k, v in phases.seconds.items()},
        "phase_shares": {k: round(v / total, 3) for k, v in phases.seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--fill", type=int, default=0, help="uncounted items ingested first")
    parser.add_argument("--locomo", type=Path, help="ingest these LoCoMo conversations instead")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--max-batch-tokens", type=int, default=DEFAULT_MAX_BATCH_TOKENS)
    parser.add_argument("--activations", choices=("float", "int8"), default="float")
    parser.add_argument("--unfused", action="store_true", help="the float graph as shipped")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
