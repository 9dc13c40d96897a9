"""Recall: hybrid retrieval with no LLM in the path.

Channels: vector similarity and full-text from the store, then graph expansion from the first
fused hits and temporal neighbours (adjacent episodes) of episode hits. Channels are fused with
weighted reciprocal-rank fusion. Recall never writes: results never depend on earlier queries.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from persona_server.domain.models import Episode, Memory, MemoryType
from persona_server.ports.embedder import Embedder
from persona_server.ports.graph_store import GraphStore, SearchHit
from persona_server.services.commands import RecallQuery
from persona_server.services.filtering import matches
from persona_server.services.results import ChannelHit, RecallOutcome, ScoredMemory

_Adder = Callable[[str, list[SearchHit], float], None]


@dataclass(frozen=True)
class RecallTuning:
    """Fusion weights and depths. Tuned on the LoCoMo dev conversations only."""

    rrf_k: float = 60.0
    candidates: int = 60  # per search channel
    vector_weight: float = 1.0
    text_weight: float = 1.0
    graph_seeds: int = 5
    graph_weight: float = 0.3
    graph_limit: int = 10
    temporal_seeds: int = 5
    temporal_weight: float = 0.3
    # Entities are hubs, not answers: their provenance is every episode that mentions them, so
    # as results they would flood a prompt. They seed graph expansion and are returned only
    # when the filter asks for the entity type.
    entities_as_results: bool = False


class RecallService:
    def __init__(
        self, store: GraphStore, embedder: Embedder, tuning: RecallTuning | None = None
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._tuning = tuning or RecallTuning()

    async def recall(self, q: RecallQuery) -> RecallOutcome:
        t = self._tuning
        if not await self._store.users.exists(q.user):
            return RecallOutcome(results=[], context_block="")
        query_vec = await self._embedder.embed([q.query])
        depth = max(t.candidates, q.max_results * 3)
        vector_hits, text_hits = await asyncio.gather(
            self._store.search.vector(q.user, query_vec, depth, q.filter),
            self._store.search.text(q.user, q.query, depth, q.filter),
        )
        scores: dict[str, float] = defaultdict(float)
        channels: dict[str, list[ChannelHit]] = defaultdict(list)

        def add(channel: str, hits: list[SearchHit], weight: float) -> None:
            for rank, hit in enumerate(hits, start=1):
                scores[hit.memory_id] += weight / (t.rrf_k + rank)
                channels[hit.memory_id].append(ChannelHit(channel, rank, hit.score))

        add("vector", vector_hits, t.vector_weight)
        add("text", text_hits, t.text_weight)

        seeds = sorted(scores, key=scores.__getitem__, reverse=True)
        await self._expand(q, seeds, add)

        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        memories = await self._store.memories.get_many(q.user, ranked[: q.max_results * 4])
        results: list[ScoredMemory] = []
        for memory_id in ranked:
            memory = memories.get(memory_id)
            # Expanded neighbours did not pass through the store's filter: check them here.
            if memory is None or not matches(memory, q.filter):
                continue
            if memory.type is MemoryType.ENTITY and not (
                t.entities_as_results or MemoryType.ENTITY in q.filter.types
            ):
                continue
            hits = channels[memory_id] if q.explain else []
            results.append(ScoredMemory(memory, scores[memory_id], hits))
            if len(results) == q.max_results:
                break
        return RecallOutcome(results=results, context_block=context_block(results))

    async def _expand(self, q: RecallQuery, seeds: list[str], add: _Adder) -> None:
        t = self._tuning
        graph_seeds = seeds[: t.graph_seeds]
        episode_seeds = [s for s in seeds if s.startswith("ep_")][: t.temporal_seeds]
        graph, chain = await asyncio.gather(
            self._store.search.expand(q.user, graph_seeds, t.graph_limit),
            self._store.episodes.chain_neighbours(q.user, episode_seeds, before=1, after=1),
        )
        add("graph", _interleave(graph_seeds, graph), t.graph_weight)
        add("temporal", _interleave(episode_seeds, chain), t.temporal_weight)


def _interleave(seeds: list[str], neighbours: dict[str, list[str]]) -> list[SearchHit]:
    """Neighbours ranked by their seed's rank (a neighbour of the best hit ranks first)."""
    seen: set[str] = set(seeds)
    out: list[SearchHit] = []
    for seed_rank, seed in enumerate(seeds, start=1):
        for neighbour in neighbours.get(seed, []):
            if neighbour not in seen:
                seen.add(neighbour)
                out.append(SearchHit(neighbour, 1.0 / seed_rank))
    return out


def context_block(results: list[ScoredMemory]) -> str:
    """One line per memory, oldest context first is not assumed: rank order, with dates."""
    lines = []
    for i, item in enumerate(results, start=1):
        lines.append(f"[{i}] {_describe(item.memory)}")
    return "\n".join(lines)


def _describe(memory: Memory) -> str:
    when = memory.occurred_at.strftime("%Y-%m-%d") if memory.occurred_at else "undated"
    text = " ".join(memory.text.split())
    if isinstance(memory, Episode) and memory.speaker:
        text = f"{memory.speaker}: {text}"
    validity = " (no longer true)" if memory.invalid_at is not None else ""
    return f"({memory.type.value}, {when}) {text}{validity}"
