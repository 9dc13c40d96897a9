"""Memory ids: a type prefix and a time-ordered random part, unique without coordination."""

from __future__ import annotations

import secrets
import time

from persona_server.domain.models import MemoryType

PREFIXES = {
    MemoryType.EPISODE: "ep",
    MemoryType.PSYCHE: "ps",
    MemoryType.GOAL: "go",
    MemoryType.ENTITY: "en",
    MemoryType.FACT: "fa",
}


def new_id(memory_type: MemoryType) -> str:
    # Millisecond time first so ids sort roughly by creation, then 80 random bits.
    return f"{PREFIXES[memory_type]}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def new_source_id() -> str:
    return f"auto_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


_BY_PREFIX = {prefix: memory_type for memory_type, prefix in PREFIXES.items()}


def type_of(memory_id: str) -> MemoryType | None:
    """The type an id was minted for (`new_id`), or None for an id of another shape."""
    prefix, sep, _ = memory_id.partition("_")
    return _BY_PREFIX.get(prefix) if sep else None
