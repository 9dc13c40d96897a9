"""The instant a user's memories are aged to: the user's own present, not the wall clock.

Decay (domain.strength) runs on event time, and so does its clock. A read without `as_of` ages
a user's memories to the user's latest event (the newest event time among their episodes, never
past the wall clock). So a memory fades while the user goes on living and speaking of other
things, not while they are away: someone back after a year finds their assistant remembering
them, and a back-fill of old history (an import, a replayed archive) arrives alive instead of
dormant on arrival. A read with `as_of` is aged to that instant, as asked.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from persona_server.domain.models import Memory, MemoryType, UserRef
from persona_server.domain.strength import Decay
from persona_server.ports.graph_store import GraphStore, MemoryOrder, RankedRead
from persona_server.services.ingest import utcnow

_LATEST_EPISODE = RankedRead(MemoryType.EPISODE, MemoryOrder.LATEST_EVENT, 1)


async def user_present(store: GraphStore, user: UserRef, now: datetime) -> datetime:
    """The user's latest event time, capped at `now` (an episode may be dated ahead, a plan);
    `now` for a user with no episodes."""
    # One index entry on either store (RankedRead: episodes by LATEST_EVENT).
    (latest,) = await store.memories.ranked(user, [_LATEST_EPISODE])
    if not latest:
        return now
    episode = latest[0]
    return min(now, episode.occurred_at or episode.recorded_at)


class DecayTime:
    """The decay rules with the clock they run on, per user."""

    def __init__(
        self, store: GraphStore, decay: Decay, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._store = store
        self._decay = decay
        self._clock = clock

    @property
    def decay(self) -> Decay:
        return self._decay

    async def at(self, user: UserRef, as_of: datetime | None) -> datetime:
        """`as_of` when given, else the user's present."""
        if as_of is not None:
            return as_of
        return await user_present(self._store, user, self._clock())

    async def strength_of(self, user: UserRef, as_of: datetime | None) -> Callable[[Memory], float]:
        at = await self.at(user, as_of)
        return lambda memory: self._decay.strength(memory, at)
