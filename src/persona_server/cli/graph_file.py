"""The graph export file: one JSON object per line, a versioned header first
(`graph_export.schema.json` is its schema, and every line read is checked against it).

Conversion both ways between the file's records and the API's messages (`persona.v1.Memory`,
`GraphEdge`), and the whole-file reader that reports bad lines by number before anything is
sent. Times are RFC 3339 UTC ("2023-05-08T13:56:00Z", microseconds when there are any) and
omitted when unset; every other field is always written, so equal graphs give equal files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from google.protobuf.timestamp_pb2 import Timestamp

from persona.v1 import graph_pb2 as gpb
from persona.v1 import memory_pb2 as pb
from persona_server.cli.jsonl import BadLine

FORMAT = "persona.graph"
VERSION = 1
TYPES = ("episode", "psyche", "goal", "entity", "fact")
EDGE_TYPES = ("NEXT", "MENTIONS", "DERIVED_FROM", "SUBJECT", "OBJECT")
MAX_REPORTED = 50

Record = pb.Memory | gpb.GraphEdge


@cache
def schema() -> dict[str, Any]:
    text = resources.files("persona_server.cli").joinpath("graph_export.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    defs = dict(schema()["$defs"])
    if kind == "node":
        # The type <-> detail rule is the schema's `oneOf`; checked apart (`_detail_problem`),
        # since a failed `oneOf` only says that no branch matched.
        defs["node"] = {k: v for k, v in defs["node"].items() if k != "oneOf"}
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}", "$defs": defs})


def _detail_problem(obj: dict[str, Any]) -> str | None:
    present = [t for t in TYPES if t in obj]
    if present != [obj["type"]]:
        return f"a node of type {obj['type']!r} needs an {obj['type']!r} object and no other"
    return None


# --- enums: the proto's value names, without their prefix, in lower case --------------------


def _name(enum: Any, prefix: str, value: int) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def _value(enum: Any, prefix: str, name: str) -> Any:
    return enum.Value(prefix + name.upper())


# --- times ----------------------------------------------------------------------------------


def time_text(ts: Timestamp) -> str:
    dt = datetime.fromtimestamp(ts.seconds, UTC)
    micros = ts.nanos // 1000
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"


def _timestamp(text: str) -> Timestamp:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def _times(out: dict[str, Any], message: Any, *names: str) -> None:
    for name in names:
        if message.HasField(name):
            out[name] = time_text(getattr(message, name))


def _set_times(message: Any, data: dict[str, Any], *names: str) -> None:
    for name in names:
        if name in data:
            getattr(message, name).CopyFrom(_timestamp(data[name]))


# --- records -> JSON ------------------------------------------------------------------------


def header(user_id: str) -> dict[str, Any]:
    return {"record": "header", "format": FORMAT, "version": VERSION, "user_id": user_id}


def _strength(memory: pb.Memory) -> float | None:
    # ExportGraph leaves `Memory.strength` unset (0): it moves with the clock alone, and equal
    # graphs must give equal files. A node that carries one (a hand-built record) keeps it.
    return memory.strength or None


def node_json(m: pb.Memory) -> dict[str, Any]:
    out: dict[str, Any] = {
        "record": "node",
        "id": m.id,
        "type": _name(pb.MemoryType, "MEMORY_TYPE_", m.type),
        "text": m.text,
    }
    _times(out, m, "occurred_at", "recorded_at")
    _times(out, m.validity, "valid_from", "invalid_at")
    out["mention_count"] = m.reinforcement.mention_count
    if m.reinforcement.cited_count:  # absent means none: files from before citations hold
        out["cited_count"] = m.reinforcement.cited_count
    _times(out, m.reinforcement, "last_reinforced_at")
    strength = _strength(m)
    if strength is not None:
        out["strength"] = strength
    out["metadata"] = dict(sorted(m.metadata.items()))
    detail = m.WhichOneof("detail")
    if detail == "episode":
        ep, ex = m.episode, m.episode.extraction
        extraction: dict[str, Any] = {
            "state": _name(pb.ExtractionState, "EXTRACTION_STATE_", ex.state),
            "attempts": ex.attempts,
            "last_error": ex.last_error,
            "extractor": ex.extractor,
        }
        _times(extraction, ex, "updated_at", "next_attempt_at")
        out["episode"] = {
            "source_id": ep.source_id,
            "source_type": _name(pb.SourceType, "SOURCE_TYPE_", ep.source_type or 1),
            "speaker": ep.speaker,
            "role": _name(pb.ChatRole, "CHAT_ROLE_", ep.role),
            "summary": ep.summary,
            "extraction": extraction,
        }
    elif detail == "psyche":
        out["psyche"] = {
            "kind": _name(pb.PsycheKind, "PSYCHE_KIND_", m.psyche.kind),
            "key": m.psyche.key,
        }
    elif detail == "goal":
        goal: dict[str, Any] = {"status": _name(pb.GoalStatus, "GOAL_STATUS_", m.goal.status)}
        _times(goal, m.goal, "due_at")
        goal["key"] = m.goal.key
        out["goal"] = goal
    elif detail == "entity":
        out["entity"] = {
            "name": m.entity.name,
            "kind": _name(pb.EntityKind, "ENTITY_KIND_", m.entity.kind),
            "aliases": list(m.entity.aliases),
            "description": m.entity.description,
        }
    elif detail == "fact":
        out["fact"] = {
            "subject_id": m.fact.subject_id,
            "predicate": m.fact.predicate,
            "object_id": m.fact.object_id,
            "object_value": m.fact.object_value,
        }
    return out


def edge_json(e: gpb.GraphEdge) -> dict[str, Any]:
    kind = str(gpb.GraphEdgeType.Name(e.type)).removeprefix("GRAPH_EDGE_TYPE_")
    return {"record": "edge", "type": kind, "from": e.from_id, "to": e.to_id}


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def export_records(chunks: Iterable[gpb.ExportGraphResponse]) -> Iterator[dict[str, Any]]:
    """The file's records (after the header) of an ExportGraph stream, in order."""
    for chunk in chunks:
        for node in chunk.nodes:
            yield node_json(node)
        for edge in chunk.edges:
            yield edge_json(edge)


