"""LoCoMo evidence recall: Persona's Recall against plain BM25 and MiniLM over raw turns.

    python bench/locomo.py DATA_DIR --out results.json [--limit-conversations N]
        [--limit-questions N] [--no-baselines] [--conversations STEMS] [--split STEMS]

DATA_DIR holds LoCoMo conversation JSON files (e.g. ../shared/locomo/dev). The data is CC BY-NC
4.0 evaluation data: it is read from DATA_DIR at run time and never copied into the project.

Protocol (docs/DESIGN §4): a fresh offline server (no LLM, local embeddings) in a subprocess;
one user per conversation (user id = file stem); every turn ingested through the SDK with
source_id = dia_id, occurred_at = its session's date and time as UTC, the speaker, and the image
caption appended as " [image: ...]". One Recall per question with max_results = 20.

- Evidence: each `evidence` string split on ";" and stripped; ids shaped D<n>:<n> that name a
  turn of the conversation are kept; a question left with none, and category 5, are excluded.
- recall@k: the fraction of a question's evidence ids among the source ids of the top k
  results, averaged over questions. A result that is a passage (`RecallResult.joined`) has the
  source ids of all its memories.
- Context size: a result's size is the larger of the length of its text (a passage's: all its
  memories' texts) and the total len(text) of the turns it is credited with (its source ids
  that are turns of the conversation); reported as the mean over questions of the total size
  of the top k results.

Guarding against fitting the dev data: `--conversations 26,30` runs only the conversations whose
file stems are named; `--split 26,30,42` also reports two halves, A (the stems named) and B (the
rest), each with recall@k, context size and per-category recall, so a change tuned on one half
is checked on the other. Per-conversation figures are always in the JSON report.

Baselines on the same turns and questions, computed in this process: BM25 Okapi and MiniLM
cosine over raw turns, each document "speaker (session date): text [image: caption]", and their
reciprocal-rank fusion. A baseline result is one turn; its own text is the turn's ingested text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _baselines import bm25_rankings, dense_rankings, rrf
from _server import ServerProcess, add_embedder_options, exit_on_sigterm, percentile

from persona import AsyncPersonaClient, Item
from persona.v1 import memory_pb2, memory_service_pb2

KS = (5, 10, 20)
MAX_RESULTS = 20
INGEST_BATCH = 100
EXCLUDED_CATEGORY = 5
SESSION_TIME_FORMAT = "%I:%M %p on %d %B, %Y"  # "1:56 pm on 8 May, 2023"
EVIDENCE_ID = re.compile(r"D\d+:\d+")
SESSION_KEY = re.compile(r"session_(\d+)")
FUSION_DEPTH = 100  # how deep each baseline ranking goes into the fusion
EXTRACTION_WAIT_S = 600.0


@dataclass(frozen=True)
class Turn:
    dia_id: str
    speaker: str
    text: str
    caption: str
    session_time: str  # as written in the data
    occurred_at: datetime

    @property
    def ingest_text(self) -> str:
        return f"{self.text} [image: {self.caption}]" if self.caption else self.text

    @property
    def document(self) -> str:
        """The baselines' document: the turn prefixed with speaker and session date."""
        return f"{self.speaker} ({self.session_time}): {self.ingest_text}"


@dataclass(frozen=True)
class Question:
    conversation: str  # file name
    question: str
    category: int
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    name: str  # file name
    user_id: str  # file stem
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]

    @property
    def turn_text(self) -> dict[str, str]:
        return {t.dia_id: t.text for t in self.turns}


def parse_session_time(value: str) -> datetime:
    """LoCoMo's session stamps, e.g. "1:56 pm on 8 May, 2023", read as UTC."""
    return datetime.strptime(value.strip(), SESSION_TIME_FORMAT).replace(tzinfo=UTC)


def evidence_ids(raw: Iterable[str], turn_ids: set[str]) -> tuple[str, ...]:
    """DESIGN §4's evidence rule; duplicates are counted once."""
    out: list[str] = []
    for entry in raw:
        for part in str(entry).split(";"):
            ident = part.strip()
            if EVIDENCE_ID.fullmatch(ident) and ident in turn_ids and ident not in out:
                out.append(ident)
    return tuple(out)


