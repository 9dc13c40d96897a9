"""Knowledge schemas and documents on Neo4j.

`(:PersonaKnowledgeSchema {tenant, name, json_schema, created_at, updated_at})` per tenant
schema and `(:PersonaKnowledgeDocument {tenant, user_id, name, fields, cursor, updated_at})` per
user and schema; both unique by their keys (schema.py). Documents are written under the user's
write lock (`lock_user`), which makes their compare-and-set on the cursor atomic across
replicas. Cypher is parameterised only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.knowledge_codec import dump_fields, load_fields
from persona_server.adapters.stores.neo4j.codec import user_params
from persona_server.adapters.stores.neo4j.driver import Connection, rows, run
from persona_server.adapters.stores.neo4j.users import fetch_head, lock_user
from persona_server.adapters.stores.values import from_us, opt_from_us, opt_us, to_us
from persona_server.domain.knowledge import KnowledgeDocument, KnowledgeSchema
from persona_server.domain.models import UserRef

_SCHEMA_FIELDS = """
s.tenant AS tenant, s.name AS name, s.json_schema AS json_schema,
s.created_at AS created_at, s.updated_at AS updated_at
"""
_FIND_SCHEMA = (
    "MATCH (s:PersonaKnowledgeSchema {tenant: $tenant, name: $name}) RETURN " + _SCHEMA_FIELDS
)
_COUNT_SCHEMAS = "MATCH (s:PersonaKnowledgeSchema {tenant: $tenant}) RETURN count(s) AS n"
_CREATE_SCHEMA = """
CREATE (s:PersonaKnowledgeSchema {tenant: $tenant, name: $name, json_schema: $json_schema,
                                  created_at: $created_at, updated_at: $updated_at})