# --- JSON -> records ------------------------------------------------------------------------


def node_message(data: dict[str, Any]) -> pb.Memory:
    """A node record (already valid against the schema) as the API's message."""
    m = pb.Memory(
        id=data["id"],
        type=_value(pb.MemoryType, "MEMORY_TYPE_", data["type"]),
        text=data["text"],
        metadata=data["metadata"],
    )
    _set_times(m, data, "occurred_at", "recorded_at")
    _set_times(m.validity, data, "valid_from", "invalid_at")
    m.reinforcement.mention_count = data["mention_count"]
    m.reinforcement.cited_count = data.get("cited_count", 0)
    _set_times(m.reinforcement, data, "last_reinforced_at")
    kind = data["type"]
    detail = data[kind]
    if kind == "episode":
        ex = detail["extraction"]
        m.episode.CopyFrom(
            pb.Episode(
                source_id=detail["source_id"],
                source_type=_value(pb.SourceType, "SOURCE_TYPE_", detail["source_type"]),
                speaker=detail.get("speaker", ""),
                role=_value(pb.ChatRole, "CHAT_ROLE_", detail.get("role", "unspecified")),
                summary=detail.get("summary", ""),
                extraction=pb.ExtractionStatus(
                    state=_value(pb.ExtractionState, "EXTRACTION_STATE_", ex["state"]),
                    attempts=ex["attempts"],
                    last_error=ex.get("last_error", ""),
                    extractor=ex.get("extractor", ""),
                ),
            )
        )
        _set_times(m.episode.extraction, ex, "updated_at", "next_attempt_at")
    elif kind == "psyche":
        m.psyche.CopyFrom(
            pb.Psyche(
                kind=_value(pb.PsycheKind, "PSYCHE_KIND_", detail["kind"]),
                key=detail.get("key", ""),
            )
        )
    elif kind == "goal":
        m.goal.CopyFrom(
            pb.Goal(
                status=_value(pb.GoalStatus, "GOAL_STATUS_", detail["status"]),
                key=detail.get("key", ""),
            )
        )
        _set_times(m.goal, detail, "due_at")
    elif kind == "entity":
        m.entity.CopyFrom(
            pb.Entity(
                name=detail["name"],
                kind=_value(pb.EntityKind, "ENTITY_KIND_", detail["kind"]),
                aliases=detail.get("aliases", []),
                description=detail.get("description", ""),
            )
        )
    else:
        m.fact.CopyFrom(
            pb.Fact(
                subject_id=detail["subject_id"],
                predicate=detail["predicate"],
                object_id=detail.get("object_id", ""),
                object_value=detail.get("object_value", ""),
            )
        )
    return m


def edge_message(data: dict[str, Any]) -> gpb.GraphEdge:
    return gpb.GraphEdge(
        type=gpb.GraphEdgeType.Value("GRAPH_EDGE_TYPE_" + data["type"]),
        from_id=data["from"],
        to_id=data["to"],
    )


@dataclass
class GraphFile:
    """A whole file read: its header, its records in order, and where each record came from
    (`node_lines[i]` is the line of the i-th node, as the server counts `nodes[i]`)."""

    header: dict[str, Any] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    dicts: list[dict[str, Any]] = field(default_factory=list)
    node_lines: list[int] = field(default_factory=list)
    edge_lines: list[int] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    bad_count: int = 0

    def fail(self, number: int, reason: str) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_REPORTED:
            self.bad.append(BadLine(number, reason))


def _schema_problem(kind: str, obj: Any) -> str | None:
    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(obj))
    if error is None:
        return None
    where = error.json_path.removeprefix("$").removeprefix(".") or "the line"
    return f"{where}: {error.message}"


def read(lines: Iterable[bytes], *, keep_dicts: bool = False) -> GraphFile:
    """Read and check every line (blank lines are skipped); the caller sends nothing unless
    `bad` is empty."""
    out = GraphFile()
    seen_header = False
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            out.fail(number, f"not valid JSON: {exc}")
            continue
        kind = obj.get("record") if isinstance(obj, dict) else None
        if not seen_header:
            seen_header = True
            if kind != "header":
                out.fail(number, 'the first line must be the header {"record": "header", ...}')
                continue
            if obj.get("format") != FORMAT or obj.get("version") != VERSION:
                out.fail(
                    number,
                    f"not a {FORMAT} file of version {VERSION} (format "
                    f"{obj.get('format')!r}, version {obj.get('version')!r})",
                )
                continue
        elif kind == "header":
            out.fail(number, "a second header")
            continue
        if kind not in ("header", "node", "edge"):
            out.fail(number, 'record must be "header", "node" or "edge"')
            continue
        problem = _schema_problem(kind, obj)
        if problem is None and kind == "node":
            problem = _detail_problem(obj)
        if problem is not None:
            out.fail(number, problem)
            continue
        if kind == "header":
            out.header = obj
            continue
        try:
            record: Record = node_message(obj) if kind == "node" else edge_message(obj)
        except (ValueError, OverflowError) as exc:
            out.fail(number, str(exc))
            continue
        out.records.append(record)
        if keep_dicts:
            out.dicts.append(obj)
        (out.node_lines if kind == "node" else out.edge_lines).append(number)
    if not seen_header and not out.bad:
        out.fail(1, "the file is empty: the first line must be the header")
    return out
