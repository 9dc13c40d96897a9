"""Memories: reads, paginated listing, deletion, and the derived-memory writes of extraction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from persona_server.adapters.stores.batch_plan import prepared_derived
from persona_server.adapters.stores.paging import decode_cursor, encode_cursor
from persona_server.adapters.stores.sqlite.cascade import delete_rows, detach_episode
from persona_server.adapters.stores.sqlite.changes import ChangeLog
from persona_server.adapters.stores.sqlite.codec import (
    chunks,
    load_memories,
)
from persona_server.adapters.stores.sqlite.connection import read_transaction, write_transaction
from persona_server.adapters.stores.sqlite.context import StoreContext
from persona_server.adapters.stores.sqlite.derived import DerivedBatch
from persona_server.adapters.stores.sqlite.filters import filter_sql
from persona_server.adapters.stores.sqlite.users import cache_key, find_user_key
from persona_server.adapters.stores.values import to_us
from persona_server.adapters.stores.vector_matrix import Change
from persona_server.domain.models import (
    ChangeKind,
    Entity,
    Memory,
    MemoryType,
    UserRef,
)
from persona_server.domain.names import normalise_name
from persona_server.ports.graph_store import (
    DerivedWrite,
    MemoryCounts,
    MemoryFilter,
    MemoryOrder,
    Page,
    RankedRead,
)

# ORDER BY of each MemoryOrder, matching the column order of the index that serves it (schema.py):
# SQLite then walks that index backwards and stops at the limit instead of sorting.
_ORDER_SQL = {
    MemoryOrder.LATEST_EVENT: "m.chain_at DESC, m.seq DESC",
    MemoryOrder.LATEST_RECORDED: "m.recorded_at DESC, m.id DESC",
    MemoryOrder.MOST_MENTIONED: "m.mention_count DESC, m.recorded_at DESC, m.id DESC",
}
# Outside the episode chain, event time falls back to record time as in the chain (chain_at).
_LATEST_EVENT_ANY = "coalesce(m.occurred_at, m.recorded_at) DESC, m.id DESC"


def ranked_sql(read: RankedRead) -> tuple[str, list[Any]]:
    """The WHERE ... ORDER BY ... LIMIT ? clause of one `RankedRead` (after `user_key = ?`).

    The type is written in as a literal (it is an enum value, never user input), because SQLite
    only picks a partial index (`WHERE type = 'episode'`) when the query states the same literal.
    """
    if read.limit <= 0:
        raise ValueError("limit must be positive")
    memory_type = MemoryType(read.memory_type).value
    sql = f"WHERE m.user_key = ? AND m.type = '{memory_type}' AND m.invalid_at IS NULL"
    args: list[Any] = []
    if read.goal_status is not None:
        if read.memory_type is not MemoryType.GOAL:
            raise ValueError("goal_status applies to goals only")
        sql += " AND json_extract(m.payload, '$.status') = ?"
        args.append(read.goal_status.value)
    order = _ORDER_SQL[read.order]
    if read.order is MemoryOrder.LATEST_EVENT and read.memory_type is not MemoryType.EPISODE:
        order = _LATEST_EVENT_ANY
    return f"{sql} ORDER BY {order} LIMIT ?", args


class SqliteMemoryOps:
    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    async def get_many(self, user: UserRef, ids: Sequence[str]) -> dict[str, Memory]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}

        def run(conn: sqlite3.Connection) -> dict[str, Memory]:
            out: dict[str, Memory] = {}
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return out
                for chunk in chunks(wanted):
                    marks = ",".join("?" * len(chunk))
                    for memory in load_memories(
                        conn, f"WHERE m.user_key = ? AND m.id IN ({marks})", [key, *chunk]
                    ):
                        out[memory.id] = memory
            return out

        return await self._ctx.db.read(run)

    async def list_page(
        self, user: UserRef, *, filter: MemoryFilter, limit: int, cursor: str
    ) -> Page:
        if limit <= 0:
            raise ValueError("limit must be positive")
        after = decode_cursor(cursor) if cursor else None
        where, params = filter_sql(filter)

        def run(conn: sqlite3.Connection) -> Page:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return Page(memories=[], next_cursor="")
                sql = "WHERE m.user_key = ?" + where
                args: list[Any] = [key, *params]
                if after is not None:
                    sql += " AND (m.recorded_at, m.id) > (?, ?)"
                    args.extend(after)
                sql += " ORDER BY m.recorded_at, m.id LIMIT ?"
                args.append(limit + 1)
                memories = load_memories(conn, sql, args)
            if len(memories) <= limit:
                return Page(memories=memories, next_cursor="")
            page = memories[:limit]
            last = page[-1]
            return Page(memories=page, next_cursor=encode_cursor(to_us(last.recorded_at), last.id))

        return await self._ctx.db.read(run)

    async def delete(self, user: UserRef, memory_id: str) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            with write_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return []
                row = conn.execute(
                    "SELECT rowid, type FROM memories WHERE user_key = ? AND id = ?",
                    (key, memory_id),
                ).fetchone()
                if row is None:
                    return []
                rowid, memory_type = row
                changes = ChangeLog(conn, key, datetime.now(UTC), self._ctx.change_log_max_entries)
                # Detach before deleting: the FK cascade would drop the provenance rows that
                # tell which memories were derived only from this episode.
                orphans = (
                    detach_episode(conn, key, rowid, changes)
                    if memory_type == MemoryType.EPISODE.value
                    else []
                )
                deleted = delete_rows(conn, key, [rowid], changes)
                deleted += [d for d in orphans if d not in deleted]
                changes.flush()
            self._ctx.cache.apply(cache_key(user), Change(removals=deleted))
            return deleted

        return await self._ctx.db.write(run)

    async def write_derived(self, user: UserRef, *writes: DerivedWrite) -> None:
        prepared = prepared_derived(writes, self._ctx.dimension)

        def run(conn: sqlite3.Connection) -> None:
            # One transaction for the whole batch: one fsync instead of one per episode.
            with write_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return
                changes = ChangeLog(conn, key, datetime.now(UTC), self._ctx.change_log_max_entries)
                batch = DerivedBatch(conn, key, changes)
                batch.prefetch_episodes((write, memories) for write, memories, _ in prepared)
                for write, memories, vecs in prepared:
                    batch.write(write, memories, vecs)
                changes.flush()
            if batch.upserts:
                self._ctx.cache.apply(cache_key(user), Change(upserts=batch.upserts))

        await self._ctx.db.write(run)

    async def ranked(self, user: UserRef, reads: Sequence[RankedRead]) -> list[list[Memory]]:
        statements = [ranked_sql(r) for r in reads]

        def run(conn: sqlite3.Connection) -> list[list[Memory]]:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return [[] for _ in reads]
                return [
                    load_memories(conn, sql, [key, *args, read.limit])
                    for read, (sql, args) in zip(reads, statements, strict=True)
                ]

        return await self._ctx.db.read(run)

    async def reinforce(self, user: UserRef, ids: Sequence[str], at: datetime) -> list[str]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        at_us = to_us(at)

        def run(conn: sqlite3.Connection) -> list[str]:
            done: list[str] = []
            with write_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return done
                changes = ChangeLog(conn, key, datetime.now(UTC), self._ctx.change_log_max_entries)
                for memory_id in wanted:
                    row = conn.execute(
                        "UPDATE memories SET cited_count = cited_count + 1, "
                        "last_reinforced_at = max(coalesce(last_reinforced_at, ?), ?) "
                        "WHERE user_key = ? AND id = ? RETURNING type",
                        (at_us, at_us, key, memory_id),
                    ).fetchone()
                    if row is not None:
                        changes.add(ChangeKind.UPDATED, memory_id, row[0])
                        done.append(memory_id)
                changes.flush()
            return done

        return await self._ctx.db.write(run)

    async def counts(self, user: UserRef, *, recorded_by: datetime | None = None) -> MemoryCounts:
        until = to_us(recorded_by) if recorded_by is not None else None

        def run(conn: sqlite3.Connection) -> MemoryCounts:
            by_type = dict.fromkeys(MemoryType, 0)
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return MemoryCounts(by_type)
                bound = "" if until is None else " AND recorded_at <= ?"
                args: list[Any] = [key] if until is None else [key, until]
                for memory_type in MemoryType:
                    # One literal type per query, so SQLite counts a range of the
                    # (user_key, type, recorded_at) index.
                    (n,) = conn.execute(
                        f"SELECT count(*) FROM memories WHERE user_key = ? "
                        f"AND type = '{memory_type.value}' AND invalid_at IS NULL{bound}",
                        args,
                    ).fetchone()
                    by_type[memory_type] = n
                (active,) = conn.execute(
                    "SELECT count(*) FROM memories WHERE user_key = ? AND type = 'goal' "
                    "AND invalid_at IS NULL AND json_extract(payload, '$.status') = 'active'"
                    + bound,
                    args,
                ).fetchone()
            return MemoryCounts(by_type, active)

        return await self._ctx.db.read(run)

    async def find_entities(self, user: UserRef, names: Sequence[str]) -> list[Entity]:
        # Normalising again is a no-op for callers that already did, and makes lookups agree
        # with the stored keys for callers that normalised differently.
        wanted = sorted({normalise_name(n) for n in names} - {""})
        if not wanted:
            return []

        def run(conn: sqlite3.Connection) -> list[Entity]:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return []
                marks = ",".join("?" * len(wanted))
                found = load_memories(
                    conn,
                    "WHERE m.rowid IN (SELECT entity_rowid FROM entity_names "
                    f"WHERE user_key = ? AND name IN ({marks})) ORDER BY m.recorded_at, m.id",
                    [key, *wanted],
                )
            return [m for m in found if isinstance(m, Entity)]

        return await self._ctx.db.read(run)

    async def find_by_key(
        self, user: UserRef, memory_type: MemoryType, keys: Sequence[str]
    ) -> list[Memory]:
        if memory_type is MemoryType.ENTITY:
            wanted = sorted({normalise_name(k) for k in keys} - {""})
        else:
            wanted = sorted(set(keys) - {""})
        if not wanted:
            return []
        column = "source_id" if memory_type is MemoryType.EPISODE else "merge_key"

        def run(conn: sqlite3.Connection) -> list[Memory]:
            out: list[Memory] = []
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return out
                for chunk in chunks(wanted):
                    marks = ",".join("?" * len(chunk))
                    out.extend(
                        load_memories(
                            conn,
                            f"WHERE m.user_key = ? AND m.type = ? AND m.{column} IN ({marks})",
                            [key, memory_type.value, *chunk],
                        )
                    )
            out.sort(key=lambda m: (m.recorded_at, m.id))
            return out

        return await self._ctx.db.read(run)