"""
_UPDATE_SCHEMA = """
MATCH (s:PersonaKnowledgeSchema {tenant: $tenant, name: $name})
WHERE s.json_schema <> $json_schema
SET s.json_schema = $json_schema, s.updated_at = $updated_at
"""
_LIST_SCHEMAS = (
    "MATCH (s:PersonaKnowledgeSchema {tenant: $tenant}) WHERE s.name > $after "
    "RETURN " + _SCHEMA_FIELDS + " ORDER BY s.name LIMIT $limit"
)
_DELETE_SCHEMA = """
MATCH (s:PersonaKnowledgeSchema {tenant: $tenant, name: $name})
DELETE s
RETURN count(*) AS n
"""
_DELETE_DOCUMENTS = """
MATCH (d:PersonaKnowledgeDocument {tenant: $tenant, name: $name})
DELETE d
RETURN count(*) AS n
"""
_DOCUMENTS = """
MATCH (d:PersonaKnowledgeDocument {tenant: $tenant, user_id: $user_id})
RETURN d.name AS name, d.fields AS fields, d.cursor AS cursor, d.updated_at AS updated_at
"""
_CURSORS = """
UNWIND $names AS name
OPTIONAL MATCH (s:PersonaKnowledgeSchema {tenant: $tenant, name: name})
OPTIONAL MATCH (d:PersonaKnowledgeDocument {tenant: $tenant, user_id: $user_id, name: name})
RETURN name, s IS NOT NULL AS registered, coalesce(d.cursor, 0) AS cursor
"""
_EPISODE_EXISTS = """
MATCH (e:Episode {tenant: $tenant, user_id: $user_id, id: $id}) RETURN e.id AS id
"""
_PUT_DOCUMENTS = """
UNWIND $docs AS doc
MERGE (d:PersonaKnowledgeDocument {tenant: $tenant, user_id: $user_id, name: doc.name})
SET d.fields = doc.fields, d.cursor = doc.cursor, d.updated_at = doc.updated_at
"""
_EPISODES_AFTER = """
MATCH (e:Episode) WHERE e.tenant = $tenant AND e.user_id = $user_id AND e.seq > $seq
RETURN e.seq AS seq, e.id AS id ORDER BY e.seq LIMIT $limit
"""
_COUNT_AFTER = """
MATCH (e:Episode) WHERE e.tenant = $tenant AND e.user_id = $user_id AND e.seq > $seq
RETURN count(e) AS n
"""
_BEHIND = """
MATCH (s:PersonaKnowledgeSchema)
MATCH (u:PersonaUser {tenant: s.tenant}) WHERE u.episode_seq > 0
OPTIONAL MATCH (d:PersonaKnowledgeDocument {tenant: u.tenant, user_id: u.user_id, name: s.name})
WITH u, coalesce(d.cursor, 0) AS cursor WHERE cursor < u.episode_seq
WITH DISTINCT u.tenant AS tenant, u.user_id AS user_id
RETURN tenant, user_id ORDER BY rand() LIMIT $limit
"""


def _schema(r: dict[str, Any]) -> KnowledgeSchema:
    return KnowledgeSchema(
        str(r["tenant"]),
        str(r["name"]),
        str(r["json_schema"]),
        from_us(int(r["created_at"])),
        from_us(int(r["updated_at"])),
    )


class Neo4jKnowledgeOps:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def put_schema(self, schema: KnowledgeSchema, max_schemas: int) -> tuple[bool, bool]:
        params = {
            "tenant": schema.tenant,
            "name": schema.name,
            "json_schema": schema.json_schema,
            "created_at": to_us(schema.created_at),
            "updated_at": to_us(schema.updated_at),
        }

        async def work(tx: AsyncManagedTransaction) -> tuple[bool, bool]:
            if await rows(tx, _FIND_SCHEMA, params):
                await run(tx, _UPDATE_SCHEMA, params)
                return False, True
            # Two replicas adding a new name each at once may pass the limit by one: the
            # limit bounds a tenant's work, it is not a security boundary.
            if int((await rows(tx, _COUNT_SCHEMAS, params))[0]["n"]) >= max_schemas:
                return True, False
            await run(tx, _CREATE_SCHEMA, params)
            return True, True

        return await self._conn.write(work)

    async def get_schema(self, tenant: str, name: str) -> KnowledgeSchema | None:
        found = await self._conn.read_one(_FIND_SCHEMA, {"tenant": tenant, "name": name})
        return _schema(found[0]) if found else None

    async def list_schemas(self, tenant: str, *, after: str, limit: int) -> list[KnowledgeSchema]:
        found = await self._conn.read_one(
            _LIST_SCHEMAS, {"tenant": tenant, "after": after, "limit": limit}
        )
        return [_schema(r) for r in found]

    async def delete_schema(self, tenant: str, name: str) -> int | None:
        params = {"tenant": tenant, "name": name}

        async def work(tx: AsyncManagedTransaction) -> int | None:
            if int((await rows(tx, _DELETE_SCHEMA, params))[0]["n"]) == 0:
                return None
            return int((await rows(tx, _DELETE_DOCUMENTS, params))[0]["n"])

        return await self._conn.write(work)

    async def documents(self, user: UserRef) -> dict[str, KnowledgeDocument]:
        found = await self._conn.read_one(_DOCUMENTS, user_params(user))
        return {
            str(r["name"]): KnowledgeDocument(
                str(r["name"]),
                load_fields(str(r["fields"])),
                int(r["cursor"]),
                opt_from_us(None if r["updated_at"] is None else int(r["updated_at"])),
            )
            for r in found
        }

    async def put_documents(
        self,
        user: UserRef,
        documents: Sequence[tuple[KnowledgeDocument, int]],
        *,
        requires: str = "",
    ) -> bool:
        params = user_params(user)
        docs = [
            {
                "name": d.name,
                "fields": dump_fields(d.fields),
                "cursor": d.cursor,
                "updated_at": opt_us(d.updated_at),
            }
            for d, _ in documents
        ]
        expected = {d.name: cursor for d, cursor in documents}

        async def work(tx: AsyncManagedTransaction) -> bool:
            if await lock_user(tx, user, datetime.now(UTC), create=False) is None:
                return False
            if requires and not await rows(tx, _EPISODE_EXISTS, {**params, "id": requires}):
                return False
            for r in await rows(tx, _CURSORS, {**params, "names": list(expected)}):
                if not r["registered"] or int(r["cursor"]) != expected[str(r["name"])]:
                    return False
            await run(tx, _PUT_DOCUMENTS, {**params, "docs": docs})
            return True

        return await self._conn.write(work)

    async def episodes_after(self, user: UserRef, seq: int, limit: int) -> list[tuple[int, str]]:
        found = await self._conn.read_one(
            _EPISODES_AFTER, {**user_params(user), "seq": seq, "limit": limit}
        )
        return [(int(r["seq"]), str(r["id"])) for r in found]

    async def count_episodes_after(self, user: UserRef, seq: int) -> int:
        found = await self._conn.read_one(_COUNT_AFTER, {**user_params(user), "seq": seq})
        return int(found[0]["n"])

    async def latest_episode_seq(self, user: UserRef) -> int:
        head = await fetch_head(self._conn, user)
        return 0 if head is None else head.episode_seq

    async def behind(self, limit: int) -> list[UserRef]:
        found = await self._conn.read_one(_BEHIND, {"limit": limit})
        return [UserRef(tenant=str(r["tenant"]), user_id=str(r["user_id"])) for r in found]
