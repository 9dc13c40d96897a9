"""Memories: reads, paginated listing, deletion, and the derived-memory writes of extraction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, LiteralString

from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.batch_plan import prepared_derived
from persona_server.adapters.stores.neo4j.cascade import delete_memories, detach_episodes
from persona_server.adapters.stores.neo4j.chain import ChainEdit
from persona_server.adapters.stores.neo4j.changes import ChangeLog
from persona_server.adapters.stores.neo4j.codec import (
    MEMORY_RETURN,
    PROVENANCE_SUBQUERY,
    read_params,
    record_to_memory,
    user_params,
)
from persona_server.adapters.stores.neo4j.derived import write_derived
from persona_server.adapters.stores.neo4j.driver import Connection, rows
from persona_server.adapters.stores.neo4j.filters import FILTER, filter_params
from persona_server.adapters.stores.neo4j.users import lock_user
from persona_server.adapters.stores.paging import decode_cursor, encode_cursor
from persona_server.adapters.stores.ranking import best_first_key
from persona_server.adapters.stores.values import to_us
from persona_server.domain.models import (
    ChangeKind,
    Entity,
    Memory,
    MemoryType,
    UserRef,
)
from persona_server.domain.names import normalise_name
from persona_server.ports.graph_store import (
    CHANGE_LOG_MAX_ENTRIES,
    DerivedWrite,
    MemoryCounts,
    MemoryFilter,
    MemoryOrder,
    Page,
    RankedRead,
)

_GET_MANY = (
    """
UNWIND $ids AS id
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: id})
"""
    + PROVENANCE_SUBQUERY
    + MEMORY_RETURN
)

# Pages walk the (tenant, user_id, recorded_at, id) index in order from the cursor, so a page
# costs about its own size rather than a sort of all the user's memories. The cursor position
# is two seeks (same record time and a greater id; a later record time): a single OR would make
# the planner give up index order and sort everything.
_LIST = (
    """
CALL () {
    MATCH (m:Memory)
    WHERE m.tenant = $tenant AND m.user_id = $user_id
      AND m.recorded_at = $after_at AND m.id > $after_id AND """
    + FILTER
    + """
    RETURN m ORDER BY m.tenant, m.user_id, m.recorded_at, m.id LIMIT $limit
  UNION ALL
    MATCH (m:Memory)
    WHERE m.tenant = $tenant AND m.user_id = $user_id
      AND m.recorded_at > $after_at AND m.id IS NOT NULL AND """
    + FILTER
    + """
    RETURN m ORDER BY m.tenant, m.user_id, m.recorded_at, m.id LIMIT $limit
}
WITH m ORDER BY m.recorded_at, m.id
LIMIT $limit
"""
    + PROVENANCE_SUBQUERY
    + MEMORY_RETURN
)

_KINDS = """
UNWIND $ids AS id
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: id})
RETURN m.id AS id, m.type AS type
"""

_FIND_ENTITIES = (
    """
MATCH (m:Entity)
WHERE m.tenant = $tenant AND m.user_id = $user_id AND any(name IN m.names WHERE name IN $names)
"""
    + PROVENANCE_SUBQUERY
    + MEMORY_RETURN
)

_FIND_BY_MERGE_KEY = (
    """
UNWIND $keys AS key
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, type: $type, merge_key: key})
"""
    + PROVENANCE_SUBQUERY
    + MEMORY_RETURN
)

_FIND_BY_SOURCE = (
    """
UNWIND $keys AS key
MATCH (m:Episode {tenant: $tenant, user_id: $user_id, source_id: key})
"""
    + PROVENANCE_SUBQUERY
    + MEMORY_RETURN
)

# Citations, one row per id in the order given; a later `at` only ever moves the time forward.
_REINFORCE = """
UNWIND range(0, size($ids) - 1) AS i
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: $ids[i]})
SET m.cited_count = coalesce(m.cited_count, 0) + 1,
    m.last_reinforced_at = CASE
        WHEN m.last_reinforced_at IS NULL OR m.last_reinforced_at < $at THEN $at
        ELSE m.last_reinforced_at END
RETURN i, m.id AS id, m.type AS type ORDER BY i
"""

# Valid memories per type (each a range of the (tenant, user_id, type, recorded_at, id) index)
# and active goals (the goal status index).
_COUNTS = """
UNWIND $types AS t
CALL (t) {
    MATCH (m:Memory)
    WHERE m.tenant = $tenant AND m.user_id = $user_id AND m.type = t
      AND m.recorded_at <= $until AND m.invalid_at IS NULL
    RETURN count(m) AS n
}
RETURN t AS type, n
"""
_ACTIVE_GOALS = """
MATCH (g:Goal)
WHERE g.tenant = $tenant AND g.user_id = $user_id AND g.status = 'active'
  AND g.recorded_at <= $until AND g.invalid_at IS NULL
