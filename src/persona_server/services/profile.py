"""The user's current picture, assembled without a query: active goals, the strongest psyche
items, key entities and the most recent episodes.

Each group is one bounded, index-backed store read (`MemoryOps.ranked`), all from one snapshot,
so the cost does not grow with the user's size. What a group holds and in which order is
declared once, in `PROFILE_GROUPS`: the context feed (StreamContext without a query) reads it
here, and so will anything else that shows "who this user is".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from persona_server.domain.models import Entity, GoalStatus, Memory, MemoryType, UserRef
from persona_server.domain.names import normalise_name
from persona_server.domain.strength import Decay
from persona_server.ports.extractor import USER_SUBJECT
from persona_server.ports.graph_store import GraphStore, MemoryOrder, RankedRead
from persona_server.services.decay_time import DecayTime
from persona_server.services.ingest import utcnow
from persona_server.services.results import ScoredMemory

# The entity offline extraction gives the user who speaks unnamed ("I moved to Lisbon"): the
# user themself, a hub of every statement, not someone or something the user knows.
_SELF = normalise_name(USER_SUBJECT)


@dataclass(frozen=True)
class ProfileGroup:
    """One group of the profile: valid memories of one type, best first in `order`."""

    name: str
    memory_type: MemoryType
    order: MemoryOrder
    goal_status: GoalStatus | None = None
    without_self: bool = False  # leave the user's own entity out

    def read(self, limit: int) -> RankedRead:
        # One more than shown when the user's own entity may be among them.
        return RankedRead(
            self.memory_type, self.order, limit + int(self.without_self), self.goal_status
        )

    def shown(self, memories: list[Memory], limit: int) -> list[Memory]:
        if self.without_self:
            memories = [
                m
                for m in memories
                if not (isinstance(m, Entity) and normalise_name(m.name) == _SELF)
            ]
        return memories[:limit]


# The groups, in the order a profile lists them. Change a group's order here and every reader of
# the profile follows (the stores serve each order from an index: ports.graph_store.RankedRead).
PROFILE_GROUPS: tuple[ProfileGroup, ...] = (
    # What the user is working towards now: the most recently stated first.
    ProfileGroup("goals", MemoryType.GOAL, MemoryOrder.LATEST_RECORDED, GoalStatus.ACTIVE),
    # Traits, values and preferences said most often.
    ProfileGroup("psyche", MemoryType.PSYCHE, MemoryOrder.MOST_MENTIONED),
    # The people, places and things mentioned most often (the user aside).
    ProfileGroup("entities", MemoryType.ENTITY, MemoryOrder.MOST_MENTIONED, without_self=True),
    # What happened last, in event time.
    ProfileGroup("episodes", MemoryType.EPISODE, MemoryOrder.LATEST_EVENT),
)
PROFILE_TYPES = frozenset(g.memory_type for g in PROFILE_GROUPS)


@dataclass(frozen=True)
class Profile:
    """The groups asked for, each best first, in `PROFILE_GROUPS` order."""

    groups: list[tuple[ProfileGroup, list[Memory]]]

    def scored(self) -> list[ScoredMemory]:
        """Every memory, group by group. A profile has no relevance score: within a group the
        order is the score, so the r-th memory of a group scores 1/r."""
        return [
            ScoredMemory(memory, 1.0 / rank)
            for _, memories in self.groups
            for rank, memory in enumerate(memories, start=1)
        ]


# A group read that dormancy or `as_of` thins out is read again this many times larger, at most
# `_GROWTHS` times: bounded, like every profile read.
_GROWTH = 4
_GROWTHS = 3
Keep = Callable[[Memory], bool]


class ProfileService:
    def __init__(
        self,
        store: GraphStore,
        groups: Sequence[ProfileGroup] = PROFILE_GROUPS,
        *,
        decay: Decay | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._groups = tuple(groups)
        self._time = DecayTime(store, decay or Decay(), clock)

    @property
    def decay_time(self) -> DecayTime:
        return self._time

    def groups_for(self, types: frozenset[MemoryType]) -> list[ProfileGroup]:
        """The groups of `types` (all of them for an empty set)."""
        return [g for g in self._groups if not types or g.memory_type in types]

    async def keep(self, user: UserRef, *, include_dormant: bool, as_of: datetime | None) -> Keep:
        """Which memories a profile at `as_of` (the user's present when None) may show."""
        at = None if include_dormant else await self._time.at(user, as_of)
        return self.keep_at(at, as_of=as_of)

    def keep_at(self, at: datetime | None, *, as_of: datetime | None) -> Keep:
        """`keep` with the decay time already known; None keeps dormant memories too."""
        decay = self._time.decay

        def keep(memory: Memory) -> bool:
            if as_of is not None and memory.recorded_at > as_of:
                return False
            return at is None or not decay.dormant(memory, at)

        return keep

    async def profile(
        self,
        user: UserRef,
        *,
        limit: int,
        types: frozenset[MemoryType] = frozenset(),
        include_dormant: bool = False,
        as_of: datetime | None = None,
    ) -> Profile:
        """Up to `limit` memories per group; only the groups of `types` when it is not empty.
        Dormant memories (domain.strength) are left out unless `include_dormant`."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        groups = self.groups_for(types)
        if not groups:
            return Profile([])
        keep = await self.keep(user, include_dormant=include_dormant, as_of=as_of)
        found = await self.read(user, [(g, limit) for g in groups], keep)
        return Profile(list(zip(groups, found, strict=True)))

    async def read(
        self, user: UserRef, wanted: Sequence[tuple[ProfileGroup, int]], keep: Keep
    ) -> list[list[Memory]]:
        """For each (group, n): its first n memories that `keep` accepts, best first in the
        group's order. One snapshot per round; a group thinned out by `keep` is read again
        larger (a few times at most), the others are not read again."""
        out: list[list[Memory] | None] = [None] * len(wanted)
        sizes = [n for _, n in wanted]
        for growth in range(_GROWTHS + 1):
            todo = [i for i, found in enumerate(out) if found is None]
            reads = [wanted[i][0].read(sizes[i]) for i in todo]
            results = await self._store.memories.ranked(user, reads)
            for i, read, memories in zip(todo, reads, results, strict=True):
                group, n = wanted[i]
                shown = group.shown([m for m in memories if keep(m)], n)
                if len(shown) >= n or len(memories) < read.limit or growth == _GROWTHS:
                    out[i] = shown
                else:
                    sizes[i] *= _GROWTH
            if all(found is not None for found in out):
                break
        return [found or [] for found in out]