def load_conversation(path: Path) -> Conversation:
    data = json.loads(path.read_text(encoding="utf-8"))
    conv = data.get("conversation", data)  # some releases nest the sessions one level down
    sessions = sorted(
        (int(m.group(1)), key) for key in conv if (m := SESSION_KEY.fullmatch(key)) is not None
    )
    turns: list[Turn] = []
    for _, key in sessions:
        stamp = str(conv[f"{key}_date_time"])
        when = parse_session_time(stamp)
        for raw in conv[key]:
            turns.append(
                Turn(
                    dia_id=str(raw["dia_id"]),
                    speaker=str(raw["speaker"]),
                    text=str(raw["text"]),
                    caption=str(raw.get("blip_caption") or ""),
                    session_time=stamp,
                    occurred_at=when,
                )
            )
    turn_ids = {t.dia_id for t in turns}
    if len(turn_ids) != len(turns):
        raise ValueError(f"{path}: duplicate dia_id")
    questions: list[Question] = []
    for qa in data["qa"]:
        category = int(qa["category"])
        if category == EXCLUDED_CATEGORY:
            continue
        evidence = evidence_ids(qa.get("evidence", []), turn_ids)
        if evidence:
            questions.append(Question(path.name, str(qa["question"]), category, evidence))
    return Conversation(path.name, path.stem, tuple(turns), tuple(questions))


def load(
    data_dir: Path,
    *,
    limit_conversations: int | None = None,
    limit_questions: int | None = None,
    conversations: Sequence[str] = (),
) -> list[Conversation]:
    """The conversations of `data_dir` in file order; `conversations` keeps only those stems."""
    paths = sorted(data_dir.glob("*.json"))
    if conversations:
        missing = set(conversations) - {p.stem for p in paths}
        if missing:
            raise FileNotFoundError(f"no conversation {sorted(missing)} in {data_dir}")
        paths = [p for p in paths if p.stem in conversations]
    if not paths:
        raise FileNotFoundError(f"no LoCoMo *.json files in {data_dir}")
    convs = [load_conversation(p) for p in paths[:limit_conversations]]
    if limit_questions is not None:
        convs = [
            Conversation(c.name, c.user_id, c.turns, c.questions[:limit_questions]) for c in convs
        ]
    return convs


# --- scoring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One ranked result, reduced to what the metrics need."""

    source_ids: tuple[str, ...]
    text: str
    type: str


def result_chars(result: Result, turn_text: dict[str, str]) -> int:
    """DESIGN §4's context-size rule."""
    credited = {s for s in result.source_ids if s in turn_text}
    return max(len(result.text), sum(len(turn_text[s]) for s in credited))


def question_metrics(
    results: Sequence[Result], evidence: Sequence[str], turn_text: dict[str, str]
) -> tuple[dict[str, float], dict[str, int], list[int]]:
    chars = [result_chars(r, turn_text) for r in results]
    recall: dict[str, float] = {}
    context: dict[str, int] = {}
    for k in KS:
        found = {s for r in results[:k] for s in r.source_ids}
        recall[str(k)] = sum(1 for e in evidence if e in found) / len(evidence)
        context[str(k)] = sum(chars[:k])
    return recall, context, chars


@dataclass
class MethodScores:
    """Per-question results of one method, in question order."""

    rows: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        n = len(self.rows)
        by_category: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in self.rows:
            by_category[row["category"]].append(row)
        return {
            "recall_at": {str(k): _mean(r["recall"][str(k)] for r in self.rows) for k in KS},
            "context_chars_at": {
                str(k): _mean(r["context_chars"][str(k)] for r in self.rows) for k in KS
            },
            "per_category": {
                str(cat): {
                    "questions": len(rows),
                    "recall_at": {str(k): _mean(r["recall"][str(k)] for r in rows) for k in KS},
                }
                for cat, rows in sorted(by_category.items())
            },
            "questions": n,
        }


