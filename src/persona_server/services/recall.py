"""Recall: hybrid retrieval with no LLM in the path.

Channels: vector similarity and full-text from the store, a vector search for the query
without the speakers' names it holds (if it holds any), a vector search restricted to the
time the query names (if it names one), full-text over the user's words related in meaning to
the query's (`related_words.py`, if given), then graph expansion from the first fused hits and
temporal neighbours (adjacent episodes in event time) of episode hits, which inherit part of
their seed's score. Ranked episodes that sit next to each other in one conversation are then
returned together as one passage (`passages.py`). Recall never writes: results never depend on
earlier queries.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from persona_server.domain.ids import type_of
from persona_server.domain.models import Episode, Memory, MemoryType
from persona_server.domain.strength import Decay
from persona_server.ports.embedder import Embedder
from persona_server.ports.graph_store import (
    GraphStore,
    MemoryFilter,
    Neighbours,
    SearchHit,
    Vectors,
)
from persona_server.services.commands import RecallQuery
from persona_server.services.decay_time import DecayTime
from persona_server.services.filtering import matches
from persona_server.services.ingest import utcnow
from persona_server.services.passages import in_chain_order, passages, same_sitting
from persona_server.services.related_words import RelatedWords
from persona_server.services.results import ChannelHit, RecallOutcome, ScoredMemory
from persona_server.services.text_vectors import TextVectorCache
from persona_server.services.unnamed_query import without_names

# (query, now) -> the [start, end) spans of event time the query names, in UTC.
TimeSpanFinder = Callable[[str, datetime], list[tuple[datetime, datetime]]]


async def _no_hits() -> list[SearchHit]:
    return []


@dataclass(frozen=True)
class RecallTuning:
    """Fusion weights and depths, tuned on the LoCoMo dev conversations only with
    `bench/tune_recall.py` (see BENCHMARKS.md). Measured there: score fusion beat RRF (0.685 vs
    0.656 recall@10 with the same expansion), a window of two chain neighbours beat one (0.727
    vs 0.685), the time channel added 0.01-0.02, graph expansion from statements is roughly
    neutral on this data (entity hubs hurt, so they are not expansion seeds). Round two, checked
    on two halves of the dev set: passages 0.750 -> 0.808, twenty temporal seeds with a 45%
    join floor 0.832 (BENCHMARKS.md)."""

    # "rrf": weighted reciprocal-rank fusion; "score": weighted sum of min-max normalised
    # channel scores (keeps how much better the best hit is, which ranks alone throw away).
    fusion: str = "score"
    rrf_k: float = 60.0
    candidates: int = 60  # per search channel
    # The vector channel's weight is shared between the query and the query without the
    # user's speakers' names (`unnamed_query.py`; round five: 0.839 -> 0.849 recall@10 on
    # LoCoMo dev, both halves and every category up). A query naming no speaker is searched
    # once and that search gets both weights.
    vector_weight: float = 0.5
    unnamed_weight: float = 0.5
    text_weight: float = 1.3
    # Expansion: a neighbour of a strong hit inherits part of that hit's fused score.
    graph_seeds: int = 5
    graph_weight: float = 0.1
    graph_limit: int = 10
    temporal_seeds: int = 20
    temporal_weight: float = 0.5
    temporal_window: int = 2  # episodes before and after a seed in the event-time chain
    # A query that names a time ("last May", "in 2022") adds a vector search restricted to it.
    time_weight: float = 1.0
    # Full-text over the user's own words nearest in meaning to the query's words (round four:
    # 0.833 -> 0.839 recall@10 on LoCoMo dev, both halves up; multi-hop and open-domain most).
    related_weight: float = 0.5
    # Entities are hubs, not answers: their provenance is every episode that mentions them, so
    # as results they would flood a prompt. They seed graph expansion and are returned only
    # when the filter asks for the entity type.
    entities_as_results: bool = False
    # Passages: a ranked episode within `temporal_window` chain places of a better-ranked one
    # (of the same kind of source, at most `passage_gap_s` apart) joins its result, up to
    # `passage_size` episodes a result. Only the first `passage_depth` candidates may join, and
    # the chain neighbours of the first `passage_seeds` episodes are what "near" is known from.
    passage_size: int = 4
    passage_depth: int = 60
    passage_seeds: int = 20
    passage_gap_s: float = 3600.0
    # A joined episode scores at least this share of its passage's leader.
    passage_floor: float = 0.5
    # ... and was a hit of a search channel itself, not only a neighbour that inherited score:
    # passages gather turns that matched the query, not their surroundings. Round five: with
    # this rule passages of four and the 50% floor (was three, 45%) fit the context budget
    # again after the unnamed channel (BENCHMARKS.md).
    passage_own_match: bool = True
    # Strength (domain.strength at as_of) as a signal: a fetched candidate's score is scaled by
    # 1 + weight * strength. Off: on the LoCoMo dev halves it did not help (BENCHMARKS.md).
    strength_weight: float = 0.0

    @classmethod
    def without_unnamed(cls) -> RecallTuning:
        """Round four's tuning: no unnamed-query search, and the passages that fit the
        context budget without it (`PERSONA_RECALL_UNNAMED_QUERY=false`)."""
        return cls(
            vector_weight=1.0,
            unnamed_weight=0.0,
            passage_size=3,
            passage_floor=0.45,
            passage_own_match=False,
        )


@dataclass(frozen=True)
class _Choice:
    found: Neighbours
    expanded: tuple[dict[str, float], dict[str, list[ChannelHit]]]
    ranked: list[str]
    ids: list[str]


class RecallService:
    def __init__(
        self,
        store: GraphStore,
        embedder: Embedder,
        tuning: RecallTuning | None = None,
        time_spans: TimeSpanFinder | None = None,
        clock: Callable[[], datetime] = utcnow,
        decay: Decay | None = None,
        related: RelatedWords | None = None,
    ) -> None:
        self._store = store
        self._related = related
        self._time = DecayTime(store, decay or Decay(), clock)
        self._embedder = embedder
        self._tuning = tuning or RecallTuning()
        self._time_spans = time_spans
        self._clock = clock
        self._unnamed_vectors = TextVectorCache()

    async def recall(self, q: RecallQuery) -> RecallOutcome:
        t = self._tuning
        # No existence check first: an unknown user simply has no hits, and on a networked store
        # every saved round trip is latency. Full-text needs no embedding, so it runs while the
        # query is embedded.
        depth = max(t.candidates, q.max_results * 3)
        (
            (vector_hits, time_hits, unnamed_hits),
            text_hits,
            related_hits,
            decay_at,
        ) = await asyncio.gather(
            self._vector_channels(q, depth),
            self._store.search.text(q.user, q.query, depth, q.filter),
            self._related_channel(q, depth),
            self._time.at(q.user, q.filter.as_of),
        )
        channels: dict[str, list[ChannelHit]] = defaultdict(list)
        named = (
            ("vector", vector_hits),
            ("text", text_hits),
            ("time", time_hits),
            ("related", related_hits),
            ("unnamed", unnamed_hits or []),
        )
        for name, channel_hits in named:
            for rank, hit in enumerate(channel_hits, start=1):
                channels[hit.memory_id].append(ChannelHit(name, rank, hit.score))
        fused = self._fuse(
            [
                (vector_hits, t.vector_weight),
                (vector_hits if unnamed_hits is None else unnamed_hits, t.unnamed_weight),
                (text_hits, t.text_weight),
                (time_hits, t.time_weight),
                (related_hits, t.related_weight),
            ]
        )
        wants_entities = t.entities_as_results or MemoryType.ENTITY in q.filter.types
        # Search hits passed the store's filter; only expanded neighbours can still drop out
        # (filtered, or invalidated), so a small margin is fetched and more only if needed.
        fetch = q.max_results + max(q.max_results // 2, 5)

        seeds = sorted(fused, key=fused.__getitem__, reverse=True)
        # Entities are hubs: one hop from an entity reaches every episode that names it, which
        # is noise, not association. Expansion starts from statements (episodes, facts, psyche,
        # goals) and reaches what they came from or produced.
        graph_seeds = [s for s in seeds if type_of(s) is not MemoryType.ENTITY][: t.graph_seeds]
        episodes = [s for s in seeds if type_of(s) is MemoryType.EPISODE]
        # The first few inherit score (the temporal channel); more are asked for so that
        # passages know which ranked episodes sit next to each other.
        temporal_seeds = episodes[: t.temporal_seeds] if t.temporal_weight else []
        size = t.passage_size if q.passages else 1
        passage_seeds = t.passage_seeds if size > 1 else 0
        chain_seeds = episodes[: max(len(temporal_seeds), passage_seeds)]

        # What `choose` worked out, kept for after the read (a retried read calls it again).
        chosen: list[_Choice] = []

        def choose(found: Neighbours) -> list[str]:
            expanded = self._expanded(fused, found, temporal_seeds)
            # Before the fetch nothing is known of the sittings: every near pair may join.
            ranked = self._ranked(expanded[0], wants_entities)
            groups = self._passages(ranked, expanded[0], found, None, fetch, size, None, fused)
            ids = [i for group in groups[:fetch] for i in group]
            chosen[:] = [_Choice(found, expanded, ranked, ids)]
            return ids

        found, memories = await self._store.search.around(
            q.user,
            graph_seeds=graph_seeds if t.graph_weight else [],
            graph_limit=t.graph_limit,
            episode_seeds=chain_seeds,
            before=t.temporal_window,
            after=t.temporal_window,
            choose=choose,
        )
        if chosen and chosen[0].found is found:
            scores, expansion_hits = chosen[0].expanded
            ranked = chosen[0].ranked
            tried = set(chosen[0].ids)
        else:  # a store that did not call `choose` (nothing to fetch)
            scores, expansion_hits = self._expanded(fused, found, temporal_seeds)
            ranked = self._ranked(scores, wants_entities)
            tried = set(memories)
        for memory_id, hits in expansion_hits.items():
            channels[memory_id].extend(hits)
        if t.strength_weight:
            scores, ranked = self._strengthened(decay_at, scores, ranked, memories)
        awake = self._awake(None if q.include_dormant else decay_at)

        while True:
            groups, complete = self._final_passages(
                ranked, scores, tried, memories, found, q, size, awake, fused
            )
            if len(groups) >= q.max_results or complete:
                break
            # More dropped out than the margin allowed for: fetch the next slice.
            more = [i for i in ranked if i not in tried][: 4 * q.max_results]
            tried.update(more)
            memories = {**memories, **await self._store.memories.get_many(q.user, more)}
        results = [
            ScoredMemory(
                memories[group[0]],
                scores[group[0]],
                channels[group[0]] if q.explain else [],
                joined=in_chain_order([memories[i] for i in group[1:]]),
            )
            for group in groups[: q.max_results]
        ]
        return RecallOutcome(
            results=results, context_block=context_block(results), strength_at=decay_at
        )

    async def _vector_channels(
        self, q: RecallQuery, depth: int
    ) -> tuple[list[SearchHit], list[SearchHit], list[SearchHit] | None]:
        """The vector channel, the one restricted to the time the query names (if any), and
        the one for the query without the speakers' names (None: it names none)."""
        query_vec, unnamed_vec = await self._query_vectors(q)
        time_filter = self._time_filter(q)
        vector_hits, time_hits, unnamed_hits = await asyncio.gather(
            self._store.search.vector(q.user, query_vec, depth, q.filter),
            self._store.search.vector(q.user, query_vec, depth, time_filter)
            if time_filter is not None
            else _no_hits(),
            self._store.search.vector(q.user, unnamed_vec, depth, q.filter)
            if unnamed_vec is not None
            else _no_hits(),
        )
        return vector_hits, time_hits, unnamed_hits if unnamed_vec is not None else None

    async def _query_vectors(self, q: RecallQuery) -> tuple[Vectors, Vectors | None]:
        """The query's vector and, if it names one of the user's speakers, the vector of the
        query without those names; one embedder call for both (its cost follows the longest
        text of a batch, and the two are about as long)."""
        unnamed = None
        if self._related is not None and self._tuning.unnamed_weight:
            unnamed = without_names(q.query, await self._related.speakers(q.user))
        cached = self._unnamed_vectors.get(unnamed) if unnamed is not None else None
        texts = [q.query] if q.query_vector is None else []
        if unnamed is not None and cached is None:
            texts.append(unnamed)
        embedded = (
            await self._embedder.embed(texts)
            if texts
            else np.zeros((0, self._embedder.dimension), dtype=np.float32)
        )
        query_vec = embedded[:1] if q.query_vector is None else q.query_vector.reshape(1, -1)
        if unnamed is None:
            return query_vec, None
        if cached is None:
            cached = embedded[-1]
            self._unnamed_vectors.put(unnamed, cached)
        return query_vec, cached.reshape(1, -1)

    async def _related_channel(self, q: RecallQuery, depth: int) -> list[SearchHit]:
        """Full-text over the user's words related to the query's (none named: no hits)."""
        if self._related is None or not self._tuning.related_weight:
            return []
        words = await self._related.for_query(q.user, q.query)
        if not words:
            return []
        return await self._store.search.text(q.user, " ".join(words), depth, q.filter)

    def _passages(
        self,
        ranked: list[str],
        scores: dict[str, float],
        found: Neighbours,
        memories: dict[str, Memory] | None,
        limit: int,
        size: int,
        leaders: int | None = None,
        matched: dict[str, float] | None = None,
    ) -> list[list[str]]:
        t = self._tuning
        gap = timedelta(seconds=t.passage_gap_s)

        def joinable(leader: str, member: str, candidate: str) -> bool:
            if scores[candidate] < t.passage_floor * scores[leader]:
                return False
            if t.passage_own_match and matched is not None and candidate not in matched:
                return False  # only inherited score (temporal or graph neighbour)
            if memories is None:
                return True
            return same_sitting(memories[member], memories[candidate], gap)

        return passages(
            ranked,
            found.chain,
            size=size,
            depth=t.passage_depth,
            joinable=joinable,
            # Size 1 is single memories: a derived memory does not take its episode in either.
            sources=None if memories is None or size == 1 else _derived_sources(ranked, memories),
            leaders=leaders,
            limit=limit,
        )

    def _final_passages(
        self,
        ranked: list[str],
        scores: dict[str, float],
        tried: set[str],
        memories: dict[str, Memory],
        found: Neighbours,
        q: RecallQuery,
        size: int,
        awake: Callable[[Memory], bool],
        fused: dict[str, float],
    ) -> tuple[list[list[str]], bool]:
        """The results' passages from what has been fetched, and whether every candidate has
        been tried. Candidates lead in rank order only up to the first one not fetched yet
        (a better one might still come); fetched ones beyond it may only join."""
        cut = next((n for n, i in enumerate(ranked) if i not in tried), len(ranked))
        # Expanded neighbours did not pass through the store's filter: check them here.
        # Dormancy is computed (strength at the user's present or as_of), so no store filter
        # knows it: checked here too, for search hits and neighbours alike.
        usable = [
            i
            for i in ranked
            if i in memories and matches(memories[i], q.filter) and awake(memories[i])
        ]

        limit = q.max_results
        if cut == len(ranked):
            return self._passages(usable, scores, found, memories, limit, size, None, fused), True
        before_cut = set(ranked[:cut])
        leaders = sum(1 for i in usable if i in before_cut)
        return (
            self._passages(usable, scores, found, memories, limit, size, leaders, fused),
            False,
        )

    def _strengthened(
        self,
        at: datetime,
        scores: dict[str, float],
        ranked: list[str],
        memories: dict[str, Memory],
    ) -> tuple[dict[str, float], list[str]]:
        weight = self._tuning.strength_weight
        decay = self._time.decay
        out = dict(scores)
        for memory_id, memory in memories.items():
            if memory_id in out:
                out[memory_id] *= 1 + weight * decay.strength(memory, at)
        return out, sorted(ranked, key=out.__getitem__, reverse=True)

    def _awake(self, at: datetime | None) -> Callable[[Memory], bool]:
        # None: dormant memories were asked for.
        if at is None:
            return lambda _memory: True
        decay = self._time.decay
        return lambda memory: not decay.dormant(memory, at)

    @staticmethod
    def _ranked(scores: dict[str, float], wants_entities: bool) -> list[str]:
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        if wants_entities:
            return ranked
        # Known from the id alone: no need to fetch a hub (and its provenance) to drop it.
        return [i for i in ranked if type_of(i) is not MemoryType.ENTITY]

    def _time_filter(self, q: RecallQuery) -> MemoryFilter | None:
        """The request's filter narrowed to the time the query names, if it names one."""
        if self._time_spans is None or not self._tuning.time_weight:
            return None
        spans = self._time_spans(q.query, self._clock())
        if not spans:
            return None
        start = min(s for s, _ in spans)
        end = max(e for _, e in spans)
        flt = q.filter
        if flt.occurred_from is not None:
            start = max(start, flt.occurred_from)
        if flt.occurred_to is not None:
            end = min(end, flt.occurred_to)
        if start >= end:
            return None
        return replace(flt, occurred_from=start, occurred_to=end)

    def _fuse(self, lists: list[tuple[list[SearchHit], float]]) -> dict[str, float]:
        t = self._tuning
        scores: dict[str, float] = defaultdict(float)
        for hits, weight in lists:
            if not hits or weight == 0:
                continue
            if t.fusion == "score":
                top, bottom = hits[0].score, hits[-1].score
                span = top - bottom
                for hit in hits:
                    # Hits that all score the same (one hit, say) are all as good as the best:
                    # min-max would give them nothing.
                    share = (hit.score - bottom) / span if span else 1.0
                    scores[hit.memory_id] += weight * share
            else:
                for rank, hit in enumerate(hits, start=1):
                    scores[hit.memory_id] += weight / (t.rrf_k + rank)
        return scores

    def _expanded(
        self, fused: dict[str, float], found: Neighbours, temporal_seeds: list[str]
    ) -> tuple[dict[str, float], dict[str, list[ChannelHit]]]:
        """The fused scores plus what neighbours inherit from their seeds, and the expansion's
        channel hits. Pure: `choose` runs it inside the store's read, the caller again after.
        Only `temporal_seeds` pass score to their chain neighbours (the store may have been
        asked for the neighbours of more, for passages)."""
        t = self._tuning
        scores = dict(fused)
        channels: dict[str, list[ChannelHit]] = defaultdict(list)
        chain = {s: found.chain[s] for s in temporal_seeds if s in found.chain}
        for name, weight, neighbours in (
            ("graph", t.graph_weight, found.graph),
            ("temporal", t.temporal_weight, chain),
        ):
            # A neighbour inherits from its best seed only: a hub next to many hits must not
            # pile up score from all of them.
            inherited: dict[str, float] = {}
            for seed, near in neighbours.items():
                for neighbour in near:
                    gain = weight * fused.get(seed, 0.0)
                    if gain > inherited.get(neighbour, 0.0):
                        inherited[neighbour] = gain
            ordered = sorted(inherited, key=inherited.__getitem__, reverse=True)
            for rank, memory_id in enumerate(ordered, start=1):
                scores[memory_id] = scores.get(memory_id, 0.0) + inherited[memory_id]
                channels[memory_id].append(ChannelHit(name, rank, inherited[memory_id]))
        return scores, channels


def _derived_sources(ids: list[str], memories: dict[str, Memory]) -> dict[str, list[str]]:
    return {
        i: memories[i].episode_ids
        for i in ids
        if type_of(i) is not MemoryType.EPISODE and i in memories
    }


def context_block(results: list[ScoredMemory]) -> str:
    """One line per result in rank order, with dates; a passage's episodes follow its first
    line in event-time order, each on a line of its own."""
    lines = []
    for i, item in enumerate(results, start=1):
        if not item.joined:
            lines.append(f"[{i}] {_describe(item.memory)}")
            continue
        passage = in_chain_order([item.memory, *item.joined])
        lines.append(f"[{i}] {_describe(passage[0])}")
        lines.extend(f"    {_describe(m)}" for m in passage[1:])
    return "\n".join(lines)


def _describe(memory: Memory) -> str:
    when = memory.occurred_at.strftime("%Y-%m-%d") if memory.occurred_at else "undated"
    text = " ".join(memory.text.split())
    if isinstance(memory, Episode) and memory.speaker:
        text = f"{memory.speaker}: {text}"
    validity = " (no longer true)" if memory.invalid_at is not None else ""
    return f"({memory.type.value}, {when}) {text}{validity}"
