"""How alive a memory is: its strength in [0, 1] at a given time, and whether it is dormant.

Strength is computed, never stored: a memory keeps how often it was reinforced (mentioned again
at ingest, cited by an AskStructured answer) and when last (an event time), and every read
computes the strength at its own `as_of`. So a read never writes, and two reads at the same
`as_of` agree.

    strength = n / (n + 1) * 0.5 ** (age / (half_life * n))

with n the reinforcements (`mention_count + cited_count`, at least 1) and age the event time
from the last reinforcement to `as_of`. The first factor rewards repetition (one mention 0.5,
three 0.75, nine 0.9); the second decays, and each reinforcement stretches the half-life, as in
spaced repetition: what was said often is forgotten slowly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from persona_server.domain.models import Goal, GoalStatus, Memory, MemoryType

_DAY_S = 86_400.0

# Defaults in days. Episodes (what happened) fade slower than psyche (how the user feels and what
# they like changes); a goal the user reached or gave up fades fast.
DEFAULT_HALF_LIVES: Mapping[MemoryType, float] = {
    MemoryType.EPISODE: 365.0,
    MemoryType.PSYCHE: 120.0,
    MemoryType.GOAL: 90.0,
    MemoryType.ENTITY: 180.0,
    MemoryType.FACT: 180.0,
}
DEFAULT_DONE_GOAL_HALF_LIFE = 7.0
DEFAULT_FORGET_THRESHOLD = 0.05


def reinforcements(memory: Memory) -> int:
    return max(1, memory.mention_count + memory.cited_count)


def reinforced_at(memory: Memory, as_of: datetime) -> datetime | None:
    """The last reinforcement known at `as_of`. Only the last one is stored: when it is later
    than `as_of` (a read of the past), the memory's own event time stands in."""
    last = memory.last_reinforced_at
    if last is not None and last <= as_of:
        return last
    first = memory.occurred_at or memory.recorded_at
    return first if first <= as_of else as_of


@dataclass(frozen=True)
class Decay:
    """The decay rules: a half-life per memory type (days) and the forgetting threshold."""

    half_lives: Mapping[MemoryType, float] = field(default_factory=lambda: DEFAULT_HALF_LIVES)
    done_goal_half_life: float = DEFAULT_DONE_GOAL_HALF_LIFE
    forget_threshold: float = DEFAULT_FORGET_THRESHOLD

    def __post_init__(self) -> None:
        for memory_type in MemoryType:
            if self.half_lives.get(memory_type, 0) <= 0:
                raise ValueError(f"the half-life of {memory_type.value} must be positive")
        if self.done_goal_half_life <= 0:
            raise ValueError("the half-life of done goals must be positive")
        if not 0 <= self.forget_threshold <= 1:
            raise ValueError("the forget threshold must be in [0, 1]")

    def half_life_days(self, memory: Memory) -> float:
        if isinstance(memory, Goal) and memory.status is not GoalStatus.ACTIVE:
            return self.done_goal_half_life
        return self.half_lives[memory.type]

    def strength(self, memory: Memory, as_of: datetime) -> float:
        n = reinforcements(memory)
        since = reinforced_at(memory, as_of)
        age_days = max(0.0, (as_of - since).total_seconds() / _DAY_S) if since else 0.0
        value: float = n / (n + 1) * 0.5 ** (age_days / (self.half_life_days(memory) * n))
        return min(1.0, max(0.0, value))

    def dormant(self, memory: Memory, as_of: datetime) -> bool:
        """Derived memories below the threshold sleep; episodes (the record) never do."""
        if memory.type is MemoryType.EPISODE:
            return False
        return self.strength(memory, as_of) < self.forget_threshold
