"""Knowledge schemas (per tenant) and documents (per user) in the embedded store.

Documents hang off the user's key, so DeleteUser removes them with the user's other rows;
deleting a schema removes its documents in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from persona_server.adapters.stores.knowledge_codec import dump_fields, load_fields
from persona_server.adapters.stores.sqlite.connection import read_transaction, write_transaction
from persona_server.adapters.stores.sqlite.context import StoreContext
from persona_server.adapters.stores.sqlite.users import find_user_key
from persona_server.adapters.stores.values import from_us, opt_from_us, opt_us, to_us
from persona_server.domain.knowledge import KnowledgeDocument, KnowledgeSchema
from persona_server.domain.models import UserRef

KNOWLEDGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS knowledge_schemas (
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    json_schema TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS knowledge_documents (
    user_key   INTEGER NOT NULL REFERENCES users(key),
    name       TEXT NOT NULL,
    fields     TEXT NOT NULL,
    cursor     INTEGER NOT NULL,
    updated_at INTEGER,
    PRIMARY KEY (user_key, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS knowledge_documents_name ON knowledge_documents (name);
"""

_SCHEMA_COLUMNS = "tenant, name, json_schema, created_at, updated_at"


def _schema(row: tuple[str, str, str, int, int]) -> KnowledgeSchema:
    return KnowledgeSchema(row[0], row[1], row[2], from_us(row[3]), from_us(row[4]))


