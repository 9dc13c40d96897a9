"""The orders of `MemoryOps.ranked` as Python sort keys, for a store that reads rows in index
order but cannot promise that order through a later step of its query (Neo4j's provenance
subquery), and for tests that check a store's order."""

from __future__ import annotations

from persona_server.adapters.stores.values import to_us
from persona_server.domain.models import Episode, Memory
from persona_server.ports.graph_store import MemoryOrder

SortKey = tuple[int, int, str]


def best_first_key(order: MemoryOrder, memory: Memory) -> SortKey:
    """Sorting by this key with `reverse=True` lists memories best first in `order`."""
    recorded = to_us(memory.recorded_at)
    if order is MemoryOrder.LATEST_EVENT:
        event = to_us(memory.occurred_at) if memory.occurred_at is not None else recorded
        seq = memory.seq if isinstance(memory, Episode) else 0
        return (event, seq, memory.id)
    if order is MemoryOrder.MOST_MENTIONED:
        return (memory.mention_count, recorded, memory.id)
    return (recorded, 0, memory.id)
