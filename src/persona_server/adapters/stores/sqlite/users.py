"""Users: the (tenant, user_id) -> key mapping, existence, and complete deletion."""

from __future__ import annotations

import logging
import sqlite3
import time
from datetime import datetime

from persona_server.adapters.stores.sqlite.connection import read_transaction, write_transaction
from persona_server.adapters.stores.sqlite.context import StoreContext
from persona_server.adapters.stores.values import to_us
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import Usage

log = logging.getLogger(__name__)

_CHECKPOINT_ATTEMPTS = 20


def find_user_key(conn: sqlite3.Connection, user: UserRef) -> int | None:
    row = conn.execute(
        "SELECT key FROM users WHERE tenant = ? AND user_id = ?", (user.tenant, user.user_id)
    ).fetchone()
    return None if row is None else int(row[0])


def ensure_user_key(conn: sqlite3.Connection, user: UserRef) -> int:
    """The user's key, creating the user; call inside a write transaction."""
    key = find_user_key(conn, user)
    if key is not None:
        return key
    cur = conn.execute(
        "INSERT INTO users (tenant, user_id) VALUES (?, ?)", (user.tenant, user.user_id)
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def cache_key(user: UserRef) -> tuple[str, str]:
    return (user.tenant, user.user_id)


def checkpoint_truncate(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and truncate it, so deleted text is not left in it.

    A reader holding an old snapshot blocks the truncation; such reads are short, so retry
    for a while before giving up.
    """
    for attempt in range(_CHECKPOINT_ATTEMPTS):
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(0.05 * (attempt + 1))
    return False


class SqliteUserOps:
    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    async def exists(self, user: UserRef) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return find_user_key(conn, user) is not None

        return await self._ctx.db.read(run)

    async def usage(self, user: UserRef) -> Usage:
        def run(conn: sqlite3.Connection) -> Usage:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return Usage()
                row = conn.execute(
                    "SELECT count(*), coalesce(sum(length(CAST(text AS BLOB))), 0) "
                    "FROM memories WHERE user_key = ?",
                    (key,),
                ).fetchone()
            return Usage(int(row[0]), int(row[1]))

        return await self._ctx.db.read(run)

    async def tenant_usage(self, tenant: str) -> Usage:
        def run(conn: sqlite3.Connection) -> Usage:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(length(CAST(m.text AS BLOB))), 0) "
                "FROM users u JOIN memories m ON m.user_key = u.key WHERE u.tenant = ?",
                (tenant,),
            ).fetchone()
            return Usage(int(row[0]), int(row[1]))

        return await self._ctx.db.read(run)

    async def lease_extraction(
        self, user: UserRef, owner: str, now: datetime, until: datetime
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            # The write transaction serialises every writer of the file: check-then-set is
            # atomic here.
            with write_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return False
                held = conn.execute(
                    "SELECT owner, until FROM extraction_leases WHERE user_key = ?", (key,)
                ).fetchone()
                if held is not None and held[0] != owner and held[1] > to_us(now):
                    return False
                conn.execute(
                    "INSERT INTO extraction_leases (user_key, owner, until) VALUES (?, ?, ?) "
                    "ON CONFLICT (user_key) DO UPDATE SET owner = excluded.owner, "
                    "until = excluded.until",
                    (key, owner, to_us(until)),
                )
                return True

        return await self._ctx.db.write(run)

    async def release_extraction(self, user: UserRef, owner: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                key = find_user_key(conn, user)
                if key is not None:
                    conn.execute(
                        "DELETE FROM extraction_leases WHERE user_key = ? AND owner = ?",
                        (key, owner),
                    )

        await self._ctx.db.write(run)

    async def tenants(self) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            return [t for (t,) in conn.execute("SELECT DISTINCT tenant FROM users ORDER BY tenant")]

        return await self._ctx.db.read(run)

    async def delete(self, user: UserRef) -> int:
        def run(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return 0
                (count,) = conn.execute(
                    "SELECT count(*) FROM memories WHERE user_key = ?", (key,)
                ).fetchone()
                # Dependants first, in bulk: several times faster than letting the per-row FK
                # cascade and FTS trigger do it (they still run, and find nothing left).
                mine = "(SELECT rowid FROM memories WHERE user_key = ?)"
                for sql in (
                    f"DELETE FROM vectors WHERE memory_rowid IN {mine}",
                    f"DELETE FROM provenance WHERE memory_rowid IN {mine}",
                    f"DELETE FROM mentions WHERE episode_rowid IN {mine}",
                    "DELETE FROM entity_names WHERE user_key = ?",
                    f"DELETE FROM memories_fts WHERE rowid IN {mine}",
                    "DELETE FROM memories WHERE user_key = ?",
                ):
                    conn.execute(sql, (key,))
                conn.execute("DELETE FROM changes WHERE user_key = ?", (key,))
                conn.execute("DELETE FROM extraction_leases WHERE user_key = ?", (key,))
                conn.execute("DELETE FROM users WHERE key = ?", (key,))
                if not self._ctx.fts_secure_delete:
                    # Without FTS5 secure-delete a delete only adds a tombstone; the user's terms
                    # stay in older index segments until they are merged. optimize merges all
                    # of them now (cost grows with the whole index; deleting a user is rare).
                    conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('optimize')")
            self._ctx.cache.drop(cache_key(user))
            if not checkpoint_truncate(conn):
                log.warning(
                    "user deleted, but the WAL could not be truncated yet (readers busy); "
                    "its pages are overwritten by later checkpoints"
                )
            return int(count)

        return await self._ctx.db.write(run)