class SqliteKnowledgeOps:
    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    async def put_schema(self, schema: KnowledgeSchema, max_schemas: int) -> tuple[bool, bool]:
        def run(conn: sqlite3.Connection) -> tuple[bool, bool]:
            with write_transaction(conn):
                found = conn.execute(
                    "SELECT 1 FROM knowledge_schemas WHERE tenant = ? AND name = ?",
                    (schema.tenant, schema.name),
                ).fetchone()
                if found is None:
                    (count,) = conn.execute(
                        "SELECT count(*) FROM knowledge_schemas WHERE tenant = ?",
                        (schema.tenant,),
                    ).fetchone()
                    if count >= max_schemas:
                        return True, False
                    conn.execute(
                        f"INSERT INTO knowledge_schemas ({_SCHEMA_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                        (
                            schema.tenant,
                            schema.name,
                            schema.json_schema,
                            to_us(schema.created_at),
                            to_us(schema.updated_at),
                        ),
                    )
                    return True, True
                conn.execute(
                    "UPDATE knowledge_schemas SET json_schema = ?, updated_at = ? "
                    "WHERE tenant = ? AND name = ? AND json_schema <> ?",
                    (
                        schema.json_schema,
                        to_us(schema.updated_at),
                        schema.tenant,
                        schema.name,
                        schema.json_schema,
                    ),
                )
                return False, True

        return await self._ctx.db.write(run)

    async def get_schema(self, tenant: str, name: str) -> KnowledgeSchema | None:
        def run(conn: sqlite3.Connection) -> KnowledgeSchema | None:
            row = conn.execute(
                f"SELECT {_SCHEMA_COLUMNS} FROM knowledge_schemas WHERE tenant = ? AND name = ?",
                (tenant, name),
            ).fetchone()
            return None if row is None else _schema(row)

        return await self._ctx.db.read(run)

    async def list_schemas(self, tenant: str, *, after: str, limit: int) -> list[KnowledgeSchema]:
        def run(conn: sqlite3.Connection) -> list[KnowledgeSchema]:
            return [
                _schema(row)
                for row in conn.execute(
                    f"SELECT {_SCHEMA_COLUMNS} FROM knowledge_schemas "
                    "WHERE tenant = ? AND name > ? ORDER BY name LIMIT ?",
                    (tenant, after, limit),
                )
            ]

        return await self._ctx.db.read(run)

    async def delete_schema(self, tenant: str, name: str) -> int | None:
        def run(conn: sqlite3.Connection) -> int | None:
            with write_transaction(conn):
                cur = conn.execute(
                    "DELETE FROM knowledge_schemas WHERE tenant = ? AND name = ?", (tenant, name)
                )
                if cur.rowcount == 0:
                    return None
                cur = conn.execute(
                    "DELETE FROM knowledge_documents WHERE name = ? "
                    "AND user_key IN (SELECT key FROM users WHERE tenant = ?)",
                    (name, tenant),
                )
                return cur.rowcount

        return await self._ctx.db.write(run)

    async def documents(self, user: UserRef) -> dict[str, KnowledgeDocument]:
        def run(conn: sqlite3.Connection) -> dict[str, KnowledgeDocument]:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return {}
                return {
                    name: KnowledgeDocument(
                        name, load_fields(fields), int(cursor), opt_from_us(updated)
                    )
                    for name, fields, cursor, updated in conn.execute(
                        "SELECT name, fields, cursor, updated_at FROM knowledge_documents "
                        "WHERE user_key = ?",
                        (key,),
                    )
                }

        return await self._ctx.db.read(run)

    async def put_documents(
        self,
        user: UserRef,
        documents: Sequence[tuple[KnowledgeDocument, int]],
        *,
        requires: str = "",
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            with write_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return False  # deleted meanwhile: nothing to write a document for
                if requires and (
                    conn.execute(
                        "SELECT 1 FROM memories WHERE user_key = ? AND id = ? AND type = 'episode'",
                        (key, requires),
                    ).fetchone()
                    is None
                ):
                    return False
                for doc, expected in documents:
                    if (
                        conn.execute(
                            "SELECT 1 FROM knowledge_schemas WHERE tenant = ? AND name = ?",
                            (user.tenant, doc.name),
                        ).fetchone()
                        is None
                    ):
                        return False
                    row = conn.execute(
                        "SELECT cursor FROM knowledge_documents WHERE user_key = ? AND name = ?",
                        (key, doc.name),
                    ).fetchone()
                    if (0 if row is None else int(row[0])) != expected:
                        return False
                conn.executemany(
                    "INSERT INTO knowledge_documents (user_key, name, fields, cursor, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_key, name) DO UPDATE SET "
                    "fields = excluded.fields, cursor = excluded.cursor, "
                    "updated_at = excluded.updated_at",
                    [
                        (key, d.name, dump_fields(d.fields), d.cursor, opt_us(d.updated_at))
                        for d, _ in documents
                    ],
                )
                return True

        return await self._ctx.db.write(run)

    async def episodes_after(self, user: UserRef, seq: int, limit: int) -> list[tuple[int, str]]:
        def run(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return []
                return [
                    (int(s), str(i))
                    for s, i in conn.execute(
                        "SELECT seq, id FROM memories WHERE user_key = ? AND type = 'episode' "
                        "AND seq > ? ORDER BY seq LIMIT ?",
                        (key, seq, limit),
                    )
                ]

        return await self._ctx.db.read(run)

    async def count_episodes_after(self, user: UserRef, seq: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return 0
                (count,) = conn.execute(
                    "SELECT count(*) FROM memories WHERE user_key = ? AND type = 'episode' "
                    "AND seq > ?",
                    (key, seq),
                ).fetchone()
                return int(count)

        return await self._ctx.db.read(run)

    async def latest_episode_seq(self, user: UserRef) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT episode_seq FROM users WHERE tenant = ? AND user_id = ?",
                (user.tenant, user.user_id),
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._ctx.db.read(run)

    async def behind(self, limit: int) -> list[UserRef]:
        def run(conn: sqlite3.Connection) -> list[UserRef]:
            # Only tenants with schemas are looked at; within them, every user (a scan of the
            # users of those tenants, one indexed lookup per schema each).
            return [
                UserRef(tenant=t, user_id=u)
                for t, u in conn.execute(
                    "SELECT u.tenant, u.user_id FROM users u "
                    "WHERE u.episode_seq > 0 AND u.tenant IN "
                    "(SELECT DISTINCT tenant FROM knowledge_schemas) AND EXISTS ("
                    "  SELECT 1 FROM knowledge_schemas s WHERE s.tenant = u.tenant AND "
                    "  coalesce((SELECT d.cursor FROM knowledge_documents d "
                    "   WHERE d.user_key = u.key AND d.name = s.name), 0) < u.episode_seq"
                    # In random order: users that keep failing (in backoff) cannot fill every
                    # round's batch and starve the others.
                    ") ORDER BY random() LIMIT ?",
                    (limit,),
                )
            ]

        return await self._ctx.db.read(run)
