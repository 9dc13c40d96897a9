"""Rendering responses as the CLI's JSON (a stable, scriptable shape) or as readable text.

The JSON shapes are a contract with scripts: keys are only ever added behind a flag
(`channels` with --explain), types are lower-case names, times are ISO 8601 UTC with `Z`.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from persona import PersonaError
from persona.v1 import memory_pb2
from persona.v1 import memory_service_pb2 as pb

Json = dict[str, Any]

_CHANGE_SYMBOL = {
    "added": "+",
    "updated": "~",
    "invalidated": "!",
    "deleted": "-",
    "entered": ">",
    "left": "<",
}


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def enum_name(wrapper: Any, prefix: str, value: int) -> str:
    """`MEMORY_TYPE_EPISODE` -> `episode`; a value this CLI does not know stays visible."""
    try:
        name: str = wrapper.Name(value)
    except ValueError:
        return f"unknown_{value}"
    return name.removeprefix(prefix).lower()


def memory_type(value: int) -> str:
    return enum_name(memory_pb2.MemoryType, "MEMORY_TYPE_", value)


def timestamp(message: Any, field: str) -> str | None:
    """The field as `2023-05-08T13:56:00Z`, or None when unset."""
    if not message.HasField(field):
        return None
    ts: Timestamp = getattr(message, field)
    return ts.ToJsonString()


def memory_summary(memory: memory_pb2.Memory) -> Json:
    return {
        "id": memory.id,
        "type": memory_type(memory.type),
        "text": memory.text,
        "source_ids": list(memory.provenance.source_ids),
        "occurred_at": timestamp(memory, "occurred_at"),
    }


def recall_result(result: pb.RecallResult, *, explain: bool, strength: bool = False) -> Json:
    summary = memory_summary(result.memory)
    out: Json = {
        "id": summary["id"],
        "type": summary["type"],
        "text": summary["text"],
        "score": float(result.score),
    }
    if strength:
        out["strength"] = float(result.memory.strength)
    out["source_ids"] = summary["source_ids"]
    out["occurred_at"] = summary["occurred_at"]
    if result.joined:
        out["joined"] = [memory_summary(m) for m in result.joined]
    if explain:
        out["channels"] = [
            {"channel": c.channel, "rank": c.rank, "score": float(c.score)} for c in result.channels
        ]
    return out


def recall_json(response: pb.RecallResponse, *, explain: bool = False) -> Json:
    # Strength only here: stream events leave it unset (see Memory.strength).
    return {"results": [recall_result(r, explain=explain, strength=True) for r in response.results]}


def ask_json(response: pb.AskStructuredResponse) -> Json:
    try:
        answer: Any = json.loads(response.answer_json)
    except ValueError:
        answer = response.answer_json  # never lose the answer, even if it is not JSON
    return {"answer": answer, "citations": [c.memory_id for c in response.citations]}


def stream_event_json(event: pb.StreamContextResponse) -> Json:
    """One event as one JSON object: `kind` (snapshot, update, heartbeat or resync), the
    `resume_token`, and the memories it carries (for an update, each with its `change` and
    `rank`, plus the whole context by reference in `members`)."""
    kind = event.WhichOneof("event") or "unknown"
    out: Json = {"kind": kind, "resume_token": event.resume_token}
    memories: list[Json] = []
    if kind in ("snapshot", "resync"):
        snapshot = event.snapshot if kind == "snapshot" else event.resync
        memories = [recall_result(r, explain=False) for r in snapshot.results]
    elif kind == "update":
        for change in event.update.changes:
            entry = recall_result(change.result, explain=False)
            entry["change"] = enum_name(pb.ChangeKind, "CHANGE_KIND_", change.kind)
            entry["rank"] = change.rank
            memories.append(entry)
        out["members"] = [
            {"id": m.memory_id, "type": memory_type(m.type), "rank": m.rank, "score": m.score}
            for m in event.update.members
        ]
    elif kind == "heartbeat":
        out["server_time"] = timestamp(event.heartbeat, "server_time")
    out["memories"] = memories
    return out


def ingest_json(responses: list[pb.IngestResponse]) -> Json:
    return {"ids": [r.episode_id for response in responses for r in response.results]}


def memory_json(memory: memory_pb2.Memory) -> Json:
    """Everything about one memory (get, list)."""
    out = memory_summary(memory)
    out["recorded_at"] = timestamp(memory, "recorded_at")
    out["episode_ids"] = list(memory.provenance.episode_ids)
    out["metadata"] = dict(memory.metadata)
    out["valid_from"] = timestamp(memory.validity, "valid_from")
    out["invalid_at"] = timestamp(memory.validity, "invalid_at")
    out["mention_count"] = memory.reinforcement.mention_count
    out["cited_count"] = memory.reinforcement.cited_count
    out["strength"] = float(memory.strength)
    detail = memory.WhichOneof("detail")
    out["detail"] = (
        MessageToDict(getattr(memory, detail), preserving_proto_field_name=True) if detail else {}
    )
    return out


def list_json(memories: list[memory_pb2.Memory], next_page_token: str) -> Json:
    return {"memories": [memory_json(m) for m in memories], "next_page_token": next_page_token}


# --- text -----------------------------------------------------------------------------------


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def recall_text(response: pb.RecallResponse, *, explain: bool = False) -> str:
    if not response.results:
        return "no memories found"
    lines: list[str] = []
    for rank, result in enumerate(response.results, start=1):
        m = result.memory
        when = timestamp(m, "occurred_at") or "-"
        lines.append(f"{rank:>2}. {m.id}  {memory_type(m.type)}  {when}  score {result.score:.4f}")
        lines.append(f"    {_one_line(m.text)}")
        if m.provenance.source_ids:
            lines.append(f"    sources: {', '.join(m.provenance.source_ids)}")
        for joined in result.joined:
            lines.append(f"    + {memory_type(joined.type)}  {_one_line(joined.text, 94)}")
        if explain and result.channels:
            channels = ", ".join(f"{c.channel} #{c.rank} ({c.score:.3g})" for c in result.channels)
            lines.append(f"    channels: {channels}")
    return "\n".join(lines)


def ask_text(response: pb.AskStructuredResponse) -> str:
    data = ask_json(response)
    lines = [json.dumps(data["answer"], ensure_ascii=False, indent=2)]
    if not response.answered:
        lines.append("(memory did not hold the answer)")
    if data["citations"]:
        lines.append("citations: " + ", ".join(data["citations"]))
    return "\n".join(lines)


def stream_event_text(event: pb.StreamContextResponse) -> str:
    data = stream_event_json(event)
    kind = data["kind"]
    if kind == "heartbeat":
        return f"heartbeat {timestamp(event.heartbeat, 'server_time') or ''}".rstrip()
    header = f"{kind}: {len(data['memories'])} memor{'y' if len(data['memories']) == 1 else 'ies'}"
    lines = [header]
    for m in data["memories"]:
        symbol = _CHANGE_SYMBOL.get(m.get("change", ""), " ")
        rank = f"#{m['rank']}  " if m.get("rank") else ""
        lines.append(f"  {symbol} {rank}{m['id']}  {m['type']}  {_one_line(m['text'], 80)}")
    return "\n".join(lines)


def ingest_text(responses: list[pb.IngestResponse], *, waited: bool) -> str:
    results = [r for response in responses for r in response.results]
    outcomes: dict[str, int] = {}
    states: dict[str, int] = {}
    for r in results:
        outcome = enum_name(pb.IngestOutcome, "INGEST_OUTCOME_", r.outcome)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        state = enum_name(memory_pb2.ExtractionState, "EXTRACTION_STATE_", r.extraction.state)
        states[state] = states.get(state, 0) + 1
    lines: list[str] = []
    if len(results) <= 20:  # per-item lines while they fit on a screen; a summary always
        for r in results:
            outcome = enum_name(pb.IngestOutcome, "INGEST_OUTCOME_", r.outcome)
            lines.append(f"{r.episode_id}  {outcome}  {r.source_id}")
    counts = ", ".join(f"{n} {name}" for name, n in sorted(outcomes.items()))
    lines.append(
        f"ingested {len(results)} item{'s' if len(results) != 1 else ''}: {counts or 'none'}"
    )
    if waited:
        lines.append(
            "extraction: " + ", ".join(f"{n} {name}" for name, n in sorted(states.items()))
        )
    return "\n".join(lines)


def memory_text(memory: memory_pb2.Memory) -> str:
    data = memory_json(memory)
    lines = [f"{data['id']}  {data['type']}", f"  text: {memory.text}"]
    for key in ("occurred_at", "recorded_at", "valid_from", "invalid_at"):
        if data[key]:
            lines.append(f"  {key}: {data[key]}")
    if data["source_ids"]:
        lines.append(f"  sources: {', '.join(data['source_ids'])}")
    if data["mention_count"]:
        lines.append(f"  mentions: {data['mention_count']}")
    for key, value in sorted(data["metadata"].items()):
        lines.append(f"  metadata.{key}: {value}")
    for key, value in data["detail"].items():
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def list_text(memories: list[memory_pb2.Memory], next_page_token: str) -> str:
    lines = [
        f"{m.id}  {memory_type(m.type)}  {timestamp(m, 'occurred_at') or '-'}  "
        + _one_line(m.text, 80)
        for m in memories
    ]
    if not memories:
        lines.append("no memories")
    if next_page_token:
        lines.append(f"more: --page-token {next_page_token}")
    return "\n".join(lines)


# --- errors ---------------------------------------------------------------------------------


def error_text(error: PersonaError) -> str:
    """`STATUS_NAME: message`, then each field violation on its own indented line."""
    lines = [f"{error.code.name}: {error.message}"]
    lines.extend(f"  {v.field}: {v.description}" for v in error.field_violations)
    return "\n".join(lines)