RETURN count(g) AS n
"""
_MAX_US = 2**63 - 1

_MIN_US = -(2**63)

# MemoryOps.ranked. Each ORDER BY names every property of the index that serves it, all
# descending, with an existence check on each: Neo4j then reads that index backwards from the
# user's best entry and stops at the limit instead of sorting the user's memories (schema.py).
# The hints keep the planner from taking a shorter index with the same prefix and sorting.
_VALID = " AND m.invalid_at IS NULL AND ($status IS NULL OR m.status = $status)"
_RANKED_TAIL = "\nLIMIT $limit\n" + PROVENANCE_SUBQUERY + MEMORY_RETURN


def _index_ranked(
    label: LiteralString, equal: LiteralString, ordered: tuple[LiteralString, ...]
) -> LiteralString:
    """Best first along the index `label(tenant, user_id[, equal], *ordered)`, where `equal`
    is matched to the parameter of the same name."""
    keys = ("tenant", "user_id", *((equal,) if equal else ()), *ordered)
    where = " AND ".join(f"m.{k} = ${k}" for k in keys[: len(keys) - len(ordered)])
    exists = " AND ".join(f"m.{k} IS NOT NULL" for k in ordered)
    return (
        f"\nMATCH (m:{label})\nUSING INDEX m:{label}({', '.join(keys)})\n"
        f"WHERE {where} AND {exists}{_VALID}\n"
        f"WITH m ORDER BY {', '.join(f'm.{k} DESC' for k in keys)}{_RANKED_TAIL}"
    )


_RANKED_LATEST_EPISODES = _index_ranked("Episode", "", ("chain_at", "seq"))
_RANKED_LATEST_RECORDED = _index_ranked("Memory", "type", ("recorded_at", "id"))
_RANKED_GOALS_BY_STATUS = _index_ranked("Goal", "status", ("recorded_at", "id"))
_RANKED_MOST_MENTIONED = _index_ranked("Memory", "type", ("mention_count", "recorded_at", "id"))
# Event time outside the episode chain: not indexed (no profile group reads it).
_RANKED_LATEST_EVENT = (
    "\nMATCH (m:Memory)\nWHERE m.tenant = $tenant AND m.user_id = $user_id AND m.type = $type"
    + _VALID
    + "\nWITH m ORDER BY coalesce(m.occurred_at, m.recorded_at) DESC, m.id DESC"
    + _RANKED_TAIL
)


def _ranked_statement(read: RankedRead) -> LiteralString:
    if read.order is MemoryOrder.LATEST_EVENT:
        if read.memory_type is MemoryType.EPISODE:
            return _RANKED_LATEST_EPISODES
        return _RANKED_LATEST_EVENT
    if read.order is MemoryOrder.MOST_MENTIONED:
        return _RANKED_MOST_MENTIONED
    if read.memory_type is MemoryType.GOAL and read.goal_status is not None:
        return _RANKED_GOALS_BY_STATUS
    return _RANKED_LATEST_RECORDED


async def fetch(
    tx: AsyncManagedTransaction, user: UserRef, ids: Sequence[str]
) -> dict[str, Memory]:
    """`get_many` inside a transaction."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    found = await rows(tx, _GET_MANY, {**read_params(user), "ids": wanted})
    return {m.id: m for m in map(record_to_memory, found)}


