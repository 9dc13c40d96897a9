"""Constraints, indexes and the store's meta node, all created idempotently.

Run at `open` and again after an outage (a Neo4j that comes back empty or restored from an old
backup gets its schema back before the store reports healthy). Concurrent replicas starting
together are fine: every statement is `IF NOT EXISTS`, and losing a creation race to another
replica is recognised by its status code and ignored.

The vector index dimension is the one `open(dimension=...)` was given. The meta node records the
embedding model and dimension the data was built with; opening with another one raises
`EmbeddingMismatchError` before anything is created, as does an existing vector index of another
dimension.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, LiteralString

from neo4j import AsyncManagedTransaction
from neo4j.exceptions import ClientError

from persona_server.adapters.stores.neo4j.driver import Connection, rows
from persona_server.adapters.stores.values import to_us
from persona_server.ports.graph_store import EmbeddingMismatchError, StoreUnavailableError

# 2: DERIVED_FROM relationships carry tenant, user_id, memory_id and the episode's seq.
# 3: goals carry their status as a property (indexed for the profile's active goals).
SCHEMA_VERSION = 3
_MIGRATION_BATCH = 10_000
VECTOR_INDEX = "persona_memory_embedding"
TEXT_INDEX = "persona_memory_text"

CONSTRAINTS: tuple[LiteralString, ...] = (
    "CREATE CONSTRAINT persona_meta_key IF NOT EXISTS FOR (n:PersonaMeta) REQUIRE n.key IS UNIQUE",
    "CREATE CONSTRAINT persona_user_key IF NOT EXISTS "
    "FOR (u:PersonaUser) REQUIRE (u.tenant, u.user_id) IS UNIQUE",
    "CREATE CONSTRAINT persona_memory_key IF NOT EXISTS "
    "FOR (m:Memory) REQUIRE (m.tenant, m.user_id, m.id) IS UNIQUE",
    # Idempotency by source id holds even for two replicas ingesting the same source at once.
    "CREATE CONSTRAINT persona_episode_source IF NOT EXISTS "
    "FOR (e:Episode) REQUIRE (e.tenant, e.user_id, e.source_id) IS UNIQUE",
    "CREATE CONSTRAINT persona_change_key IF NOT EXISTS "
    "FOR (c:PersonaChange) REQUIRE (c.tenant, c.user_id, c.seq) IS UNIQUE",
    "CREATE CONSTRAINT persona_knowledge_schema_key IF NOT EXISTS "
    "FOR (s:PersonaKnowledgeSchema) REQUIRE (s.tenant, s.name) IS UNIQUE",
    "CREATE CONSTRAINT persona_knowledge_document_key IF NOT EXISTS "
    "FOR (d:PersonaKnowledgeDocument) REQUIRE (d.tenant, d.user_id, d.name) IS UNIQUE",
)

INDEXES: tuple[LiteralString, ...] = (
    # A user's memories (deletion, cache loads, exact vector fallback).
    "CREATE INDEX persona_memory_user IF NOT EXISTS FOR (m:Memory) ON (m.tenant, m.user_id)",
    # Listing pages in (recorded_at, id) order straight from the index.
    "CREATE INDEX persona_memory_recorded IF NOT EXISTS "
    "FOR (m:Memory) ON (m.tenant, m.user_id, m.recorded_at, m.id)",
    "CREATE INDEX persona_memory_merge_key IF NOT EXISTS "
    "FOR (m:Memory) ON (m.tenant, m.user_id, m.type, m.merge_key)",
    # Chain neighbours in O(log n): the order the NEXT relationships follow.
    "CREATE INDEX persona_episode_chain IF NOT EXISTS "
    "FOR (e:Episode) ON (e.tenant, e.user_id, e.chain_at, e.seq)",
    # Episodes in ingest order (export pages).
    "CREATE INDEX persona_episode_seq IF NOT EXISTS "
    "FOR (e:Episode) ON (e.tenant, e.user_id, e.seq)",
    "CREATE INDEX persona_episode_due IF NOT EXISTS FOR (e:Episode) ON (e.extraction_due)",
    # The bounded reads of MemoryOps.ranked (the profile), each read in index order to its limit.
    "CREATE INDEX persona_memory_type_recorded IF NOT EXISTS "
    "FOR (m:Memory) ON (m.tenant, m.user_id, m.type, m.recorded_at, m.id)",
    "CREATE INDEX persona_memory_mentions IF NOT EXISTS "
    "FOR (m:Memory) ON (m.tenant, m.user_id, m.type, m.mention_count, m.recorded_at, m.id)",
    "CREATE INDEX persona_goal_status IF NOT EXISTS "
    "FOR (g:Goal) ON (g.tenant, g.user_id, g.status, g.recorded_at, g.id)",
    # A user's knowledge documents (GetKnowledge, DeleteUser) and a tenant's schemas (List).
    "CREATE INDEX persona_knowledge_document_user IF NOT EXISTS "
    "FOR (d:PersonaKnowledgeDocument) ON (d.tenant, d.user_id)",
    "CREATE INDEX persona_knowledge_schema_tenant IF NOT EXISTS "
    "FOR (s:PersonaKnowledgeSchema) ON (s.tenant)",
    # Pruning the change log by age (changes.py).
    "CREATE INDEX persona_change_at IF NOT EXISTS FOR (c:PersonaChange) ON (c.at)",
    "CREATE INDEX persona_entity_user IF NOT EXISTS FOR (n:Entity) ON (n.tenant, n.user_id)",
    "CREATE INDEX persona_fact_subject IF NOT EXISTS "
    "FOR (f:Fact) ON (f.tenant, f.user_id, f.subject_id)",
    "CREATE INDEX persona_fact_object IF NOT EXISTS "
    "FOR (f:Fact) ON (f.tenant, f.user_id, f.object_id)",
    # A memory's first provenance links in ingest order (codec.PROVENANCE_SUBQUERY).
    "CREATE INDEX persona_provenance_order IF NOT EXISTS "
    "FOR ()-[r:DERIVED_FROM]-() ON (r.tenant, r.user_id, r.memory_id, r.seq)",
    # `owner` beside the text lets a Lucene query stay inside one user (see search.py).
    "CREATE FULLTEXT INDEX persona_memory_text IF NOT EXISTS "
    "FOR (m:Memory) ON EACH [m.search_text, m.owner] "
    "OPTIONS {indexConfig: {`fulltext.analyzer`: 'english'}}",
)

VECTOR_INDEX_DDL: LiteralString = (
    "CREATE VECTOR INDEX persona_memory_embedding IF NOT EXISTS "
    "FOR (m:Memory) ON m.embedding "
    "OPTIONS {indexConfig: {`vector.dimensions`: $dimension, "
    "`vector.similarity_function`: 'cosine'}}"
)

_META = """
MERGE (meta:PersonaMeta {key: 'store'})
ON CREATE SET meta.embedding_model = $model, meta.embedding_dimension = $dimension,
              meta.schema_version = $version, meta.created_at = $now
