"""Extraction: turn stored episodes into derived memories (entities, facts, psyche, goals).

One batch of episodes is processed together: a first extraction pass without context collects
the names and keys the batch talks about, those are looked up in the store in a few batched
queries, and a second pass (only for episodes that have relevant context) lets the extractor see
existing facts and goals (contradictions, achieved goals). Derived memories are merged with what
the user already has (reinforcement instead of duplicates), new ones are embedded in one call,
and everything is written in one transaction per episode batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
from persona_server.extraction.resolution import resolve
from persona_server.ports.embedder import Embedder
from persona_server.ports.extractor import (
    USER_SUBJECT,
    ExtractedEntity,
    ExtractionInput,
    ExtractionResult,
    Extractor,
)
from persona_server.ports.graph_store import DerivedWrite, GraphStore
from persona_server.services.ingest import utcnow

log = logging.getLogger(__name__)


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
    """Add the episode to a memory's provenance; count it as a confirmation when it is new."""
    if episode.id in memory.episode_ids:
        return memory
    update: dict[str, object] = {
        "episode_ids": [*memory.episode_ids, episode.id],
        "source_ids": [*memory.source_ids, episode.source_id],
    }
    if reinforce:
        update["mention_count"] = memory.mention_count + 1
        update["last_reinforced_at"] = now
    return memory.model_copy(update=update)


class ExtractionPipeline:
    def __init__(
        self,
        store: GraphStore,
        embedder: Embedder,
        extractor: Extractor,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._extractor = extractor
        self._clock = clock

    @property
    def extractor_name(self) -> str:
        return self._extractor.name

    async def process(self, user: UserRef, episodes: Sequence[Episode]) -> None:
        """Extract, merge and write. Raises on failure; the caller records the failure."""
        if not episodes:
            return
        now = self._clock()
        first = [await self._extract(e, ()) for e in episodes]
        existing = await self._lookup(user, episodes, first)
        overlay = _Overlay()
        writes: list[tuple[Episode, list[str], list[str], list[tuple[str, datetime]]]] = []
        for episode, draft in zip(episodes, first, strict=True):
            context = self._context_for(draft, existing, overlay)
            result = await self._extract(episode, context) if context else draft
            touched, mentions, invalidate = self._merge(
                user, episode, result, existing, overlay, now
            )
            writes.append((episode, touched, mentions, invalidate))
        new_ids = [i for i in overlay.by_id if i in overlay.created]
        vectors = await self._embedder.embed([overlay.by_id[i].text for i in new_ids])
        row = {memory_id: vectors[i] for i, memory_id in enumerate(new_ids)}
        done = ExtractionStatus(
            state=ExtractionState.DONE, extractor=self._extractor.name, updated_at=now
        )
        derived = []
        for episode, touched, mentions, invalidate in writes:
            attempts = episode.extraction.attempts + 1
            derived.append(
                DerivedWrite(
                    episode_id=episode.id,
                    memories=[overlay.by_id[i] for i in touched],
                    vectors={i: row[i] for i in touched if i in row},
                    mentions=mentions,
                    invalidate=invalidate,
                    extraction=done.model_copy(update={"attempts": attempts}),
                )
            )
        await self._store.memories.write_derived(user, *derived)

    async def _extract(self, episode: Episode, context: Sequence[Memory]) -> ExtractionResult:
        return await self._extractor.extract(
            ExtractionInput(
                text=episode.text,
                occurred_at=episode.occurred_at or episode.recorded_at,
                speaker=episode.speaker,
                context=tuple(context),
            )
        )

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
        entities = await memories.find_entities(user, [normalise_name(n) for n in names])
        fact_keys = {
            f"{ent.id}|{rel.predicate}"
            for ent in entities
            for result in results
            for rel in result.relations
        }
        found: list[Memory] = [*entities]
        found += await memories.find_by_key(user, MemoryType.FACT, sorted(fact_keys))
        found += await memories.find_by_key(user, MemoryType.PSYCHE, sorted(psyche_keys))
        found += await memories.find_by_key(user, MemoryType.GOAL, sorted(goal_keys))
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
    ) -> tuple[list[str], list[str], list[tuple[str, datetime]]]:
        """Fold one episode's extraction into the overlay; return the ids it touched."""
        when = episode.occurred_at or now
        current = {**existing, **overlay.by_id}
        known_entities = [m for m in current.values() if isinstance(m, Entity)]
        subjects = [
            ExtractedEntity(episode.speaker or USER_SUBJECT, EntityKind.PERSON),
            *result.entities,
        ]
        resolution = resolve(subjects, known_entities)
        touched: list[str] = []
        entity_ids: dict[str, str] = {}

        def keep(memory: Memory, *, new: bool) -> None:
            overlay.put(memory, new=new)
            current[memory.id] = memory
            if memory.id not in touched:
                touched.append(memory.id)

        for match in resolution.matches:
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
                    occurred_at=when,
                    recorded_at=now,
                    valid_from=when,
                    source_ids=[episode.source_id],
                    episode_ids=[episode.id],
                    last_reinforced_at=now,
                    metadata=episode.metadata,
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
                occurred_at=when,
                recorded_at=now,
                valid_from=rel.valid_from or when,
                source_ids=[episode.source_id],
                episode_ids=[episode.id],
                last_reinforced_at=now,
                metadata=episode.metadata,
            )
            keep(fact, new=True)

        for psyche in result.psyche:
            prior = next(
                (
                    m
                    for m in current.values()
                    if isinstance(m, Psyche) and m.key == psyche.key and m.invalid_at is None
                ),
                None,
            )
            if prior is not None:
                keep(_cite(prior, episode, now, reinforce=True), new=False)
                continue
            keep(
                Psyche(
                    id=new_id(MemoryType.PSYCHE),
                    text=psyche.text,
                    kind=psyche.kind,
                    key=psyche.key,
                    occurred_at=when,
                    recorded_at=now,
                    valid_from=when,
                    source_ids=[episode.source_id],
                    episode_ids=[episode.id],
                    last_reinforced_at=now,
                    metadata=episode.metadata,
                ),
                new=True,
            )

        for goal in result.goals:
            prior_goal = next(
                (
                    m
                    for m in current.values()
                    if isinstance(m, Goal) and m.key == goal.key and m.invalid_at is None
                ),
                None,
            )
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
                    occurred_at=when,
                    recorded_at=now,
                    valid_from=when,
                    source_ids=[episode.source_id],
                    episode_ids=[episode.id],
                    last_reinforced_at=now,
                    metadata=episode.metadata,
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


