"""Episodes: idempotent batch ingest, the temporal chain, extraction bookkeeping."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from persona_server.adapters.stores.batch_plan import StoredSource, checked_episodes, plan_batch
from persona_server.adapters.stores.sqlite import retention
from persona_server.adapters.stores.sqlite.cascade import detach_episode
from persona_server.adapters.stores.sqlite.changes import ChangeLog
from persona_server.adapters.stores.sqlite.codec import (
    INSERT_MEMORY,
    MEMORY_COLUMNS,
    UPDATE_MEMORY,
    chunks,
    memory_params,
    row_to_memory,
    vector_blob,
)
from persona_server.adapters.stores.sqlite.connection import read_transaction, write_transaction
from persona_server.adapters.stores.sqlite.context import StoreContext
from persona_server.adapters.stores.sqlite.users import cache_key, ensure_user_key, find_user_key
from persona_server.adapters.stores.values import extraction_due, from_us, to_us
from persona_server.adapters.stores.vector_matrix import Change, VectorRow
from persona_server.domain.models import (
    ChangeKind,
    Episode,
    ExtractionStatus,
    MemoryType,
    UserRef,
)
from persona_server.ports.graph_store import (
    EpisodeText,
    EpisodeWriteResult,
    ExpiredEpisodes,
    Vectors,
)

UPSERT_VECTOR = (
    "INSERT INTO vectors (memory_rowid, vector) VALUES (?, ?) "
    "ON CONFLICT (memory_rowid) DO UPDATE SET vector = excluded.vector"
)


class SqliteEpisodeOps:
    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    async def put_batch(
        self, user: UserRef, episodes: Sequence[Episode], vectors: Vectors, *, replace: bool
    ) -> list[EpisodeWriteResult]:
        if not episodes:
            return []
        vecs = checked_episodes(episodes, vectors, self._ctx.dimension)

        def run(conn: sqlite3.Connection) -> list[EpisodeWriteResult]:
            now = datetime.now(UTC)
            with write_transaction(conn):
                results, change = self._put(conn, user, episodes, vecs, replace, now)
            self._ctx.cache.apply(cache_key(user), change)
            return results

        return await self._ctx.db.write(run)

    def _put(
        self,
        conn: sqlite3.Connection,
        user: UserRef,
        episodes: Sequence[Episode],
        vecs: npt.NDArray[np.float32],
        replace: bool,
        now: datetime,
    ) -> tuple[list[EpisodeWriteResult], Change]:
        key = ensure_user_key(conn, user)
        stored: dict[str, StoredSource] = {}
        rowids: dict[str, int] = {}  # source id -> row of the stored episode
        for chunk in chunks(list({ep.source_id for ep in episodes})):
            marks = ",".join("?" * len(chunk))
            for rowid, mid, sid, text, seq in conn.execute(
                "SELECT rowid, id, source_id, text, seq FROM memories "
                f"WHERE user_key = ? AND source_id IN ({marks})",
                [key, *chunk],
            ):
                stored[sid] = StoredSource(mid, text, seq)
                rowids[sid] = rowid

        (last_seq,) = conn.execute("SELECT episode_seq FROM users WHERE key = ?", (key,)).fetchone()
        # A conflict raises inside the transaction, so the rollback also undoes the user row.
        plan = plan_batch(episodes, stored, last_seq, replace=replace, now=now)
        inserts, replaces, results, next_seq = (
            plan.inserts,
            plan.replaces,
            plan.results,
            plan.next_seq,
        )

        changes = ChangeLog(conn, key, now, self._ctx.change_log_max_entries)
        upserts: list[VectorRow] = []
        removals: list[str] = []
        if inserts:
            params = [memory_params(key, ep) for ep, _ in inserts]
            conn.executemany(INSERT_MEMORY, params)
            conn.execute("UPDATE users SET episode_seq = ? WHERE key = ?", (next_seq, key))
            rowids = self._rowids(conn, key, [p["id"] for p in params])
            conn.executemany(
                UPSERT_VECTOR,
                [
                    (rowids[p["id"]], vector_blob(vecs[i]))
                    for p, (_, i) in zip(params, inserts, strict=True)
                ],
            )
            for p, (_, i) in zip(params, inserts, strict=True):
                changes.add(ChangeKind.ADDED, p["id"], MemoryType.EPISODE)
                upserts.append(VectorRow.from_fields(p, vecs[i]))
        for episode_id, (ep, i) in replaces.items():
            rowid = rowids[ep.source_id]
            removals.extend(detach_episode(conn, key, rowid, changes))
            p = memory_params(key, ep)
            conn.execute(UPDATE_MEMORY, p)
            conn.execute(UPSERT_VECTOR, (rowid, vector_blob(vecs[i])))
            changes.add(ChangeKind.UPDATED, episode_id, MemoryType.EPISODE)
            upserts.append(VectorRow.from_fields(p, vecs[i]))
        changes.flush()
        return results, Change(upserts=upserts, removals=removals)

    @staticmethod
    def _rowids(conn: sqlite3.Connection, key: int, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in chunks(ids):
            marks = ",".join("?" * len(chunk))
            out.update(
                conn.execute(
                    f"SELECT id, rowid FROM memories WHERE user_key = ? AND id IN ({marks})",
                    [key, *chunk],
                ).fetchall()
            )
        return out

    async def chain_neighbours(
        self, user: UserRef, episode_ids: Sequence[str], *, before: int = 1, after: int = 1
    ) -> dict[str, list[str]]:
        def run(conn: sqlite3.Connection) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return out
                for episode_id in dict.fromkeys(episode_ids):
                    row = conn.execute(
                        "SELECT chain_at, seq FROM memories "
                        "WHERE user_key = ? AND id = ? AND type = 'episode'",
                        (key, episode_id),
                    ).fetchone()
                    if row is None:
                        continue
                    prev = conn.execute(
                        "SELECT id FROM memories WHERE user_key = ? AND type = 'episode' "
                        "AND (chain_at, seq) < (?, ?) ORDER BY chain_at DESC, seq DESC LIMIT ?",
                        (key, row[0], row[1], max(before, 0)),
                    ).fetchall()
                    nxt = conn.execute(
                        "SELECT id FROM memories WHERE user_key = ? AND type = 'episode' "
                        "AND (chain_at, seq) > (?, ?) ORDER BY chain_at, seq LIMIT ?",
                        (key, row[0], row[1], max(after, 0)),
                    ).fetchall()
                    out[episode_id] = [r[0] for r in reversed(prev)] + [r[0] for r in nxt]
            return out

        return await self._ctx.db.read(run)

    async def chain(self, user: UserRef) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return []
                rows = conn.execute(
                    "SELECT id FROM memories WHERE user_key = ? AND type = 'episode' "
                    "ORDER BY chain_at, seq",
                    (key,),
                ).fetchall()
            return [r[0] for r in rows]

        return await self._ctx.db.read(run)

    async def texts(self, user: UserRef, *, after_seq: int, limit: int) -> list[EpisodeText]:
        if limit <= 0:
            return []

        def run(conn: sqlite3.Connection) -> list[EpisodeText]:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return []
                # The episodes' ingest-order index, named: without statistics the planner may
                # take another index of (user_key, type ...) and sort (as write_derived's did).
                rows = conn.execute(
                    "SELECT seq, coalesce(json_extract(payload, '$.speaker'), ''), text "
                    "FROM memories INDEXED BY memories_seq "
                    "WHERE user_key = ? AND type = 'episode' AND seq > ? ORDER BY seq LIMIT ?",
                    (key, after_seq, limit),
                ).fetchall()
            return [EpisodeText(seq, speaker, text) for seq, speaker, text in rows]

        return await self._ctx.db.read(run)

    async def set_extraction(
        self, user: UserRef, episode_id: str, status: ExtractionStatus
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                key = find_user_key(conn, user)
                if key is not None:
                    set_extraction_status(conn, key, episode_id, status)

        await self._ctx.db.write(run)

    async def due_for_extraction(self, now: datetime, limit: int) -> list[tuple[UserRef, Episode]]:
        if limit <= 0:
            return []

        def run(conn: sqlite3.Connection) -> list[tuple[UserRef, Episode]]:
            rows = conn.execute(
                f"SELECT u.tenant, u.user_id, {MEMORY_COLUMNS} FROM memories m "
                "JOIN users u ON u.key = m.user_key "
                "WHERE m.extraction_due IS NOT NULL AND m.extraction_due <= ? "
                "ORDER BY m.extraction_due, m.rowid LIMIT ?",
                (to_us(now), limit),
            ).fetchall()
            out: list[tuple[UserRef, Episode]] = []
            for row in rows:
                memory = row_to_memory(row[2:], {})
                assert isinstance(memory, Episode)
                out.append((UserRef(tenant=row[0], user_id=row[1]), memory))
            return out

        return await self._ctx.db.read(run)

    async def expire(self, tenant: str, before: datetime, limit: int) -> list[ExpiredEpisodes]:
        return await retention.expire(self._ctx, tenant, before, limit)

    async def extraction_backlog(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute(
                "SELECT count(*) FROM memories WHERE extraction_due IS NOT NULL"
            ).fetchone()
            return int(count)

        return await self._ctx.db.read(run)


def set_extraction_status(
    conn: sqlite3.Connection, key: int, episode_id: str, status: ExtractionStatus
) -> None:
    row = conn.execute(
        "SELECT recorded_at FROM memories WHERE user_key = ? AND id = ? AND type = 'episode'",
        (key, episode_id),
    ).fetchone()
    if row is None:
        return
    conn.execute(
        "UPDATE memories SET extraction = ?, extraction_due = ? "
        "WHERE user_key = ? AND id = ? AND type = 'episode'",
        (
            status.model_dump_json(),
            extraction_due(status, from_us(row[0])),
            key,
            episode_id,
        ),
    )