RETURN meta.embedding_model AS model, meta.embedding_dimension AS dimension,
       meta.schema_version AS version
"""

# Version 1 -> 2, a batch at a time (one managed transaction each), until nothing is left.
_MARK_PROVENANCE = """
MATCH (m:Memory)-[r:DERIVED_FROM]->(e)
WHERE r.seq IS NULL AND e.seq IS NOT NULL
WITH m, r, e LIMIT $batch
SET r.tenant = m.tenant, r.user_id = m.user_id, r.memory_id = m.id, r.seq = e.seq
RETURN count(*) AS marked
"""

# Version 2 -> 3. The payload is JSON written by values.memory_fields with sorted keys and
# the default separators, and the status is its only key holding these words as a value (inside
# a JSON string a quote is escaped), so a substring test reads it exactly.
_MARK_GOAL_STATUS = """
MATCH (g:Goal)
WHERE g.status IS NULL
WITH g LIMIT $batch
SET g.status = CASE
    WHEN g.payload CONTAINS '"status": "achieved"' THEN 'achieved'
    WHEN g.payload CONTAINS '"status": "abandoned"' THEN 'abandoned'
    ELSE 'active'
END
RETURN count(*) AS marked
"""

_SET_VERSION = """
MATCH (meta:PersonaMeta {key: 'store'})
WHERE meta.schema_version < $version
SET meta.schema_version = $version
"""

_INDEX_DEFINITIONS = """
SHOW INDEXES YIELD name, type, labelsOrTypes, properties, options
WHERE name IN [$vector, $text]
RETURN name, type, labelsOrTypes AS labels, properties, options
"""

_DROP_TEXT_INDEX: LiteralString = "DROP INDEX persona_memory_text IF EXISTS"
TEXT_INDEX_PROPERTIES = ["search_text", "owner"]

_INDEX_STATES = """
SHOW INDEXES YIELD name, state
WHERE name STARTS WITH 'persona_' AND state <> 'ONLINE'
RETURN name, state
"""

# Codes a lost creation race can end in; anything else is a real error.
_ALREADY_THERE = frozenset(
    {
        "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists",
        "Neo.ClientError.Schema.IndexAlreadyExists",
        "Neo.ClientError.Schema.ConstraintAlreadyExists",
    }
)

INDEX_WAIT_S = 300


async def _create(conn: Connection, statement: LiteralString, params: dict[str, Any]) -> None:
    try:
        await conn.schema(statement, params)
    except ClientError as exc:
        if exc.code not in _ALREADY_THERE:
            raise


async def ensure_schema(conn: Connection, *, model: str, dimension: int) -> None:
    for statement in CONSTRAINTS:
        await _create(conn, statement, {})
    version = await check_meta(conn, model=model, dimension=dimension)
    if await _text_index_outdated(conn):
        # Derived data: an index from an older layout is dropped and built again from the nodes.
        await conn.schema(_DROP_TEXT_INDEX, {})
    for statement in INDEXES:
        await _create(conn, statement, {})
    await _create(conn, VECTOR_INDEX_DDL, {"dimension": dimension})
    await _check_vector_index(conn, model=model, dimension=dimension)
    await _await_indexes(conn)
    if version < SCHEMA_VERSION:
        await _upgrade(conn)


async def _upgrade(conn: Connection) -> None:
    """Bring data written by an older server to the current layout. Every step is idempotent,
    so replicas starting together, or a start interrupted half way, are harmless."""

    for statement in (_MARK_PROVENANCE, _MARK_GOAL_STATUS):

        async def mark(tx: AsyncManagedTransaction, statement: LiteralString = statement) -> int:
            found = await rows(tx, statement, {"batch": _MIGRATION_BATCH})
            return int(found[0]["marked"])

        while await conn.write(mark):
            pass

    async def done(tx: AsyncManagedTransaction) -> None:
        await (await tx.run(_SET_VERSION, {"version": SCHEMA_VERSION})).consume()

    await conn.write(done)


async def check_meta(conn: Connection, *, model: str, dimension: int) -> int:
    """Check the stored embedding model and layout; return the stored schema version."""

    async def work(tx: AsyncManagedTransaction) -> dict[str, Any]:
        params = {
            "model": model,
            "dimension": dimension,
            "version": SCHEMA_VERSION,
            "now": to_us(datetime.now(UTC)),
        }
        return (await rows(tx, _META, params))[0]

    meta = await conn.write(work)
    version = int(meta["version"] or 0)
    if version > SCHEMA_VERSION:
        raise StoreUnavailableError(
            f"the Neo4j database {conn.database!r} has Persona schema version {version}; "
            f"this server knows up to {SCHEMA_VERSION}"
        )
    stored_model, stored_dim = str(meta["model"]), int(meta["dimension"])
    if stored_model != model or stored_dim != dimension:
        raise EmbeddingMismatchError(
            f"the Neo4j database {conn.database!r} at {conn.uri} was built with embedding model "
            f"{stored_model!r} (dimension {stored_dim}), but the configured model is {model!r} "
            f"(dimension {dimension}); configure {stored_model!r} again, or use another "
            "database and re-ingest"
        )
    return version


async def _index_definitions(conn: Connection) -> dict[str, dict[str, Any]]:
    async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
        return await rows(tx, _INDEX_DEFINITIONS, {"vector": VECTOR_INDEX, "text": TEXT_INDEX})

    return {r["name"]: r for r in await conn.read(work)}


async def _text_index_outdated(conn: Connection) -> bool:
    found = (await _index_definitions(conn)).get(TEXT_INDEX)
    return found is not None and (
        found["type"] != "FULLTEXT" or found["properties"] != TEXT_INDEX_PROPERTIES
    )


async def _check_vector_index(conn: Connection, *, model: str, dimension: int) -> None:
    found = (await _index_definitions(conn)).get(VECTOR_INDEX)
    config = (found["options"] or {}).get("indexConfig", {}) if found else {}
    indexed = config.get("vector.dimensions")
    if found is None or found["type"] != "VECTOR" or indexed != dimension:
        raise EmbeddingMismatchError(
            f"the Neo4j index {VECTOR_INDEX!r} in {conn.database!r} is not a vector index of "
            f"dimension {dimension} (found {indexed!r}), which model {model!r} needs; drop the "
            "index or use another database"
        )


async def _await_indexes(conn: Connection) -> None:
    """Block until every Persona index is ONLINE (fresh indexes populate in the background)."""

    async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
        await (await tx.run("CALL db.awaitIndexes($seconds)", {"seconds": INDEX_WAIT_S})).consume()
        return await rows(tx, _INDEX_STATES, {})

    pending = await conn.read(work)
    if pending:
        names = ", ".join(f"{r['name']} ({r['state']})" for r in pending)
        raise StoreUnavailableError(f"Neo4j indexes are not online: {names}")
