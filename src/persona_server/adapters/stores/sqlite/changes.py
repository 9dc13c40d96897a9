"""The per-user change log the live context feed resumes from.

Entries are written by `ChangeLog` inside the transaction that makes the change, so a reader
never sees a change without its log entry or the other way round. The same transaction drops
the user's entries beyond the newest `keep` (a range of the primary key, so about free); entries
past their age go by `SqliteChangeOps.prune` (the `changes_at` index).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from persona_server.adapters.stores.sqlite.connection import (
    Database,
    read_transaction,
    write_transaction,
)
from persona_server.adapters.stores.sqlite.users import find_user_key
from persona_server.adapters.stores.values import from_us, to_us
from persona_server.domain.models import ChangeKind, MemoryChange, MemoryType, UserRef
from persona_server.ports.graph_store import CHANGE_LOG_MAX_ENTRIES


class ChangeLog:
    """Collects one transaction's changes for one user and writes them with their seqs."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        user_key: int,
        at: datetime,
        keep: int = CHANGE_LOG_MAX_ENTRIES,
    ) -> None:
        self._conn = conn
        self._user_key = user_key
        self._at = to_us(at)
        self._keep = keep
        self._rows: list[tuple[int, int, str, str, str, int]] = []
        (self._seq,) = conn.execute(
            "SELECT change_seq FROM users WHERE key = ?", (user_key,)
        ).fetchone()

    def add(self, kind: ChangeKind, memory_id: str, memory_type: MemoryType | str) -> None:
        self._seq += 1
        self._rows.append(
            (self._user_key, self._seq, kind.value, memory_id, str(memory_type), self._at)
        )

    def flush(self) -> None:
        if not self._rows:
            return
        self._conn.executemany(
            "INSERT INTO changes (user_key, seq, kind, memory_id, memory_type, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            self._rows,
        )
        self._conn.execute(
            "UPDATE users SET change_seq = ? WHERE key = ?", (self._seq, self._user_key)
        )
        if self._seq > self._keep:
            self._conn.execute(
                "DELETE FROM changes WHERE user_key = ? AND seq <= ?",
                (self._user_key, self._seq - self._keep),
            )
        self._rows.clear()


class SqliteChangeOps:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def latest_seq(self, user: UserRef) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT change_seq FROM users WHERE tenant = ? AND user_id = ?",
                (user.tenant, user.user_id),
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._db.read(run)

    async def since(self, user: UserRef, seq: int, limit: int) -> list[MemoryChange]:
        if limit <= 0:
            return []

        def run(conn: sqlite3.Connection) -> list[MemoryChange]:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return []
                rows = conn.execute(
                    "SELECT seq, kind, memory_id, memory_type, at FROM changes "
                    "WHERE user_key = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (key, seq, limit),
                ).fetchall()
            return [
                MemoryChange(
                    seq=s,
                    kind=ChangeKind(kind),
                    memory_id=mid,
                    memory_type=MemoryType(mtype),
                    at=from_us(at),
                )
                for s, kind, mid, mtype, at in rows
            ]

        return await self._db.read(run)

    async def prune(self, before: datetime, limit: int) -> int:
        if limit <= 0:
            return 0

        def run(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                cur = conn.execute(
                    "DELETE FROM changes WHERE (user_key, seq) IN "
                    "(SELECT user_key, seq FROM changes WHERE at < ? ORDER BY at LIMIT ?)",
                    (to_us(before), limit),
                )
                return cur.rowcount

        return await self._db.write(run)
