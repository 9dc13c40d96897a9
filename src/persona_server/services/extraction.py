"""Extraction: turn stored episodes into derived memories (entities, facts, psyche, goals).

Two ways to run the one merge path, chosen by the extractor's cost:

- Cheap extractors (the offline rules): a batch of episodes is processed together. A first
  pass without context collects the names and keys the batch talks about, those are looked up
  in the store in a few batched queries, and a second pass (only for episodes that have
  relevant context) lets the extractor see existing facts and goals (contradictions, achieved
  goals). Everything is written in one transaction per batch.
- Costly extractors (an LLM, `per_item=True`): each episode is processed on its own. Its
  relevant existing memories are gathered first (a small vector + full-text search of the
  user's derived memories), so the extractor is called once with full context; names that
  deterministic resolution leaves ambiguous may go to the extractor in one more small call.
  Each episode is written in its own transaction, so one failing item never holds back the
  others, and its calls are charged to a per-item scope (tenant, budget).

Either way, derived memories are merged with what the user already has (reinforcement instead
of duplicates) and new ones are embedded in one call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from opentelemetry import metrics

from persona_server.domain.ids import new_id
from persona_server.domain.models import (
    Entity,
    EntityKind,
    Episode,
    ExtractionState,
    ExtractionStatus,
    Fact,
    Goal,
    Memory,
    MemoryType,
    Psyche,
    UserRef,
)
from persona_server.domain.names import normalise_name
from persona_server.extraction.resolution import EntityMatch, resolve
from persona_server.ports.embedder import Embedder, EmbedderUnavailableError
from persona_server.ports.extractor import (
    USER_SUBJECT,
    ExtractedEntity,
    ExtractionInput,
    ExtractionResult,
    Extractor,
)
from persona_server.ports.graph_store import (
    PROVENANCE_LIMIT,
    DerivedWrite,
    GraphStore,
    MemoryFilter,
    SearchHit,
    StoreUnavailableError,
)
from persona_server.ports.llm import AmbiguousMention, Disambiguator, LlmUnavailableError
from persona_server.services.ingest import embedding_text, utcnow

log = logging.getLogger(__name__)
_meter = metrics.get_meter("persona.extraction")
_calls_per_item = _meter.create_histogram(
    "persona.extraction.llm_calls_per_item",
    unit="{call}",
    description="LLM calls made to extract one ingested item",
)
_failures = _meter.create_counter(
    "persona.extraction.failures",
    unit="{episode}",
    description="failed extraction attempts, by extractor and whether they will be retried",
)
_DERIVED = frozenset({MemoryType.ENTITY, MemoryType.FACT, MemoryType.PSYCHE, MemoryType.GOAL})
_RRF_K = 60.0
_TEXT_QUERY_CHARS = 2000  # full-text context search reads the start of long items only


class ItemUsage(Protocol):
    """What a per-item scope reports when the item is done."""

    @property
    def calls(self) -> int: ...


# Opens the scope one item's extraction runs in (the LLM path: tenant and per-item budget).
ItemScope = Callable[[UserRef], AbstractContextManager[ItemUsage]]


@dataclass
class ExtractionStats:
    """Counters the pipeline keeps for reporting (and tests): items and their LLM calls."""

    items: int = 0
    llm_calls: int = 0
    max_calls_per_item: int = 0
    calls_histogram: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, calls: int) -> None:
        self.items += 1
        self.llm_calls += calls
        self.max_calls_per_item = max(self.max_calls_per_item, calls)
        self.calls_histogram[calls] += 1


@dataclass
class _Overlay:
    """Memories created or changed earlier in this batch, seen before the store's copies."""

    by_id: dict[str, Memory] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)

    def put(self, memory: Memory, *, new: bool) -> None:
        self.by_id[memory.id] = memory
        if new:
            self.created.add(memory.id)


