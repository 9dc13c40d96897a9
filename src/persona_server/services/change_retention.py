"""Pruning of the change log by age, in the background.

The count bound is kept by the stores as they write (each user's newest
`PERSONA_CHANGE_LOG_MAX_ENTRIES` entries); this job removes, for every user, entries older
than `PERSONA_CHANGE_LOG_MAX_AGE_S`. Every replica may run it: deleting what is already gone
is a no-op. A resume token that pointed into what was pruned is answered with OUT_OF_RANGE.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from persona_server.ports.graph_store import GraphStore
from persona_server.services.ingest import utcnow
from persona_server.services.periodic import Periodic

log = logging.getLogger(__name__)

BATCH = 5_000
# Checked this often, or four times per max age when that is shorter.
INTERVAL_S = 60.0


class ChangeLogPruner:
    def __init__(
        self,
        store: GraphStore,
        max_age_s: float,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._max_age = timedelta(seconds=max_age_s)
        self._clock = clock
        interval_s = min(INTERVAL_S, max(max_age_s / 4, 0.05))
        self._job = Periodic(
            "persona-change-log-pruner", interval_s, self._round, "change log pruning"
        )

    async def prune_once(self) -> int:
        """Remove every entry older than the max age; returns how many went."""
        before = self._clock() - self._max_age
        total = 0
        while True:
            # Batches keep each write transaction short: other writers wait on it.
            pruned = await self._store.changes.prune(before, BATCH)
            total += pruned
            if pruned < BATCH:
                return total

    def start(self) -> None:
        self._job.start()

    async def stop(self) -> None:
        await self._job.stop()

    async def _round(self) -> None:
        pruned = await self.prune_once()
        if pruned:
            log.info("change log pruned", extra={"entries": pruned})
