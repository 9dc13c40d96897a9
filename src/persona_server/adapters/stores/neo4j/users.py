"""Users: the per-user head node, its write lock, existence and complete deletion.

`(:PersonaUser {tenant, user_id})` holds the user's counters: `episode_seq` (ingest order),
`change_seq` (the change log) and `generation` (a random id given at creation, so a user
deleted and created again is never mistaken for the old one by a cache).

Every write transaction of a user starts by writing to this node (`lock_user`). Neo4j holds the
node's write lock until commit, so one user's writes are serialised across every replica and
connection, while different users write in parallel. That is what keeps `seq` and the change
log gap-free and the NEXT chain consistent under concurrent ingest.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.neo4j.codec import user_params
from persona_server.adapters.stores.neo4j.driver import Connection, rows, run
from persona_server.adapters.stores.values import to_us
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import Usage

_LOCK_OR_CREATE = """
MERGE (u:PersonaUser {tenant: $tenant, user_id: $user_id})
ON CREATE SET u.generation = $generation, u.episode_seq = 0, u.change_seq = 0,
              u.created_at = $now
SET u.written_at = $now
RETURN u.generation AS generation, u.episode_seq AS episode_seq, u.change_seq AS change_seq
"""

_LOCK = """
MATCH (u:PersonaUser {tenant: $tenant, user_id: $user_id})
SET u.written_at = $now
RETURN u.generation AS generation, u.episode_seq AS episode_seq, u.change_seq AS change_seq
"""

_HEAD = """
MATCH (u:PersonaUser {tenant: $tenant, user_id: $user_id})
RETURN u.generation AS generation, u.episode_seq AS episode_seq, u.change_seq AS change_seq
"""


@dataclass(frozen=True)
class UserHead:
    generation: str
    episode_seq: int
    change_seq: int


def _head(found: list[dict[str, object]]) -> UserHead | None:
    if not found:
        return None
    r = found[0]
    return UserHead(str(r["generation"]), int(str(r["episode_seq"])), int(str(r["change_seq"])))


async def lock_user(
    tx: AsyncManagedTransaction, user: UserRef, now: datetime, *, create: bool
) -> UserHead | None:
    """Take the user's write lock (creating the user if asked); None if there is no user."""
    params = {**user_params(user), "now": to_us(now)}
    if create:
        params["generation"] = uuid.uuid4().hex
        return _head(await rows(tx, _LOCK_OR_CREATE, params))
    return _head(await rows(tx, _LOCK, params))


async def read_head(tx: AsyncManagedTransaction, user: UserRef) -> UserHead | None:
    return _head(await rows(tx, _HEAD, user_params(user)))


async def fetch_head(conn: Connection, user: UserRef) -> UserHead | None:
    """`read_head` as a transaction of its own (one round trip)."""
    return _head(await conn.read_one(_HEAD, user_params(user)))


# Older nodes have no text_bytes (written before it was stored): their length in characters
# stands in, which equals the bytes for ASCII text.
_USAGE = """
MATCH (m:Memory) WHERE m.tenant = $tenant AND m.user_id = $user_id
RETURN count(m) AS n, coalesce(sum(coalesce(m.text_bytes, size(m.text))), 0) AS bytes
"""
_TENANT_USAGE = """
MATCH (m:Memory) WHERE m.tenant = $tenant
RETURN count(m) AS n, coalesce(sum(coalesce(m.text_bytes, size(m.text))), 0) AS bytes
"""
_COUNT_MEMORIES = """
MATCH (m:Memory) WHERE m.tenant = $tenant AND m.user_id = $user_id
RETURN count(m) AS n
"""
_DELETE_MEMORIES = """
MATCH (m:Memory) WHERE m.tenant = $tenant AND m.user_id = $user_id
DETACH DELETE m
"""
_DELETE_CHANGES = """
MATCH (c:PersonaChange) WHERE c.tenant = $tenant AND c.user_id = $user_id
DELETE c
"""
_DELETE_USER = """
MATCH (u:PersonaUser {tenant: $tenant, user_id: $user_id})
DETACH DELETE u
"""


_TENANTS = """
MATCH (u:PersonaUser) WHERE u.tenant IS NOT NULL
RETURN DISTINCT u.tenant AS tenant ORDER BY tenant
"""


# Read after the user's write lock is held (lock_user), so two replicas never both see the
# lease free: the second one's read waits for the first one's commit.
_LEASE = """
MATCH (u:PersonaUser {tenant: $tenant, user_id: $user_id})
RETURN u.extraction_owner AS owner, u.extraction_until AS until
"""
_TAKE_LEASE = """
MATCH (u:PersonaUser {tenant: $tenant, user_id: $user_id})
SET u.extraction_owner = $owner, u.extraction_until = $until
"""
_RELEASE_LEASE = """
MATCH (u:PersonaUser {tenant: $tenant, user_id: $user_id})
WHERE u.extraction_owner = $owner
REMOVE u.extraction_owner, u.extraction_until
"""


class Neo4jUserOps:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def exists(self, user: UserRef) -> bool:
        return await fetch_head(self._conn, user) is not None

    async def usage(self, user: UserRef) -> Usage:
        return await self._usage(_USAGE, user_params(user))

    async def tenant_usage(self, tenant: str) -> Usage:
        return await self._usage(_TENANT_USAGE, {"tenant": tenant})

    async def _usage(self, statement: str, params: dict[str, Any]) -> Usage:
        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await rows(tx, statement, params)

        row = (await self._conn.read(work))[0]
        return Usage(int(row["n"]), int(row["bytes"]))

    async def lease_extraction(
        self, user: UserRef, owner: str, now: datetime, until: datetime
    ) -> bool:
        async def work(tx: AsyncManagedTransaction) -> bool:
            if await lock_user(tx, user, now, create=False) is None:
                return False
            params = user_params(user)
            held = (await rows(tx, _LEASE, params))[0]
            if held["owner"] not in (None, owner) and (held["until"] or 0) > to_us(now):
                return False
            await run(tx, _TAKE_LEASE, {**params, "owner": owner, "until": to_us(until)})
            return True

        return await self._conn.write(work)

    async def release_extraction(self, user: UserRef, owner: str) -> None:
        async def work(tx: AsyncManagedTransaction) -> None:
            await run(tx, _RELEASE_LEASE, {**user_params(user), "owner": owner})

        await self._conn.write(work)

    async def tenants(self) -> list[str]:
        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await rows(tx, _TENANTS, {})

        return [r["tenant"] for r in await self._conn.read(work)]

    async def delete(self, user: UserRef) -> int:
        """One transaction: the user vanishes whole or not at all.

        Nodes go with their relationships, and Neo4j drops their entries from the vector and
        full-text indexes in the same commit. Lucene keeps deleted documents in its segment
        files (never returned by a query) until it merges those segments.
        """

        async def work(tx: AsyncManagedTransaction) -> int:
            if await lock_user(tx, user, datetime.now(UTC), create=False) is None:
                return 0
            params = user_params(user)
            count = int((await rows(tx, _COUNT_MEMORIES, params))[0]["n"])
            await run(tx, _DELETE_MEMORIES, params)
            await run(tx, _DELETE_CHANGES, params)
            await run(tx, _DELETE_USER, params)
            return count

        return await self._conn.write(work)