def _cite(memory: Memory, episode: Episode, now: datetime, *, reinforce: bool) -> Memory:
    """Add the episode to a memory's provenance; count it as a confirmation when it is new.

    The reinforcement is dated in event time (the episode's), as decay is: a back-filled old
    mention does not make a memory look fresh, and never moves its last reinforcement back."""
    if episode.id in memory.episode_ids:
        return memory
    update: dict[str, object] = {}
    # Past the limit the store keeps the link but reads do not return it (see PROVENANCE_LIMIT).
    if len(memory.episode_ids) < PROVENANCE_LIMIT:
        update["episode_ids"] = [*memory.episode_ids, episode.id]
        update["source_ids"] = [*memory.source_ids, episode.source_id]
    if reinforce:
        update["mention_count"] = memory.mention_count + 1
        when = episode.occurred_at or now
        last = memory.last_reinforced_at
        update["last_reinforced_at"] = when if last is None or when > last else last
    return memory.model_copy(update=update)


def _origin(
    episode: Episode, when: datetime, now: datetime, *, valid_from: datetime | None = None
) -> dict[str, Any]:
    """The fields every memory derived from `episode` starts with: its time and provenance."""
    return {
        "occurred_at": when,
        "recorded_at": now,
        "valid_from": valid_from or when,
        "source_ids": [episode.source_id],
        "episode_ids": [episode.id],
        # Event time, as decay is (domain.strength).
        "last_reinforced_at": when,
        "metadata": episode.metadata,
    }


_Keyed = TypeVar("_Keyed", Psyche, Goal)


def _valid_by_key(current: dict[str, Memory], kind: type[_Keyed], key: str) -> _Keyed | None:
    """The still-valid psyche or goal with this merge key, if the user has one."""
    for memory in current.values():
        if isinstance(memory, kind) and memory.key == key and memory.invalid_at is None:
            return memory
    return None


# (episode, touched memory ids, mentioned entity ids, invalidations, the episode summary)
_Write = tuple[Episode, list[str], list[str], list[tuple[str, datetime]], str]


