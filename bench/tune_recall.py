"""Tune Recall on the LoCoMo dev conversations, in process, without re-ingesting every time.

    python bench/tune_recall.py ../shared/locomo/dev --cache /tmp/locomo-cache [--set k=v ...]
        [--split 26,30,42] [--out rows.json]

The first run ingests every conversation (offline extractor, local embedder) into the cache
directory; later runs reuse it and only run Recall, so one variant of the fusion parameters
takes seconds. `--set` overrides `RecallTuning` fields. Scores follow `bench/locomo.py` (the same
evidence and context-size rules); the published figures come from `bench/locomo.py`, which runs
the real server over gRPC. Tune on dev data only, and check a change on both halves of
`--split` (as `bench/locomo.py`): a change that helps one half and hurts the other is fitting.
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

from locomo import (
    MethodScores,
    Result,
    _stems,
    format_halves,
    load,
    per_conversation,
    score_question,
    split_summaries,
)

from persona_server.app import App, start
from persona_server.blas import configure_blas
from persona_server.config import Settings
from persona_server.domain.models import ChatRole, MemoryType, SourceType, UserRef
from persona_server.extraction.offline.query_time import query_time_spans
from persona_server.ports.graph_store import MemoryFilter
from persona_server.services.commands import IngestCommand, NewItem, RecallQuery
from persona_server.services.recall import RecallService, RecallTuning
from persona_server.services.related_words import RelatedWords

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
    if isinstance(default, str):
        return raw
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
    app: App,
    convs: list[Any],
    tuning: RecallTuning,
    types: frozenset[MemoryType] = frozenset(),
    split: tuple[str, ...] = (),
    related_options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    related = RelatedWords(app.store, app.embedder, **(related_options or {}))
    service = RecallService(
        app.store, app.embedder, tuning, time_spans=query_time_spans, related=related
    )
    rows: list[dict[str, Any]] = []
    latencies: list[float] = []
    for conv in convs:
        user = UserRef(tenant=TENANT, user_id=conv.user_id)
        turn_text = conv.turn_text
        for q in conv.questions:
            started = time.perf_counter()
            out = await service.recall(
                RecallQuery(
                    user=user, query=q.question, max_results=20, filter=MemoryFilter(types=types)
                )
            )
            latencies.append((time.perf_counter() - started) * 1000)
            results = [
                Result(
                    tuple(dict.fromkeys(s for m in (r.memory, *r.joined) for s in m.source_ids)),
                    "\n".join(m.text for m in (r.memory, *r.joined)),
                    r.memory.type.value,
                )
                for r in out.results
            ]
            rows.append(score_question(conv, q, results, turn_text))
    report = _rounded(MethodScores(rows).summary())
    latencies.sort()
    report["recall_ms_p50"] = round(latencies[len(latencies) // 2], 1)
    report["related_words_embedded"] = related.embedded_for_queries
    if split:
        report["halves"] = {h: _rounded(v) for h, v in split_summaries(rows, split).items()}
    report["per_conversation"] = {
        c: _rounded(v)["recall_at"]["10"] for c, v in per_conversation(rows).items()
    }
    return report, rows


def _rounded(summary: dict[str, Any]) -> dict[str, Any]:
    out = dict(summary)
    out["recall_at"] = {k: round(v, 4) for k, v in summary["recall_at"].items()}
    out["context_chars_at"] = {k: round(v) for k, v in summary["context_chars_at"].items()}
    out["per_category"] = {
        c: {"questions": v["questions"], "recall_at": {"10": round(v["recall_at"]["10"], 3)}}
        for c, v in summary["per_category"].items()
    }
    return out


async def main_async(args: argparse.Namespace) -> None:
    convs = load(Path(args.data_dir))
    fresh = not (args.cache / "data" / "persona.db").exists()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, listen="127.0.0.1:0", data_dir=args.cache / "data", llm_model=""
    )
    # As the server does (`serve`): BLAS on one thread, so that in-process latency is the
    # server's and not OpenBLAS's threads against onnxruntime's.
    configure_blas(settings.blas_threads)
    app = await start(settings)
    try:
        if fresh:
            await ingest_all(app, convs)
        types = frozenset(MemoryType(t) for t in args.types)
        related = {k: json.loads(v) for k, _, v in (p.partition("=") for p in args.related)}
        report, rows = await evaluate(app, convs, tuning_from(args.set), types, args.split, related)
        print(format_halves(report["halves"]) if args.split else "", file=sys.stderr)
        print(json.dumps({k: v for k, v in report.items() if k != "halves"}))
        if args.out:
            args.out.write_text(json.dumps({"report": report, "per_question": rows}) + "\n")
    finally:
        await app.stop(grace_s=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument(
        "--related",
        action="append",
        default=[],
        metavar="OPTION=JSON",
        help="RelatedWords keyword arguments, e.g. min_similarity=0.6 per_word=3",
    )
    parser.add_argument("--types", nargs="*", default=[], help="restrict results to these types")
    parser.add_argument("--split", type=_stems, default=(), metavar="STEMS")
    parser.add_argument("--out", type=Path, help="per-question rows (LoCoMo text: keep out of git)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
