"""The per-user change log the live context feed resumes from.

Entries are `(:PersonaChange {tenant, user_id, seq, ...})` nodes written by `ChangeLog` inside
the transaction that makes the change, with the user's `change_seq` counter advanced in the same
commit. Writers of one user are serialised on the user node (users.py), so seqs are gap-free
and commit in order: a reader that has seen seq n has seen every change up to n. The same write
drops the user's entries beyond the newest `keep` (a range of the constraint index); entries past
their age go by `Neo4jChangeOps.prune` (the `persona_change_at` index).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.neo4j.codec import user_params
from persona_server.adapters.stores.neo4j.driver import Connection, rows, run
from persona_server.adapters.stores.neo4j.users import fetch_head
from persona_server.adapters.stores.values import from_us, to_us
from persona_server.domain.models import ChangeKind, MemoryChange, MemoryType, UserRef
from persona_server.ports.graph_store import CHANGE_LOG_MAX_ENTRIES

_WRITE = """
UNWIND $entries AS c
CREATE (:PersonaChange {tenant: $tenant, user_id: $user_id, seq: c.seq, kind: c.kind,
                        memory_id: c.memory_id, memory_type: c.memory_type, at: c.at})
WITH count(*) AS written
MATCH (u:PersonaUser {tenant: $tenant, user_id: $user_id})
SET u.change_seq = $last
WITH u
CALL (u) {
    MATCH (old:PersonaChange)
    WHERE old.tenant = $tenant AND old.user_id = $user_id AND old.seq <= $drop_through
    DELETE old
}
"""

_PRUNE = """
MATCH (c:PersonaChange)
WHERE c.at < $before
WITH c ORDER BY c.at LIMIT $limit
DELETE c
RETURN count(*) AS pruned
"""

# Ordering on every property of the (tenant, user_id, seq) constraint index lets Neo4j read the
# index in order and stop after `limit` entries instead of sorting the user's whole log.
_SINCE = """
MATCH (c:PersonaChange)
WHERE c.tenant = $tenant AND c.user_id = $user_id AND c.seq > $seq
RETURN c.seq AS seq, c.kind AS kind, c.memory_id AS memory_id,
       c.memory_type AS memory_type, c.at AS at
ORDER BY c.tenant, c.user_id, c.seq
LIMIT $limit
"""


class ChangeLog:
    """Collects one transaction's changes for one user, numbered from the user's counter."""

    def __init__(self, change_seq: int, at: datetime, keep: int = CHANGE_LOG_MAX_ENTRIES) -> None:
        self._seq = change_seq
        self._at = to_us(at)
        self._keep = keep
        self._entries: list[dict[str, Any]] = []

    def add(self, kind: ChangeKind, memory_id: str, memory_type: MemoryType | str) -> None:
        self._seq += 1
        self._entries.append(
            {
                "seq": self._seq,
                "kind": kind.value,
                "memory_id": memory_id,
                "memory_type": str(memory_type),
                "at": self._at,
            }
        )

    async def flush(self, tx: AsyncManagedTransaction, user: UserRef) -> None:
        if not self._entries:
            return
        params = {
            **user_params(user),
            "entries": self._entries,
            "last": self._seq,
            "drop_through": self._seq - self._keep,
        }
        await run(tx, _WRITE, params)
        self._entries = []


def to_change(r: dict[str, Any]) -> MemoryChange:
    return MemoryChange(
        seq=r["seq"],
        kind=ChangeKind(r["kind"]),
        memory_id=r["memory_id"],
        memory_type=MemoryType(r["memory_type"]),
        at=from_us(r["at"]),
    )


async def changes_since(
    tx: AsyncManagedTransaction, user: UserRef, seq: int, limit: int
) -> list[dict[str, Any]]:
    return await rows(tx, _SINCE, {**user_params(user), "seq": seq, "limit": limit})


class Neo4jChangeOps:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def latest_seq(self, user: UserRef) -> int:
        head = await fetch_head(self._conn, user)
        return 0 if head is None else head.change_seq

    async def since(self, user: UserRef, seq: int, limit: int) -> list[MemoryChange]:
        if limit <= 0:
            return []
        found = await self._conn.read(changes_since, user, seq, limit)
        return [to_change(r) for r in found]

    async def prune(self, before: datetime, limit: int) -> int:
        if limit <= 0:
            return 0

        async def work(tx: AsyncManagedTransaction) -> int:
            found = await rows(tx, _PRUNE, {"before": to_us(before), "limit": limit})
            return int(found[0]["pruned"])

        return await self._conn.write(work)