class ExtractionPipeline:
    def __init__(
        self,
        store: GraphStore,
        embedder: Embedder,
        extractor: Extractor,
        clock: Callable[[], datetime] = utcnow,
        *,
        per_item: bool = False,
        context_memories: int = 20,
        item_scope: ItemScope | None = None,
    ) -> None:
        """`per_item` selects the one-call-per-item path for costly extractors (see the module
        doc); `context_memories` is how many existing memories each item's extraction sees
        there, and `item_scope` the scope each item runs in."""
        self._store = store
        self._embedder = embedder
        self._extractor = extractor
        self._clock = clock
        self._per_item = per_item
        self._context_memories = context_memories
        self._item_scope = item_scope
        self.stats = ExtractionStats()

    @property
    def extractor_name(self) -> str:
        return self._extractor.name

    @property
    def per_item(self) -> bool:
        """True when each episode is extracted (and written) on its own."""
        return self._per_item

    async def process(
        self, user: UserRef, episodes: Sequence[Episode]
    ) -> dict[str, ExtractionStatus]:
        """Extract, merge and write; returns the extraction status written on each episode.
        Raises on failure; the caller records the failure.

        On the per-item path episodes are done in order, each written before the next starts:
        a failure leaves the earlier ones done, so callers pass one episode at a time.
        """
        if not episodes:
            return {}
        if self.per_item:
            written: dict[str, ExtractionStatus] = {}
            for episode in episodes:
                written.update(await self._process_one(user, episode))
            return written
        now = self._clock()
        first = [await self._extract(e, ()) for e in episodes]
        existing = await self._lookup(user, episodes, first)
        overlay = _Overlay()
        writes: list[_Write] = []
        for episode, draft in zip(episodes, first, strict=True):
            context = self._context_for(draft, existing, overlay)
            result = await self._extract(episode, context) if context else draft
            current = {**existing, **overlay.by_id}
            matches = self._resolve(episode, result, current)
            merged = self._merge(user, episode, result, existing, overlay, now, matches)
            writes.append((episode, *merged, result.summary))
        return await self._write(user, overlay, writes, now)

    async def _process_one(self, user: UserRef, episode: Episode) -> dict[str, ExtractionStatus]:
        now = self._clock()
        scope: AbstractContextManager[ItemUsage | None] = (
            self._item_scope(user) if self._item_scope is not None else nullcontext(None)
        )
        with scope as usage:
            context = await self._gather_context(user, episode)
            result = await self._extract(episode, context)
            existing = await self._lookup(user, [episode], [result])
            for memory in context:
                existing.setdefault(memory.id, memory)
            overlay = _Overlay()
            matches = self._resolve(episode, result, existing)
            matches = await self._settle_ambiguous(episode, matches, existing)
            write = self._merge(user, episode, result, existing, overlay, now, matches)
        written = await self._write(user, overlay, [(episode, *write, result.summary)], now)
        calls = usage.calls if usage is not None else 0
        self.stats.add(calls)
        _calls_per_item.record(calls, {"extractor": self._extractor.name})
        log.debug(
            "extracted", extra={"episode_id": episode.id, "llm_calls": calls, "user": user.user_id}
        )
        return written

    async def _gather_context(self, user: UserRef, episode: Episode) -> list[Memory]:
        """The user's existing derived memories most related to the episode, best first: the
        speaker's own entity, then vector and full-text hits fused by reciprocal rank."""
        k = self._context_memories
        memories = self._store.memories
        if k <= 0:
            return []
        vector = await self._embedder.embed([embedding_text(episode)])
        only_valid = MemoryFilter(types=_DERIVED)
        vector_hits, text_hits, speaker = await asyncio.gather(
            self._store.search.vector(user, vector, k, only_valid),
            self._store.search.text(user, episode.text[:_TEXT_QUERY_CHARS], k, only_valid),
            memories.find_entities(user, [normalise_name(episode.speaker or USER_SUBJECT)]),
        )
        ranked = _fuse(vector_hits, text_hits)[:k]
        found = await memories.get_many(user, ranked)
        out: dict[str, Memory] = {m.id: m for m in speaker if m.invalid_at is None}
        for memory_id in ranked:
            memory = found.get(memory_id)
            if memory is not None and memory.invalid_at is None:
                out.setdefault(memory_id, memory)
        return list(out.values())[: max(k, len(speaker))]

    def _resolve(
        self, episode: Episode, result: ExtractionResult, current: dict[str, Memory]
    ) -> list[EntityMatch]:
        known_entities = [m for m in current.values() if isinstance(m, Entity)]
        subjects = [
            ExtractedEntity(episode.speaker or USER_SUBJECT, EntityKind.PERSON),
            *result.entities,
        ]
        return list(resolve(subjects, known_entities).matches)

    async def _settle_ambiguous(
        self, episode: Episode, matches: list[EntityMatch], current: dict[str, Memory]
    ) -> list[EntityMatch]:
        """At most one extra call: names with several fitting entities go to the extractor
        (if it can judge them); whatever it cannot settle becomes a new entity, because
        merging two different people is worse than keeping a duplicate."""
        ambiguous = [m for m in matches if m.is_ambiguous]
        if not ambiguous or not isinstance(self._extractor, Disambiguator):
            return matches
        mentions = [
            AmbiguousMention(
                name=m.entity.name,
                kind=m.entity.kind,
                candidates=tuple(
                    e for c in m.candidates if isinstance(e := current.get(c), Entity)
                ),
            )
            for m in ambiguous
        ]
        choices = await self._extractor.disambiguate(self._input(episode, ()), mentions)
        settled = []
        for match in matches:
            chosen = choices.get(match.entity.name) if match.is_ambiguous else None
            if chosen is not None and chosen in match.candidates:
                match = EntityMatch(
                    entity=match.entity, existing_id=chosen, candidates=(), names=match.names
                )
            settled.append(match)
        return settled

    @staticmethod
    def _input(episode: Episode, context: Sequence[Memory]) -> ExtractionInput:
        return ExtractionInput(
            text=episode.text,
            occurred_at=episode.occurred_at or episode.recorded_at,
            speaker=episode.speaker,
            context=tuple(context),
        )

    async def _extract(self, episode: Episode, context: Sequence[Memory]) -> ExtractionResult:
        return await self._extractor.extract(self._input(episode, context))

    async def _write(
        self, user: UserRef, overlay: _Overlay, writes: Sequence[_Write], now: datetime
    ) -> dict[str, ExtractionStatus]:
        new_ids = [i for i in overlay.by_id if i in overlay.created]
        vectors = await self._embedder.embed([overlay.by_id[i].text for i in new_ids])
        row = {memory_id: vectors[i] for i, memory_id in enumerate(new_ids)}
        done = ExtractionStatus(
            state=ExtractionState.DONE, extractor=self._extractor.name, updated_at=now
        )
        derived = []
        for episode, touched, mentions, invalidate, summary in writes:
            attempts = episode.extraction.attempts + 1
            derived.append(
                DerivedWrite(
                    episode_id=episode.id,
                    memories=[overlay.by_id[i] for i in touched],
                    vectors={i: row[i] for i in touched if i in row},
                    mentions=mentions,
                    invalidate=invalidate,
                    extraction=done.model_copy(update={"attempts": attempts}),
                    summary=summary,
                )
            )
        await self._store.memories.write_derived(user, *derived)
        return {d.episode_id: d.extraction for d in derived if d.extraction is not None}

    async def _lookup(
        self, user: UserRef, episodes: Sequence[Episode], results: Sequence[ExtractionResult]
    ) -> dict[str, Memory]:
        """Existing memories the batch may merge with or contradict, by id."""
        names = {USER_SUBJECT}
        psyche_keys: set[str] = set()
        goal_keys: set[str] = set()
        for episode, result in zip(episodes, results, strict=True):
            if episode.speaker:
                names.add(episode.speaker)
            for ent in result.entities:
                names.update([ent.name, *ent.aliases])
                # A one-word mention may be the first name of a known full name.
                names.update(ent.name.split()[:1])
            psyche_keys.update(p.key for p in result.psyche)
            goal_keys.update(g.key for g in result.goals)
        memories = self._store.memories
        # Side by side: on a networked store each lookup is a round trip. Facts are keyed by
        # their subject entity, so they wait for the entities.
        entities, psyche, goals = await asyncio.gather(
            memories.find_entities(user, [normalise_name(n) for n in names]),
            memories.find_by_key(user, MemoryType.PSYCHE, sorted(psyche_keys)),
            memories.find_by_key(user, MemoryType.GOAL, sorted(goal_keys)),
        )
        fact_keys = {
            f"{ent.id}|{rel.predicate}"
            for ent in entities
            for result in results
            for rel in result.relations
        }
        facts = await memories.find_by_key(user, MemoryType.FACT, sorted(fact_keys))
        found: list[Memory] = [*entities, *facts, *psyche, *goals]
        return {m.id: m for m in found}

    def _context_for(
        self, draft: ExtractionResult, existing: dict[str, Memory], overlay: _Overlay
    ) -> list[Memory]:
        if not (draft.relations or draft.psyche or draft.goals):
            return []
        merged = {**existing, **overlay.by_id}
        return [m for m in merged.values() if m.invalid_at is None]

    def _merge(
        self,
        user: UserRef,
        episode: Episode,
        result: ExtractionResult,
        existing: dict[str, Memory],
        overlay: _Overlay,
        now: datetime,
        matches: Sequence[EntityMatch],
    ) -> tuple[list[str], list[str], list[tuple[str, datetime]]]:
        """Fold one episode's extraction into the overlay; return the ids it touched.

        `matches` is `_resolve` over the same `existing` + overlay (possibly settled further).
        """
        when = episode.occurred_at or now
        current = {**existing, **overlay.by_id}
        touched: list[str] = []
        entity_ids: dict[str, str] = {}

        def keep(memory: Memory, *, new: bool) -> None:
            overlay.put(memory, new=new)
            current[memory.id] = memory
            if memory.id not in touched:
                touched.append(memory.id)

        for match in matches:
            if match.existing_id is not None and match.existing_id in current:
                base = current[match.existing_id]
                assert isinstance(base, Entity)
                aliases = [a for a in match.entity.aliases if a not in base.aliases]
                if base.name not in match.names:
                    aliases = [*aliases, *[n for n in match.names if n != base.name]]
                updated = _cite(base, episode, now, reinforce=True)
                if aliases:
                    merged_aliases = list(dict.fromkeys([*base.aliases, *aliases]))
                    updated = updated.model_copy(update={"aliases": merged_aliases})
                keep(updated, new=False)
                entity = updated
            else:
                entity = Entity(
                    id=new_id(MemoryType.ENTITY),
                    text=match.entity.name,
                    name=match.entity.name,
                    kind=match.entity.kind,
                    aliases=list(match.entity.aliases),
                    **_origin(episode, when, now),
                )
                keep(entity, new=True)
            for name in match.names:
                entity_ids[normalise_name(name)] = entity.id
        mentions = [i for i in touched if i.startswith("en_")]

        def entity_id(name: str) -> str | None:
            return entity_ids.get(normalise_name(name))

        for rel in result.relations:
            subject_id = entity_id(rel.subject) or entity_id(episode.speaker or USER_SUBJECT)
            if subject_id is None:
                continue
            object_id = entity_id(rel.object) if rel.object_is_entity else None
            object_value = "" if object_id else rel.object
            same = [
                m
                for m in current.values()
                if isinstance(m, Fact)
                and m.subject_id == subject_id
                and m.predicate == rel.predicate
                and m.invalid_at is None
                and (m.object_id or normalise_name(m.object_value))
                == (object_id or normalise_name(object_value))
            ]
            if same:
                keep(_cite(same[0], episode, now, reinforce=True), new=False)
                continue
            fact = Fact(
                id=new_id(MemoryType.FACT),
                text=rel.text,
                subject_id=subject_id,
                predicate=rel.predicate,
                object_id=object_id or "",
                object_value=object_value,
                **_origin(episode, when, now, valid_from=rel.valid_from or when),
            )
            keep(fact, new=True)

        for psyche in result.psyche:
            prior = _valid_by_key(current, Psyche, psyche.key)
            if prior is not None:
                keep(_cite(prior, episode, now, reinforce=True), new=False)
                continue
            keep(
                Psyche(
                    id=new_id(MemoryType.PSYCHE),
                    text=psyche.text,
                    kind=psyche.kind,
                    key=psyche.key,
                    **_origin(episode, when, now),
                ),
                new=True,
            )

        for goal in result.goals:
            prior_goal = _valid_by_key(current, Goal, goal.key)
            if prior_goal is not None:
                updated_goal = _cite(prior_goal, episode, now, reinforce=True)
                if goal.status != prior_goal.status:
                    updated_goal = updated_goal.model_copy(update={"status": goal.status})
                keep(updated_goal, new=False)
                continue
            keep(
                Goal(
                    id=new_id(MemoryType.GOAL),
                    text=goal.text,
                    status=goal.status,
                    key=goal.key,
                    due_at=goal.due_at,
                    **_origin(episode, when, now),
                ),
                new=True,
            )

        invalidate = self._contradictions(result, current, when, touched)
        for memory_id, at in invalidate:
            memory = current[memory_id].model_copy(update={"invalid_at": at})
            overlay.put(memory, new=memory_id in overlay.created)
            current[memory_id] = memory
        return touched, mentions, invalidate

    @staticmethod
    def _contradictions(
        result: ExtractionResult,
        current: dict[str, Memory],
        when: datetime,
        touched: list[str],
    ) -> list[tuple[str, datetime]]:
        out = []
        for memory_id in result.contradicts:
            old = current.get(memory_id)
            if old is None or old.invalid_at is not None or memory_id in touched:
                continue
            # History keeps the old fact; it stops being valid when the new statement was made.
            out.append((memory_id, when))
        return out


