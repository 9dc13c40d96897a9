"""StreamContext: a snapshot, then updates from the user's change log, with heartbeats.

The change log in the store is the source of truth: a stream resumes from a change-log seq, and
polls the log as well as waiting on in-process wake-ups, so changes made through another server
replica still arrive (at most one poll interval late).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

import numpy as np

from persona_server.domain.models import ChangeKind, Memory, MemoryChange
from persona_server.ports.embedder import Embedder
from persona_server.ports.graph_store import GraphStore, MemoryFilter
from persona_server.services.commands import RecallQuery, StreamQuery
from persona_server.services.ingest import utcnow
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.recall import RecallService, context_block
from persona_server.services.results import (
    Change,
    DeletedRef,
    HeartbeatEvent,
    RecallOutcome,
    ScoredMemory,
    SnapshotEvent,
    StreamEvent,
    UpdateEvent,
)

POLL_INTERVAL_S = 1.0
CHANGES_PER_EVENT = 200


class ContextFeed:
    def __init__(
        self,
        store: GraphStore,
        embedder: Embedder,
        recall: RecallService,
        notifier: ChangeNotifier,
        clock: Callable[[], datetime] = utcnow,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._recall = recall
        self._notifier = notifier
        self._clock = clock
        self._poll = poll_interval_s

    async def stream(self, q: StreamQuery) -> AsyncIterator[StreamEvent]:
        if q.resume_after is None:
            seq = await self._store.changes.latest_seq(q.user)
            yield SnapshotEvent(seq, await self._snapshot(q))
        else:
            seq = q.resume_after
        query_vec = (await self._embedder.embed([q.query]))[0] if q.query else None
        idle_since = self._clock()
        while True:
            changes = await self._store.changes.since(q.user, seq, CHANGES_PER_EVENT)
            if changes:
                seq = changes[-1].seq
                update = await self._update(q, changes, query_vec)
                if update:
                    yield UpdateEvent(seq, update)
                    idle_since = self._clock()
                continue
            if (self._clock() - idle_since).total_seconds() >= q.heartbeat_s:
                yield HeartbeatEvent(seq, self._clock())
                idle_since = self._clock()
            await self._notifier.wait(q.user, min(self._poll, q.heartbeat_s))

    async def _snapshot(self, q: StreamQuery) -> RecallOutcome:
        if q.query:
            return await self._recall.recall(
                RecallQuery(
                    user=q.user,
                    query=q.query,
                    max_results=q.max_results,
                    filter=MemoryFilter(types=q.types),
                )
            )
        # No topic: the most recent memories are the context.
        page = await self._store.memories.list_page(
            q.user, filter=MemoryFilter(types=q.types), limit=500, cursor=""
        )
        recent = sorted(page.memories, key=lambda m: m.recorded_at, reverse=True)
        items = [ScoredMemory(m, 1.0 / (i + 1)) for i, m in enumerate(recent[: q.max_results])]
        return RecallOutcome(items, context_block(items))

    async def _update(
        self, q: StreamQuery, changes: list[MemoryChange], query_vec: np.ndarray | None
    ) -> list[Change]:
        wanted = [c for c in changes if not q.types or c.memory_type in q.types]
        # Several changes to one memory in one batch collapse into its latest state.
        latest: dict[str, MemoryChange] = {}
        for change in wanted:
            latest.pop(change.memory_id, None)
            latest[change.memory_id] = change
        live_ids = [c.memory_id for c in latest.values() if c.kind is not ChangeKind.DELETED]
        memories = await self._store.memories.get_many(q.user, live_ids)
        scores = await self._scores(list(memories.values()), query_vec)
        out: list[Change] = []
        for change in latest.values():
            memory = memories.get(change.memory_id)
            if change.kind is ChangeKind.DELETED or memory is None:
                out.append(
                    Change(ChangeKind.DELETED, DeletedRef(change.memory_id, change.memory_type))
                )
            else:
                out.append(Change(change.kind, ScoredMemory(memory, scores.get(memory.id, 0.0))))
        return out

    async def _scores(
        self, memories: list[Memory], query_vec: np.ndarray | None
    ) -> dict[str, float]:
        if query_vec is None or not memories:
            return {m.id: 1.0 for m in memories}
        vectors = await self._embedder.embed([m.text for m in memories])
        sims = vectors @ query_vec
        return {m.id: float(s) for m, s in zip(memories, sims, strict=True)}