def split_summaries(
    rows: Sequence[dict[str, Any]], half_a: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Summaries of half A (the conversations whose stems `half_a` names) and half B (the rest),
    each naming its conversations."""
    names = {"A": set(half_a)}
    out: dict[str, dict[str, Any]] = {}
    for half in ("A", "B"):
        picked = [r for r in rows if (Path(r["conversation"]).stem in names["A"]) == (half == "A")]
        summary = MethodScores(picked).summary()
        summary["conversations"] = sorted({r["conversation"] for r in picked})
        out[half] = summary
    return out


def per_conversation(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_conv: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_conv[row["conversation"]].append(row)
    return {name: MethodScores(picked).summary() for name, picked in by_conv.items()}


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.fmean(items) if items else float("nan")


def score_question(
    conv: Conversation, q: Question, results: Sequence[Result], turn_text: dict[str, str]
) -> dict[str, Any]:
    recall, context, chars = question_metrics(results, q.evidence, turn_text)
    return {
        "conversation": conv.name,
        "question": q.question,
        "category": q.category,
        "evidence": list(q.evidence),
        "recall": recall,
        "context_chars": context,
        "results": [
            {"source_ids": list(r.source_ids), "chars": c, "type": r.type}
            for r, c in zip(results, chars, strict=True)
        ],
    }


# --- Persona through the server -----------------------------------------------------------


def _type_name(value: memory_pb2.MemoryType.ValueType) -> str:
    return memory_pb2.MemoryType.Name(value).removeprefix("MEMORY_TYPE_").lower()


def _state_name(value: memory_pb2.ExtractionState.ValueType) -> str:
    return memory_pb2.ExtractionState.Name(value).removeprefix("EXTRACTION_STATE_").lower()


def persona_result(result: memory_service_pb2.RecallResult) -> Result:
    """A Recall result as scored: a passage is credited with the source ids of all its
    memories, and its own text is theirs together (so it pays for every turn it claims)."""
    members = (result.memory, *result.joined)
    return Result(
        tuple(dict.fromkeys(s for m in members for s in m.provenance.source_ids)),
        "\n".join(m.text for m in members),
        _type_name(result.memory.type),
    )


@dataclass
class PersonaRun:
    scores: MethodScores
    latencies_ms: list[float]
    ingest_items: int
    ingest_s: float
    ingest_states: dict[str, int]
    extraction_wait_s: float
    recall_states: dict[str, int]


async def _episode_states(client: AsyncPersonaClient, user_id: str) -> Counter[str]:
    """Extraction states of a user's episodes, keyed by state (and the extractor, if named)."""
    states: Counter[str] = Counter()
    async for memory in client.iter_memories(user_id, page_size=500, types="episode"):
        status = memory.episode.extraction
        extractor = f":{status.extractor}" if status.extractor else ""
        states[_state_name(status.state) + extractor] += 1
    return states


def _waiting_for_extractor(states: Counter[str]) -> bool:
    # A pending episode with no extractor named is one no extractor will ever pick up (the
    # server has none configured): waiting for it would never end.
    return any(key.startswith("pending:") for key in states)


async def _wait_for_extraction(
    client: AsyncPersonaClient, user_ids: Sequence[str], log: Callable[[str], None]
) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    while True:
        states: Counter[str] = Counter()
        for user_id in user_ids:
            states += await _episode_states(client, user_id)
        if not _waiting_for_extractor(states):
            return time.perf_counter() - start, dict(states)
        if time.perf_counter() - start > EXTRACTION_WAIT_S:
            log(f"extraction still pending after {EXTRACTION_WAIT_S:.0f} s: {dict(states)}")
            return time.perf_counter() - start, dict(states)
        await asyncio.sleep(0.5)


async def run_persona(
    target: str, convs: Sequence[Conversation], log: Callable[[str], None]
) -> PersonaRun:
    async with AsyncPersonaClient(target, default_timeout_s=120.0) as client:
        ingest_states: Counter[str] = Counter()
        items = 0
        ingest_s = 0.0
        for conv in convs:
            batches = [
                conv.turns[i : i + INGEST_BATCH] for i in range(0, len(conv.turns), INGEST_BATCH)
            ]
            start = time.perf_counter()
            for batch in batches:
                ingested = await client.ingest(
                    conv.user_id,
                    [
                        Item(
                            t.ingest_text,
                            source_id=t.dia_id,
                            occurred_at=t.occurred_at,
                            source_type="chat_message",
                            speaker=t.speaker,
                        )
                        for t in batch
                    ],
                    wait_for_extraction=False,
                )
                for result in ingested.results:
                    ingest_states[_state_name(result.extraction.state)] += 1
            ingest_s += time.perf_counter() - start
            items += len(conv.turns)
            log(f"ingested {conv.name}: {len(conv.turns)} turns")

        wait_s, recall_states = await _wait_for_extraction(client, [c.user_id for c in convs], log)

        rows: list[dict[str, Any]] = []
        latencies: list[float] = []
        for conv in convs:
            turn_text = conv.turn_text
            for q in conv.questions:
                start = time.perf_counter()
                response = await client.recall(conv.user_id, q.question, max_results=MAX_RESULTS)
                latencies.append((time.perf_counter() - start) * 1000)
                results = [persona_result(r) for r in response.results]
                rows.append(score_question(conv, q, results, turn_text))
            log(f"recalled {conv.name}: {len(conv.questions)} questions")
    return PersonaRun(
        MethodScores(rows), latencies, items, ingest_s, dict(ingest_states), wait_s, recall_states
    )


# --- baselines ----------------------------------------------------------------------------


def run_baselines(convs: Sequence[Conversation]) -> dict[str, MethodScores]:
    from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder

    embedder = LocalOnnxEmbedder()
    out: dict[str, MethodScores] = {"bm25": MethodScores([]), "dense": MethodScores([])}
    out["rrf"] = MethodScores([])
    for conv in convs:
        docs = [t.document for t in conv.turns]
        queries = [q.question for q in conv.questions]
        depth = min(FUSION_DEPTH, len(docs))
        ranked = {
            "bm25": bm25_rankings(docs, queries, depth),
            "dense": dense_rankings(embedder, docs, queries, depth),
        }
        ranked["rrf"] = [
            rrf([b, d], MAX_RESULTS) for b, d in zip(ranked["bm25"], ranked["dense"], strict=True)
        ]
        turn_text = conv.turn_text
        for method, rankings in ranked.items():
            for q, ranking in zip(conv.questions, rankings, strict=True):
                results = [
                    Result((conv.turns[i].dia_id,), conv.turns[i].ingest_text, "turn")
                    for i in ranking[:MAX_RESULTS]
                ]
                out[method].rows.append(score_question(conv, q, results, turn_text))
    return out


# --- the run ------------------------------------------------------------------------------


def run(
    data_dir: Path,
    *,
    limit_conversations: int | None = None,
    limit_questions: int | None = None,
    baselines: bool = True,
    conversations: Sequence[str] = (),
    split: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    activations: str = "float",
    spin_us: int = 0,
    fused: bool = True,
) -> dict[str, Any]:
    """Run the benchmark end to end and return the JSON-ready report."""
    say = log or (lambda _msg: None)
    convs = load(
        Path(data_dir),
        limit_conversations=limit_conversations,
        limit_questions=limit_questions,
        conversations=conversations,
    )
    started = time.perf_counter()
    env = {
        "PERSONA_EMBEDDINGS_LOCAL_ACTIVATIONS": activations,
        "PERSONA_EMBEDDINGS_LOCAL_SPIN_US": str(spin_us),
        "PERSONA_EMBEDDINGS_LOCAL_FUSED": "true" if fused else "false",
    }
    with ServerProcess(extra_env=env) as server:
        say(f"server up on {server.target} (pid {server.pid})")
        persona = asyncio.run(run_persona(server.target, convs, say))
        memory_kb = server.memory_kb()
    summary = persona.scores.summary()
    report: dict[str, Any] = {
        "questions": summary["questions"],
        "conversations": [c.name for c in convs],
        "turns": persona.ingest_items,
        "recall_at": summary["recall_at"],
        "context_chars_at": summary["context_chars_at"],
        "per_category": summary["per_category"],
        "per_conversation": per_conversation(persona.scores.rows),
        "recall_latency_ms": {
            "p50": percentile(persona.latencies_ms, 0.50),
            "p95": percentile(persona.latencies_ms, 0.95),
            "mean": _mean(persona.latencies_ms),
        },
        "ingest_items_per_s": persona.ingest_items / persona.ingest_s,
        "ingest_batch_size": INGEST_BATCH,
        "extraction": {
            "states_in_ingest_responses": persona.ingest_states,
            "wait_after_ingest_s": persona.extraction_wait_s,
            "states_before_recall": persona.recall_states,
        },
        "server_peak_rss_mb": memory_kb.get("VmHWM", 0) / 1024,
        "embedder": {"activations": activations, "spin_us": spin_us, "fused": fused},
        "result_types": dict(
            Counter(r["type"] for row in persona.scores.rows for r in row["results"])
        ),
    }
    if baselines:
        say("baselines: BM25, MiniLM, RRF")
        report["baselines"] = {
            name: {k: v for k, v in scores.summary().items() if k != "questions"}
            for name, scores in run_baselines(convs).items()
        }
    if split:
        report["halves"] = split_summaries(persona.scores.rows, split)
    report["wall_s"] = time.perf_counter() - started
    report["per_question"] = persona.scores.rows
    return report


def format_table(report: dict[str, Any]) -> str:
    rows = [("persona", report)]
    rows += [(name, scores) for name, scores in report.get("baselines", {}).items()]
    head = f"{'method':<8} " + " ".join(f"{'R@' + str(k):>6}" for k in KS)
    head += " " + " ".join(f"{'ctx@' + str(k):>8}" for k in KS)
    lines = [head]
    for name, scores in rows:
        line = f"{name:<8} " + " ".join(f"{scores['recall_at'][str(k)]:>6.3f}" for k in KS)
        line += " " + " ".join(f"{scores['context_chars_at'][str(k)]:>8.0f}" for k in KS)
        lines.append(line)
    names = " / ".join(name for name, _ in rows)
    lines.append("")
    lines.append(f"recall@10 by category ({names}):")
    for cat in sorted(report["per_category"], key=int):
        values = " / ".join(
            f"{s['per_category'][cat]['recall_at']['10']:.3f}"
            for _, s in rows
            if cat in s["per_category"]
        )
        lines.append(f"  category {cat} (n={report['per_category'][cat]['questions']}): {values}")
    lat = report["recall_latency_ms"]
    lines.append(
        f"questions {report['questions']}, turns {report['turns']}; "
        f"recall latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms; "
        f"ingest {report['ingest_items_per_s']:.0f} items/s (batches of "
        f"{report['ingest_batch_size']}); server peak RSS {report['server_peak_rss_mb']:.0f} MB"
    )
    if "halves" in report:
        lines.append(format_halves(report["halves"]))
    return "\n".join(lines)


def format_halves(halves: dict[str, dict[str, Any]]) -> str:
    """One line per half: recall@5/10/20, context@10 and recall@10 per category."""
    lines = []
    for half, s in halves.items():
        stems = ",".join(Path(c).stem for c in s["conversations"])
        cats = " ".join(
            f"c{cat}={v['recall_at']['10']:.3f}" for cat, v in sorted(s["per_category"].items())
        )
        lines.append(
            f"half {half} ({stems}; {s['questions']} q): "
            + " ".join(f"R@{k}={s['recall_at'][str(k)]:.3f}" for k in KS)
            + f" ctx@10={s['context_chars_at']['10']:.0f} {cats}"
        )
    return "\n".join(lines)


def _stems(value: str) -> tuple[str, ...]:
    return tuple(s.strip().removesuffix(".json") for s in value.split(",") if s.strip())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="directory of LoCoMo conversation *.json")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--limit-conversations", type=int, metavar="N")
    parser.add_argument(
        "--limit-questions", type=int, metavar="N", help="at most N questions per conversation"
    )
    parser.add_argument("--no-baselines", action="store_true", help="skip BM25/MiniLM/RRF")
    parser.add_argument(
        "--conversations",
        type=_stems,
        default=(),
        metavar="STEMS",
        help="only these conversations, by file stem (comma-separated, e.g. 26,30)",
    )
    parser.add_argument(
        "--split",
        type=_stems,
        default=(),
        metavar="STEMS",
        help="also report half A (these stems) and half B (the other conversations)",
    )
    add_embedder_options(parser, parallel_calls=False)
    args = parser.parse_args(argv)
    exit_on_sigterm()

    report = run(
        args.data_dir,
        limit_conversations=args.limit_conversations,
        limit_questions=args.limit_questions,
        baselines=not args.no_baselines,
        conversations=args.conversations,
        split=args.split,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
        activations=args.activations,
        spin_us=args.spin_us,
        fused=not args.unfused,
    )
    print(format_table(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