def _fuse(*channels: list[SearchHit]) -> list[str]:
    """Reciprocal-rank fusion of search channels: ids, best first."""
    scores: dict[str, float] = defaultdict(float)
    for hits in channels:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.memory_id] += 1.0 / (_RRF_K + rank)
    return sorted(scores, key=lambda i: (-scores[i], i))


RETRY_BASE_S = 5.0
RETRY_MAX_S = 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """When failed extractions are tried again: exponential backoff from `base_s`, capped at
    `max_s`; after `max_attempts` (0 = never) the episode stays FAILED with no next attempt
    (it stays stored and recallable; re-ingesting it with `replace` starts over)."""

    base_s: float = RETRY_BASE_S
    max_s: float = RETRY_MAX_S
    max_attempts: int = 0

    def delay_s(self, attempts: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** max(attempts - 1, 0)))


def retry_delay_s(attempts: int) -> float:
    return RetryPolicy().delay_s(attempts)


class InlineExtraction:
    """Runs extraction inside the Ingest call: the offline rules are fast and deterministic,
    so the episode and what it implies are recallable together when Ingest returns. A failure
    never fails the Ingest (the episodes are already stored): it is recorded on each episode
    for the background worker to retry."""

    inline = True

    def __init__(
        self, store: GraphStore, pipeline: ExtractionPipeline, retry: RetryPolicy | None = None
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._retry = retry or RetryPolicy()

    async def submit(
        self, user: UserRef, episodes: Sequence[Episode], *, wait: bool
    ) -> dict[str, ExtractionStatus]:
        try:
            return await self._pipeline.process(user, episodes)
        except Exception as exc:
            log.exception("extraction failed", extra={"episodes": len(episodes)})
            return await record_failure(
                self._store, user, episodes, exc, self._pipeline.extractor_name, self._retry
            )


def is_transient(exc: BaseException) -> bool:
    """Failures of a dependency that will likely pass (the LLM, the embedder or the store was
    unreachable): the episode stays PENDING with the reason, retried after the backoff.
    Anything else (a model answer that never fits, a spent budget, a bug) is FAILED."""
    return isinstance(exc, LlmUnavailableError | EmbedderUnavailableError | StoreUnavailableError)


async def record_failure(
    store: GraphStore,
    user: UserRef,
    episodes: Sequence[Episode],
    exc: BaseException,
    extractor: str,
    retry: RetryPolicy | None = None,
) -> dict[str, ExtractionStatus]:
    """Record the failed attempt on each episode; returns the statuses written."""
    policy = retry or RetryPolicy()
    now = utcnow()
    transient = is_transient(exc)
    _failures.add(len(episodes), {"extractor": extractor, "transient": str(transient).lower()})
    written: dict[str, ExtractionStatus] = {}
    for episode in episodes:
        attempts = episode.extraction.attempts + 1
        give_up = policy.max_attempts > 0 and attempts >= policy.max_attempts
        status = ExtractionStatus(
            state=ExtractionState.PENDING if transient and not give_up else ExtractionState.FAILED,
            attempts=attempts,
            last_error=f"{type(exc).__name__}: {exc}"[:500],
            extractor=extractor,
            updated_at=now,
            next_attempt_at=None if give_up else now + timedelta(seconds=policy.delay_s(attempts)),
        )
        await store.episodes.set_extraction(user, episode.id, status)
        written[episode.id] = status
    return written
