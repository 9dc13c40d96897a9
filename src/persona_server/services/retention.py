"""The compliance retention policy, in the background: episodes older than a tenant's
`retention_days` (`PERSONA_RETENTION_DAYS`, or the tenant's line in the key file) are deleted,
with every memory derived only from them, as completely as DeleteUser deletes a user.

"Older" is event time (`occurred_at`; record time for an episode without one): the policy is
about how old the personal data is, not about when Persona happened to receive it, so a
back-filled archive never outlives the policy (see the README, "Retention").

Every replica may run the job: a batch re-reads what it deletes under the user's write lock,
so two replicas racing on one tenant only repeat a lookup. Each batch is one short store
transaction; each is written to the audit log (counts, never text).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from opentelemetry import metrics

from persona_server.ports.graph_store import GraphStore
from persona_server.services.ingest import utcnow
from persona_server.services.knowledge import forget_missing
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.periodic import Periodic

log = logging.getLogger(__name__)
audit = logging.getLogger("persona.audit")

# Episodes per store transaction: short enough that other writers hardly wait on it.
BATCH = 500

_deleted = metrics.get_meter("persona.retention").create_counter(
    "persona.retention.deleted",
    unit="{memory}",
    description="memories deleted by the retention policy, by tenant and what they were",
)


@dataclass(frozen=True)
class RetentionReport:
    """What one pass deleted, over every tenant with a policy."""

    tenants: int = 0  # tenants with a policy
    users: int = 0  # users that lost something (counted once per batch)
    episodes: int = 0
    derived: int = 0  # derived memories supported only by the deleted episodes
    kept: int = 0  # derived memories that stayed (also supported by a kept episode)


class RetentionJob:
    """`retention_days(tenant)` is the tenant's policy in days (0: keep forever), read at every
    pass, so a key-file change applies at the next one."""

    def __init__(
        self,
        store: GraphStore,
        retention_days: Callable[[str], int],
        notifier: ChangeNotifier,
        *,
        interval_s: float = 3600.0,
        batch: int = BATCH,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if batch <= 0:
            raise ValueError("batch must be positive")
        self._store = store
        self._days = retention_days
        self._notifier = notifier
        self._batch = batch
        self._clock = clock
        self._job = Periodic("persona-retention", interval_s, self._round, "retention pass")

    async def run_once(self) -> RetentionReport:
        tenants = users = episodes = derived = kept = 0
        now = self._clock()
        for tenant in await self._store.users.tenants():
            days = self._days(tenant)
            if days <= 0:
                continue
            tenants += 1
            before = now - timedelta(days=days)
            while True:
                batch = await self._store.episodes.expire(tenant, before, self._batch)
                for done in batch:
                    if done.episodes:
                        # Knowledge documents keep nothing of the expired episodes either.
                        await forget_missing(self._store, done.user)
                    self._notifier.notify(done.user)
                    users += 1
                    episodes += done.episodes
                    derived += done.derived
                    kept += done.kept
                    audit.info(
                        "episodes expired",
                        extra={
                            "audit": "episodes_expired",
                            "tenant": tenant,
                            "user_id": done.user.user_id,
                            "retention_days": days,
                            "before": before.isoformat(),
                            "episodes": done.episodes,
                            "derived": done.derived,
                            "kept": done.kept,
                        },
                    )
                    _deleted.add(done.episodes, {"tenant": tenant, "kind": "episode"})
                    _deleted.add(done.derived, {"tenant": tenant, "kind": "derived"})
                if sum(done.episodes for done in batch) < self._batch:
                    break
        return RetentionReport(tenants, users, episodes, derived, kept)

    def start(self) -> None:
        self._job.start()

    async def stop(self) -> None:
        """Cancel the job; a batch in flight commits whole or not at all."""
        await self._job.stop()

    async def _round(self) -> None:
        report = await self.run_once()
        if report.episodes:
            log.info(
                "retention pass deleted expired episodes",
                extra={
                    "tenants": report.tenants,
                    "users": report.users,
                    "episodes": report.episodes,
                    "derived": report.derived,
                    "kept": report.kept,
                },
            )
