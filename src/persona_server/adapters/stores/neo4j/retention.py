"""Retention: a tenant's episodes past their event-time cutoff, deleted in bounded batches.

One batch is one write transaction over at most `limit` episodes. Each user it touches is
locked (users.lock_user, in sorted order so two batches never wait on each other in a cycle)
before its episodes are read again under the lock: an episode replaced with a later time in
between is left alone. The cascade is the one `MemoryOps.delete` uses (cascade.py), and the
NEXT chain is relinked around the gaps (chain.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.neo4j.cascade import cut_episodes, delete_memories
from persona_server.adapters.stores.neo4j.chain import ChainEdit
from persona_server.adapters.stores.neo4j.changes import ChangeLog
from persona_server.adapters.stores.neo4j.codec import user_params
from persona_server.adapters.stores.neo4j.driver import Connection, rows
from persona_server.adapters.stores.neo4j.users import lock_user
from persona_server.adapters.stores.values import to_us
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import ExpiredEpisodes

# Per user, a seek on the (tenant, user_id, chain_at, seq) chain index from its start.
_CANDIDATES = """
MATCH (u:PersonaUser) WHERE u.tenant = $tenant
CALL (u) {
    MATCH (e:Episode)
    WHERE e.tenant = $tenant AND e.user_id = u.user_id AND e.chain_at < $before
      AND e.seq IS NOT NULL
    RETURN e ORDER BY e.tenant, e.user_id, e.chain_at, e.seq LIMIT $limit
}
RETURN u.user_id AS user_id, e.id AS id
LIMIT $limit
"""

_STILL_EXPIRED = """
UNWIND $ids AS id
MATCH (e:Memory {tenant: $tenant, user_id: $user_id, id: id})
WHERE e:Episode AND e.chain_at < $before
RETURN e.id AS id
"""


async def expire(
    conn: Connection, tenant: str, before: datetime, limit: int, change_log_max_entries: int
) -> list[ExpiredEpisodes]:
    if limit <= 0:
        raise ValueError("limit must be positive")
    cutoff = to_us(before)

    async def work(tx: AsyncManagedTransaction) -> list[ExpiredEpisodes]:
        now = datetime.now(UTC)
        params = {"tenant": tenant, "before": cutoff, "limit": limit}
        per_user: dict[str, list[str]] = defaultdict(list)
        for r in await rows(tx, _CANDIDATES, params):
            per_user[r["user_id"]].append(r["id"])
        out: list[ExpiredEpisodes] = []
        for user_id in sorted(per_user):
            user = UserRef(tenant=tenant, user_id=user_id)
            head = await lock_user(tx, user, now, create=False)
            if head is None:
                continue
            base = {**user_params(user), "before": cutoff}
            ids = [
                r["id"] for r in await rows(tx, _STILL_EXPIRED, {**base, "ids": per_user[user_id]})
            ]
            if not ids:
                continue
            changes = ChangeLog(head.change_seq, now, change_log_max_entries)
            chain = ChainEdit(user)
            await chain.detach(tx, ids, removing=True)
            # Detach before deleting: DETACH DELETE would drop the DERIVED_FROM links that
            # tell which memories were derived only from these episodes.
            detached = await cut_episodes(tx, user, ids, changes)
            gone = await delete_memories(tx, user, ids, changes)
            await chain.relink(tx)
            await changes.flush(tx, user)
            out.append(ExpiredEpisodes(user, len(gone), len(detached.deleted), len(detached.kept)))
        return out

    return await conn.write(work)
