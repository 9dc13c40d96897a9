"""In-memory evaluation of a `MemoryFilter`, for memories reached by graph or chain expansion
(store searches apply the same filter themselves)."""

from __future__ import annotations

from persona_server.domain.models import Memory
from persona_server.ports.graph_store import MemoryFilter


def matches(memory: Memory, flt: MemoryFilter) -> bool:
    if flt.types and memory.type not in flt.types:
        return False
    if flt.occurred_from is not None or flt.occurred_to is not None:
        if memory.occurred_at is None:
            return False
        if flt.occurred_from is not None and memory.occurred_at < flt.occurred_from:
            return False
        if flt.occurred_to is not None and memory.occurred_at >= flt.occurred_to:
            return False
    if any(memory.metadata.get(k) != v for k, v in flt.metadata.items()):
        return False
    if flt.as_of is not None:
        if memory.recorded_at > flt.as_of:
            return False
        if memory.valid_from is not None and memory.valid_from > flt.as_of:
            return False
        if memory.invalid_at is not None and memory.invalid_at <= flt.as_of:
            return False
    elif not flt.include_invalidated and memory.invalid_at is not None:
        return False
    return True