class Neo4jMemoryOps:
    def __init__(
        self,
        conn: Connection,
        dimension: int = 0,
        change_log_max_entries: int = CHANGE_LOG_MAX_ENTRIES,
    ) -> None:
        self._conn = conn
        self.dimension = dimension
        self.change_log_max_entries = change_log_max_entries

    async def get_many(self, user: UserRef, ids: Sequence[str]) -> dict[str, Memory]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        found = await self._conn.read_one(_GET_MANY, {**read_params(user), "ids": wanted})
        return {m.id: m for m in map(record_to_memory, found)}

    async def list_page(
        self, user: UserRef, *, filter: MemoryFilter, limit: int, cursor: str
    ) -> Page:
        if limit <= 0:
            raise ValueError("limit must be positive")
        after_at, after_id = decode_cursor(cursor) if cursor else (_MIN_US, "")
        params = {
            **read_params(user),
            **filter_params(filter),
            "after_at": after_at,
            "after_id": after_id,
            "limit": limit + 1,
        }

        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await rows(tx, _LIST, params)

        memories = [record_to_memory(r) for r in await self._conn.read(work)]
        # The query returns index order; sorting the page again costs nothing and does not
        # depend on the provenance subquery keeping row order.
        memories.sort(key=lambda m: (m.recorded_at, m.id))
        if len(memories) <= limit:
            return Page(memories=memories, next_cursor="")
        page = memories[:limit]
        last = page[-1]
        return Page(memories=page, next_cursor=encode_cursor(to_us(last.recorded_at), last.id))

    async def delete(self, user: UserRef, memory_id: str) -> list[str]:
        async def work(tx: AsyncManagedTransaction) -> list[str]:
            now = datetime.now(UTC)
            head = await lock_user(tx, user, now, create=False)
            if head is None:
                return []
            base = user_params(user)
            found = await rows(tx, _KINDS, {**base, "ids": [memory_id]})
            if not found:
                return []
            changes = ChangeLog(head.change_seq, now, self.change_log_max_entries)
            chain = ChainEdit(user)
            orphans: list[str] = []
            if found[0]["type"] == MemoryType.EPISODE.value:
                await chain.detach(tx, [memory_id], removing=True)
                # Detach before deleting: DETACH DELETE would drop the DERIVED_FROM links that
                # tell which memories were derived only from this episode.
                orphans = await detach_episodes(tx, user, [memory_id], changes)
            deleted = await delete_memories(tx, user, [memory_id], changes)
            deleted += [d for d in orphans if d not in deleted]
            await chain.relink(tx)
            await changes.flush(tx, user)
            return deleted

        return await self._conn.write(work)

    async def write_derived(self, user: UserRef, *writes: DerivedWrite) -> None:
        prepared = prepared_derived(writes, self.dimension)
        if not prepared:
            return

        async def work(tx: AsyncManagedTransaction) -> None:
            # One transaction for the whole batch of episodes, under the user's write lock.
            now = datetime.now(UTC)
            head = await lock_user(tx, user, now, create=False)
            if head is None:
                return
            changes = ChangeLog(head.change_seq, now, self.change_log_max_entries)
            await write_derived(tx, user, prepared, changes)
            await changes.flush(tx, user)

        await self._conn.write(work)

    async def ranked(self, user: UserRef, reads: Sequence[RankedRead]) -> list[list[Memory]]:
        for read in reads:
            if read.limit <= 0:
                raise ValueError("limit must be positive")
            if read.goal_status is not None and read.memory_type is not MemoryType.GOAL:
                raise ValueError("goal_status applies to goals only")
        base = read_params(user)

        async def work(tx: AsyncManagedTransaction) -> list[list[dict[str, Any]]]:
            # One transaction: every group from the same snapshot.
            out = []
            for read in reads:
                params = {
                    **base,
                    "type": MemoryType(read.memory_type).value,
                    "status": read.goal_status.value if read.goal_status else None,
                    "limit": read.limit,
                }
                out.append(await rows(tx, _ranked_statement(read), params))
            return out

        found = await self._conn.read(work) if reads else []
        groups: list[list[Memory]] = []
        for read, records in zip(reads, found, strict=True):
            memories = [record_to_memory(r) for r in records]
            # Index order, restored in case the provenance subquery did not keep it.
            memories.sort(key=partial(best_first_key, read.order), reverse=True)
            groups.append(memories)
        return groups

    async def reinforce(self, user: UserRef, ids: Sequence[str], at: datetime) -> list[str]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []

        async def work(tx: AsyncManagedTransaction) -> list[str]:
            now = datetime.now(UTC)
            head = await lock_user(tx, user, now, create=False)
            if head is None:
                return []
            found = await rows(
                tx, _REINFORCE, {**user_params(user), "ids": wanted, "at": to_us(at)}
            )
            changes = ChangeLog(head.change_seq, now, self.change_log_max_entries)
            for r in found:
                changes.add(ChangeKind.UPDATED, r["id"], r["type"])
            await changes.flush(tx, user)
            return [r["id"] for r in found]

        return await self._conn.write(work)

    async def counts(self, user: UserRef, *, recorded_by: datetime | None = None) -> MemoryCounts:
        params = {
            **read_params(user),
            "types": [t.value for t in MemoryType],
            "until": _MAX_US if recorded_by is None else to_us(recorded_by),
        }

        async def work(tx: AsyncManagedTransaction) -> tuple[list[dict[str, Any]], int]:
            per_type = await rows(tx, _COUNTS, params)
            active = await rows(tx, _ACTIVE_GOALS, params)
            return per_type, int(active[0]["n"]) if active else 0

        per_type, active = await self._conn.read(work)
        by_type = dict.fromkeys(MemoryType, 0)
        for r in per_type:
            by_type[MemoryType(r["type"])] = int(r["n"])
        return MemoryCounts(by_type, active)

    async def find_entities(self, user: UserRef, names: Sequence[str]) -> list[Entity]:
        # Normalising again is a no-op for callers that already did, and makes lookups agree
        # with the stored keys for callers that normalised differently.
        wanted = sorted({normalise_name(n) for n in names} - {""})
        if not wanted:
            return []

        params = {**read_params(user), "names": wanted}
        found = [record_to_memory(r) for r in await self._conn.read_one(_FIND_ENTITIES, params)]
        found.sort(key=lambda m: (m.recorded_at, m.id))
        return [m for m in found if isinstance(m, Entity)]

    async def find_by_key(
        self, user: UserRef, memory_type: MemoryType, keys: Sequence[str]
    ) -> list[Memory]:
        if memory_type is MemoryType.ENTITY:
            wanted = sorted({normalise_name(k) for k in keys} - {""})
        else:
            wanted = sorted(set(keys) - {""})
        if not wanted:
            return []
        params = {**read_params(user), "keys": wanted, "type": memory_type.value}
        query = _FIND_BY_SOURCE if memory_type is MemoryType.EPISODE else _FIND_BY_MERGE_KEY

        out = [record_to_memory(r) for r in await self._conn.read_one(query, params)]
        out.sort(key=lambda m: (m.recorded_at, m.id))
        return out
