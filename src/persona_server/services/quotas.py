"""Storage quotas per tenant: memories per user and bytes of text per tenant.

Ingest asks `admit` before it writes anything, so a batch over a quota is refused whole
(RESOURCE_EXHAUSTED, reason QUOTA_EXCEEDED, with the quota named) and nothing is stored. Usage is
read from the store (an aggregate query) at most every `refresh_s` per user and per tenant, and
what this process adds in between is counted locally; so another replica's writes, deletions
and extraction's derived memories are seen within `refresh_s`. A quota is therefore a bound
that can be passed by what several replicas admit within one refresh, and by the memories
extraction derives after an admitted batch; it is never passed by one process's own ingests.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from persona_server.domain.errors import QuotaViolation, ResourceExhaustedError
from persona_server.domain.models import UserRef
from persona_server.domain.tenancy import TenantLimits
from persona_server.ports.graph_store import GraphStore, Usage

DEFAULT_REFRESH_S = 5.0
_CACHED_USERS = 10_000


@dataclass
class _Seen:
    usage: Usage
    at: float


class Quotas:
    def __init__(
        self,
        store: GraphStore,
        limits_for: Callable[[str], TenantLimits],
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._limits_for = limits_for
        self._refresh_s = refresh_s
        self._clock = clock
        self._users: OrderedDict[UserRef, _Seen] = OrderedDict()
        self._tenants: dict[str, _Seen] = {}

    async def admit(self, user: UserRef, memories: int, text_bytes: int) -> None:
        """Raise ResourceExhaustedError if adding this much would pass one of the quotas."""
        limits = self._limits_for(user.tenant)
        problems: list[QuotaViolation] = []
        if limits.quota_memories_per_user:
            held = (await self._user(user)).memories
            if held + memories > limits.quota_memories_per_user:
                problems.append(
                    QuotaViolation(
                        f"user:{user.tenant}/{user.user_id}",
                        f"the user holds {held} memories; {memories} more would pass the "
                        f"quota of {limits.quota_memories_per_user}",
                    )
                )
        if limits.quota_bytes_per_tenant:
            held = (await self._tenant(user.tenant)).text_bytes
            if held + text_bytes > limits.quota_bytes_per_tenant:
                problems.append(
                    QuotaViolation(
                        f"tenant:{user.tenant}",
                        f"the tenant holds {held} bytes of text; {text_bytes} more would pass "
                        f"the quota of {limits.quota_bytes_per_tenant}",
                    )
                )
        if problems:
            raise ResourceExhaustedError(
                "quota exceeded: " + "; ".join(p.description for p in problems),
                reason="QUOTA_EXCEEDED",
                # Freed space (a deletion) is seen within one refresh.
                retry_after_s=self._refresh_s,
                quota=problems,
            )

    def added(self, user: UserRef, memories: int, text_bytes: int) -> None:
        """Count what this process just stored until the next refresh reads it back."""
        grown = Usage(memories, text_bytes)
        seen = self._users.get(user)
        if seen is not None:
            seen.usage = _plus(seen.usage, grown)
        tenant = self._tenants.get(user.tenant)
        if tenant is not None:
            tenant.usage = _plus(tenant.usage, grown)

    async def _user(self, user: UserRef) -> Usage:
        now = self._clock()
        seen = self._users.get(user)
        if seen is None or now - seen.at >= self._refresh_s:
            seen = _Seen(await self._store.users.usage(user), now)
            self._users[user] = seen
            if len(self._users) > _CACHED_USERS:
                self._users.popitem(last=False)
        self._users.move_to_end(user)
        return seen.usage

    async def _tenant(self, tenant: str) -> Usage:
        now = self._clock()
        seen = self._tenants.get(tenant)
        if seen is None or now - seen.at >= self._refresh_s:
            seen = self._tenants[tenant] = _Seen(await self._store.users.tenant_usage(tenant), now)
        return seen.usage


def _plus(a: Usage, b: Usage) -> Usage:
    return Usage(a.memories + b.memories, a.text_bytes + b.text_bytes)
