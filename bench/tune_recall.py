"""Tune Recall on the LoCoMo dev conversations, in process, without re-ingesting every time.

    python bench/tune_recall.py ../shared/locomo/dev --cache /tmp/locomo-cache [--set k=v ...]

The first run ingests every conversation (offline extractor, local embedder) into the cache
directory; later runs reuse it and only run Recall, so one variant of the fusion parameters
takes seconds. `--set` overrides `RecallTuning` fields. Scores follow `bench/locomo.py` (the same
evidence and context-size rules); the published figures come from `bench/locomo.py`, which runs
the real server over gRPC. Tune on dev data only.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from locomo import KS, Result, load, question_metrics

from persona_server.app import App, start
from persona_server.config import Settings
from persona_server.domain.models import ChatRole, MemoryType, SourceType, UserRef
from persona_server.extraction.offline.query_time import query_time_spans
from persona_server.ports.graph_store import MemoryFilter
from persona_server.services.commands import IngestCommand, NewItem, RecallQuery
from persona_server.services.recall import RecallService, RecallTuning

TENANT = "default"


async def ingest_all(app: App, convs: list[Any]) -> None:
    for conv in convs:
        user = UserRef(tenant=TENANT, user_id=conv.user_id)
        items = [
            NewItem(
                text=t.ingest_text,
                source_id=t.dia_id,
                occurred_at=t.occurred_at,
                source_type=SourceType.CHAT_MESSAGE,
                speaker=t.speaker,
                role=ChatRole.UNSPECIFIED,
            )
            for t in conv.turns
        ]
        started = time.perf_counter()
        for i in range(0, len(items), 100):
            await app.services.ingest.ingest(IngestCommand(user=user, items=items[i : i + 100]))
        rate = len(items) / (time.perf_counter() - started)
        print(f"ingested {conv.name}: {len(items)} turns, {rate:.0f}/s", file=sys.stderr)


def _coerce(field: dataclasses.Field[Any], raw: str) -> Any:
    default = field.default
    if isinstance(default, bool):
        return raw.lower() in {"1", "true", "yes"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return json.loads(raw)


def tuning_from(pairs: list[str]) -> RecallTuning:
    fields = {f.name: f for f in dataclasses.fields(RecallTuning)}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, _, raw = pair.partition("=")
        if name not in fields:
            raise SystemExit(f"unknown RecallTuning field {name!r}; fields: {sorted(fields)}")
        values[name] = _coerce(fields[name], raw)
    return RecallTuning(**values)


async def evaluate(
    app: App, convs: list[Any], tuning: RecallTuning, types: frozenset[MemoryType] = frozenset()
) -> dict[str, Any]:
    service = RecallService(app.store, app.embedder, tuning, time_spans=query_time_spans)
    recall = {str(k): 0.0 for k in KS}
    context = {str(k): 0.0 for k in KS}
    by_cat: dict[int, list[float]] = {}
    n = 0
    for conv in convs:
        user = UserRef(tenant=TENANT, user_id=conv.user_id)
        turn_text = conv.turn_text
        for q in conv.questions:
            out = await service.recall(
                RecallQuery(
                    user=user, query=q.question, max_results=20, filter=MemoryFilter(types=types)
                )
            )
            results = [
                Result(tuple(r.memory.source_ids), r.memory.text, r.memory.type.value)
                for r in out.results
            ]
            rec, ctx, _ = question_metrics(results, q.evidence, turn_text)
            for k in rec:
                recall[k] += rec[k]
                context[k] += ctx[k]
            by_cat.setdefault(q.category, []).append(rec["10"])
            n += 1
    return {
        "questions": n,
        "recall_at": {k: round(v / n, 4) for k, v in recall.items()},
        "context_chars_at": {k: round(v / n) for k, v in context.items()},
        "recall10_by_category": {c: round(sum(v) / len(v), 3) for c, v in sorted(by_cat.items())},
    }


async def main_async(args: argparse.Namespace) -> None:
    convs = load(Path(args.data_dir))
    fresh = not (args.cache / "data" / "persona.db").exists()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, listen="127.0.0.1:0", data_dir=args.cache / "data", llm_model=""
    )
    app = await start(settings)
    try:
        if fresh:
            await ingest_all(app, convs)
        types = frozenset(MemoryType(t) for t in args.types)
        report = await evaluate(app, convs, tuning_from(args.set), types)
        print(json.dumps(report))
    finally:
        await app.stop(grace_s=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--types", nargs="*", default=[], help="restrict results to these types")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
