"""Reading and checking a JSONL file of items before anything is sent.

The whole file is checked first so that a bad line 9,000 does not leave 8,999 lines ingested
and the rest not: either every line converts, or nothing is written and every bad line is
reported. Only what the CLI must convert is checked (JSON shape, types, dates, enum names);
limits such as text length are the server's to judge.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from persona import Item
from persona.v1 import memory_pb2
from persona_server.cli.timeparse import parse_datetime

FIELDS = ("text", "source_id", "occurred_at", "metadata", "speaker", "source_type", "role")


@dataclass(frozen=True)
class Defaults:
    """Values from the command line that apply to lines which do not set them."""

    occurred_at: datetime | None = None
    speaker: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Line:
    number: int  # 1-based line number in the file
    item: Item


@dataclass(frozen=True)
class BadLine:
    number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}"


@dataclass
class Parsed:
    lines: list[Line] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


def _enum_name(wrapper: Any, prefix: str, value: object, name: str, problems: list[str]) -> str:
    if not isinstance(value, str):
        problems.append(f"{name} must be a string")
        return ""
    full = value.strip().upper().replace("-", "_")
    full = full if full.startswith(prefix) else prefix + full
    known = [n for n, _ in wrapper.items() if not n.endswith("UNSPECIFIED")]
    if full not in known:
        names = ", ".join(n.removeprefix(prefix).lower() for n in known)
        problems.append(f"{name}: unknown value {value!r}; expected one of {names}")
        return ""
    return full


def parse_object(obj: Any, defaults: Defaults) -> tuple[Item | None, list[str]]:
    """One decoded line -> an Item, or the list of reasons it is not one."""
    if not isinstance(obj, dict):
        return None, [f"expected a JSON object, got {type(obj).__name__}"]
    problems: list[str] = []
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)} (expected {', '.join(FIELDS)})")
    text = obj.get("text")
    if text is None:
        problems.append("text is required")
    elif not isinstance(text, str):
        problems.append("text must be a string")
    strings: dict[str, str] = {}
    for name in ("source_id", "speaker"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name} must be a string")
        strings[name] = value if isinstance(value, str) else ""
    occurred_at = defaults.occurred_at
    raw_time = obj.get("occurred_at")
    if raw_time is not None:
        if not isinstance(raw_time, str):
            problems.append("occurred_at must be an ISO 8601 string")
        else:
            try:
                occurred_at = parse_datetime(raw_time)
            except ValueError as exc:
                problems.append(f"occurred_at: {exc}")
    metadata = dict(defaults.metadata)
    raw_meta = obj.get("metadata")
    if raw_meta is not None:
        if not isinstance(raw_meta, dict):
            problems.append("metadata must be an object of strings")
        else:
            for key, value in raw_meta.items():
                if isinstance(value, str):
                    metadata[key] = value
                else:
                    problems.append(f"metadata.{key} must be a string")
    source_type = role = ""
    if obj.get("source_type") is not None:
        source_type = _enum_name(
            memory_pb2.SourceType, "SOURCE_TYPE_", obj["source_type"], "source_type", problems
        )
    if obj.get("role") is not None:
        role = _enum_name(memory_pb2.ChatRole, "CHAT_ROLE_", obj["role"], "role", problems)
    if problems:
        return None, problems
    assert isinstance(text, str)
    item = Item(
        text=text,
        source_id=strings["source_id"],
        occurred_at=occurred_at,
        source_type=source_type or 0,
        speaker=strings["speaker"] or defaults.speaker,
        role=role or 0,
        metadata=metadata,
    )
    return item, []


def parse_lines(raw_lines: Iterable[bytes], defaults: Defaults | None = None) -> Parsed:
    """Check every line; blank lines are skipped (and still counted for line numbers)."""
    defaults = defaults or Defaults()
    parsed = Parsed()
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            parsed.bad.append(
                BadLine(number, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
            )
            continue
        line = line.strip().lstrip("\ufeff")  # a BOM on line 1 is an editor's, not data
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            parsed.bad.append(BadLine(number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        item, problems = parse_object(obj, defaults)
        if item is None:
            parsed.bad.append(BadLine(number, "; ".join(problems)))
        else:
            parsed.lines.append(Line(number, item))
    return parsed