RETRY_BASE_S = 5.0
RETRY_MAX_S = 3600.0


def retry_delay_s(attempts: int) -> float:
    return float(min(RETRY_MAX_S, RETRY_BASE_S * 2 ** max(attempts - 1, 0)))


class InlineExtraction:
    """Runs extraction inside the Ingest call: the offline rules are fast and deterministic,
    so the episode and what it implies are recallable together when Ingest returns. A failure
    never fails the Ingest (the episodes are already stored): it is recorded on each episode
    for the background worker to retry."""

    def __init__(self, store: GraphStore, pipeline: ExtractionPipeline) -> None:
        self._store = store
        self._pipeline = pipeline

    async def submit(self, user: UserRef, episode_ids: Sequence[str], *, wait: bool) -> None:
        found = await self._store.memories.get_many(user, episode_ids)
        episodes = [m for i in episode_ids if isinstance(m := found.get(i), Episode)]
        try:
            await self._pipeline.process(user, episodes)
        except Exception as exc:
            log.exception("extraction failed", extra={"episodes": len(episodes)})
            await record_failure(self._store, user, episodes, exc, self._pipeline.extractor_name)


async def record_failure(
    store: GraphStore,
    user: UserRef,
    episodes: Sequence[Episode],
    exc: BaseException,
    extractor: str,
) -> None:
    now = utcnow()
    for episode in episodes:
        attempts = episode.extraction.attempts + 1
        await store.episodes.set_extraction(
            user,
            episode.id,
            ExtractionStatus(
                state=ExtractionState.FAILED,
                attempts=attempts,
                last_error=f"{type(exc).__name__}: {exc}"[:500],
                extractor=extractor,
                updated_at=now,
                next_attempt_at=now + timedelta(seconds=retry_delay_s(attempts)),
            ),
        )
