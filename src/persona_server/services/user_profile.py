"""GetProfile: who the user is now, in one call, assembled from the graph with no LLM.

Built on the profile groups (services.profile): each group is read from its index, bounded, then
the strongest (domain.strength at `as_of`, or at the user's present: services.decay_time) are
kept. Psyche items and entities are candidates both for being mentioned most and for being
recorded last, as either can make a memory strong; active goals by record time; episodes are the
latest in event time. Ties go to the larger id, so the same store and `as_of` always give the
same profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from persona_server.domain.ids import type_of
from persona_server.domain.models import (
    Entity,
    Episode,
    Fact,
    Goal,
    GoalStatus,
    Memory,
    MemoryType,
    UserRef,
)
from persona_server.domain.names import normalise_name
from persona_server.ports.extractor import USER_SUBJECT
from persona_server.ports.graph_store import GraphStore, MemoryCounts, MemoryOrder
from persona_server.services.ingest import utcnow
from persona_server.services.profile import ProfileGroup, ProfileService

DEFAULT_ITEMS = 10
MAX_ITEMS = 100
# Candidates read per shown item (per order), so that strength, not only the index order,
# picks what is shown.
_CANDIDATES = 3
# Facts looked at per key entity for its relation to the user (valid facts come first).
_RELATION_FACTS = 20
_SELF = normalise_name(USER_SUBJECT)

_PSYCHE_MENTIONED = ProfileGroup("psyche", MemoryType.PSYCHE, MemoryOrder.MOST_MENTIONED)
_PSYCHE_RECENT = ProfileGroup("psyche", MemoryType.PSYCHE, MemoryOrder.LATEST_RECORDED)
_GOALS = ProfileGroup("goals", MemoryType.GOAL, MemoryOrder.LATEST_RECORDED, GoalStatus.ACTIVE)
_ENTITIES_MENTIONED = ProfileGroup(
    "entities", MemoryType.ENTITY, MemoryOrder.MOST_MENTIONED, without_self=True
)
_ENTITIES_RECENT = ProfileGroup(
    "entities", MemoryType.ENTITY, MemoryOrder.LATEST_RECORDED, without_self=True
)
_EPISODES = ProfileGroup("episodes", MemoryType.EPISODE, MemoryOrder.LATEST_EVENT)


@dataclass(frozen=True)
class ProfileItem:
    memory: Memory
    strength: float
    relation: str = ""  # entities: the predicate of a valid fact between the user and it


@dataclass(frozen=True)
class UserProfile:
    as_of: datetime
    psyche: list[ProfileItem]
    goals: list[ProfileItem]
    entities: list[ProfileItem]
    episodes: list[ProfileItem]
    counts: MemoryCounts
    context_block: str


@dataclass(frozen=True)
class ProfileQuery:
    user: UserRef
    max_items: int = DEFAULT_ITEMS
    as_of: datetime | None = None
    include_dormant: bool = False


class UserProfileService:
    def __init__(
        self,
        store: GraphStore,
        profile: ProfileService,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._profile = profile
        self._clock = clock

    async def get(self, q: ProfileQuery) -> UserProfile:
        if not 1 <= q.max_items <= MAX_ITEMS:
            raise ValueError(f"max_items must be 1 to {MAX_ITEMS}")
        at = q.as_of or self._clock()
        # One read of the user's present serves both the strengths shown and dormancy.
        time = self._profile.decay_time
        decay_at = await time.at(q.user, q.as_of)
        keep = self._profile.keep_at(None if q.include_dormant else decay_at, as_of=q.as_of)

        def strength(memory: Memory) -> float:
            return time.decay.strength(memory, decay_at)

        n = q.max_items
        wide = n * _CANDIDATES

        def before(memory: Memory) -> bool:
            # A profile of the past shows what had happened by then.
            when = memory.occurred_at or memory.recorded_at
            return keep(memory) and (q.as_of is None or when <= q.as_of)

        reads = [
            (_PSYCHE_MENTIONED, wide),
            (_PSYCHE_RECENT, wide),
            (_GOALS, wide),
            (_ENTITIES_MENTIONED, wide),
            (_ENTITIES_RECENT, wide),
        ]
        found = await self._profile.read(q.user, reads, keep)
        (episodes,) = await self._profile.read(q.user, [(_EPISODES, n)], before)
        counts = await self._store.memories.counts(q.user, recorded_by=q.as_of)

        def strongest(*groups: list[Memory]) -> list[ProfileItem]:
            unique = {m.id: m for group in groups for m in group}
            items = [ProfileItem(m, strength(m)) for m in unique.values()]
            items.sort(key=lambda i: (i.strength, i.memory.id), reverse=True)
            return items[:n]

        entities = await self._with_relations(q.user, strongest(found[3], found[4]))
        psyche = strongest(found[0], found[1])
        goals = strongest(found[2])
        shown_episodes = [ProfileItem(m, strength(m)) for m in episodes]
        return UserProfile(
            as_of=at,
            psyche=psyche,
            goals=goals,
            entities=entities,
            episodes=shown_episodes,
            counts=counts,
            context_block=context_block(psyche, goals, entities, shown_episodes, counts),
        )

    async def _with_relations(self, user: UserRef, items: list[ProfileItem]) -> list[ProfileItem]:
        if not items:
            return items
        selves = await self._store.memories.find_entities(user, [_SELF])
        self_ids = {e.id for e in selves}
        if not self_ids:
            return items
        neighbours = await self._store.search.expand(
            user, [i.memory.id for i in items], _RELATION_FACTS
        )
        fact_ids = [
            f for near in neighbours.values() for f in near if type_of(f) is MemoryType.FACT
        ]
        facts = await self._store.memories.get_many(user, fact_ids)
        out = []
        for item in items:
            linking = [
                f
                for f in (facts.get(i) for i in neighbours.get(item.memory.id, []))
                if isinstance(f, Fact)
                and f.invalid_at is None
                and {f.subject_id, f.object_id} & self_ids
                and item.memory.id in (f.subject_id, f.object_id)
            ]
            # The latest stated relation wins; ties to the larger id.
            linking.sort(key=lambda f: (f.recorded_at, f.id), reverse=True)
            relation = linking[0].predicate if linking else ""
            out.append(ProfileItem(item.memory, item.strength, relation))
        return out


def _line(item: ProfileItem) -> str:
    m = item.memory
    text = " ".join(m.text.split())
    if isinstance(m, Entity):
        text = m.name + (
            f" ({m.kind.value}, {item.relation})" if item.relation else f" ({m.kind.value})"
        )
    elif isinstance(m, Episode):
        when = m.occurred_at.strftime("%Y-%m-%d") if m.occurred_at else "undated"
        text = f"{when} {m.speaker + ': ' if m.speaker else ''}{text}"
    elif isinstance(m, Goal):
        text = f"{text} [{m.status.value}]"
    return f"- {text} (strength {item.strength:.2f})"


def context_block(
    psyche: list[ProfileItem],
    goals: list[ProfileItem],
    entities: list[ProfileItem],
    episodes: list[ProfileItem],
    counts: MemoryCounts,
) -> str:
    """The profile as a few titled sections, strongest first; empty sections are left out."""
    sections = [
        ("About the user", psyche),
        ("Goals", goals),
        ("People, places and things", entities),
        ("Recently", episodes),
    ]
    lines: list[str] = []
    for title, items in sections:
        if items:
            lines.append(f"{title}:")
            lines.extend(_line(i) for i in items)
    by_type = counts.by_type
    lines.append(
        f"Memories: {by_type[MemoryType.EPISODE]} episodes, {by_type[MemoryType.PSYCHE]} psyche, "
        f"{by_type[MemoryType.GOAL]} goals ({counts.active_goals} active), "
        f"{by_type[MemoryType.ENTITY]} entities, {by_type[MemoryType.FACT]} facts."
    )
    return "\n".join(lines)
