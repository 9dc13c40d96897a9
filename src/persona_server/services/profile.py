"""The user's current picture, assembled without a query: active goals, the strongest psyche
items, key entities and the most recent episodes.

Each group is one bounded, index-backed store read (`MemoryOps.ranked`), all from one snapshot,
so the cost does not grow with the user's size. What a group holds and in which order is
declared once, in `PROFILE_GROUPS`: the context feed (StreamContext without a query) reads it
here, and so will anything else that shows "who this user is".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from persona_server.domain.models import Entity, GoalStatus, Memory, MemoryType, UserRef
from persona_server.domain.names import normalise_name
from persona_server.ports.extractor import USER_SUBJECT
from persona_server.ports.graph_store import GraphStore, MemoryOrder, RankedRead
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


class ProfileService:
    def __init__(self, store: GraphStore, groups: Sequence[ProfileGroup] = PROFILE_GROUPS) -> None:
        self._store = store
        self._groups = tuple(groups)

    def groups_for(self, types: frozenset[MemoryType]) -> list[ProfileGroup]:
        """The groups of `types` (all of them for an empty set)."""
        return [g for g in self._groups if not types or g.memory_type in types]

    async def profile(
        self, user: UserRef, *, limit: int, types: frozenset[MemoryType] = frozenset()
    ) -> Profile:
        """Up to `limit` memories per group; only the groups of `types` when it is not empty."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        groups = self.groups_for(types)
        if not groups:
            return Profile([])
        found = await self._store.memories.ranked(user, [g.read(limit) for g in groups])
        return Profile([(g, g.shown(f, limit)) for g, f in zip(groups, found, strict=True)])
