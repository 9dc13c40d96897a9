"""The export reads (`ExportOps`): a user's nodes and relationships in keyset pages.

Every page walks an index in order from its cursor and stops after `limit` entries, so a page
costs about its own size and an export holds one page at a time, whatever the user's size.
Tuple positions are two seeks (the same first key and a greater second one; a greater first
key), as in ListMemories: a single OR would make the planner sort everything. Relationships are
read as stored (NEXT, MENTIONS, DERIVED_FROM, SUBJECT, OBJECT), not recomputed.
"""

from __future__ import annotations

from typing import Any, LiteralString

from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.export_cursor import decode, encode
from persona_server.adapters.stores.neo4j.codec import MEMORY_PROJECTION, to_memory, user_params
from persona_server.adapters.stores.neo4j.driver import Connection, rows
from persona_server.domain.graph import Edge, EdgeKind
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import EdgePage, Page

_EPISODES = (
    """
MATCH (m:Episode)
WHERE m.tenant = $tenant AND m.user_id = $user_id AND m.seq > $after_seq
WITH m ORDER BY m.tenant, m.user_id, m.seq LIMIT $limit
RETURN """
    + MEMORY_PROJECTION
    + " AS m"
)

_DERIVED = (
    """
CALL () {
    MATCH (m:Memory)
    WHERE m.tenant = $tenant AND m.user_id = $user_id
      AND m.recorded_at = $after_at AND m.id > $after_id AND m.type <> 'episode'
    RETURN m ORDER BY m.tenant, m.user_id, m.recorded_at, m.id LIMIT $limit
  UNION ALL
    MATCH (m:Memory)
    WHERE m.tenant = $tenant AND m.user_id = $user_id
      AND m.recorded_at > $after_at AND m.id IS NOT NULL AND m.type <> 'episode'
    RETURN m ORDER BY m.tenant, m.user_id, m.recorded_at, m.id LIMIT $limit
}
WITH m ORDER BY m.recorded_at, m.id LIMIT $limit
RETURN """
    + MEMORY_PROJECTION
    + " AS m"
)

# Episodes in chain order after a position, each with the episode its NEXT points to.
_NEXT = """
CALL () {
    MATCH (a:Episode)
    USING INDEX a:Episode(tenant, user_id, chain_at, seq)
    WHERE a.tenant = $tenant AND a.user_id = $user_id
      AND a.chain_at = $after_at AND a.seq > $after_seq
    RETURN a ORDER BY a.tenant, a.user_id, a.chain_at, a.seq LIMIT $limit
  UNION ALL
    MATCH (a:Episode)
    USING INDEX a:Episode(tenant, user_id, chain_at, seq)
    WHERE a.tenant = $tenant AND a.user_id = $user_id
      AND a.chain_at > $after_at AND a.seq IS NOT NULL
    RETURN a ORDER BY a.tenant, a.user_id, a.chain_at, a.seq LIMIT $limit
}
WITH a ORDER BY a.chain_at, a.seq LIMIT $limit
OPTIONAL MATCH (a)-[:NEXT]->(b)
WHERE b.tenant = $tenant AND b.user_id = $user_id
RETURN a.id AS from_id, b.id AS to_id, a.chain_at AS chain_at, a.seq AS seq
ORDER BY chain_at, seq
"""

# A page of episodes in ingest order, each with the entities it mentions (one row per
# mention, or one with a null entity).
_MENTIONS = """
MATCH (e:Episode)
WHERE e.tenant = $tenant AND e.user_id = $user_id AND e.seq > $after_seq
WITH e ORDER BY e.tenant, e.user_id, e.seq LIMIT $limit
OPTIONAL MATCH (e)-[:MENTIONS]->(n)
WHERE n.tenant = $tenant AND n.user_id = $user_id
RETURN e.id AS from_id, n.id AS to_id, e.seq AS seq
ORDER BY seq, to_id
"""

# Provenance links in (memory id, episode seq) order, from the relationship index that also
# serves the first links of a read (codec.PROVENANCE_SUBQUERY).
_DERIVED_FROM = """
CALL () {
    MATCH ()-[r:DERIVED_FROM]->(e)
    USING INDEX r:DERIVED_FROM(tenant, user_id, memory_id, seq)
    WHERE r.tenant = $tenant AND r.user_id = $user_id
      AND r.memory_id = $after_id AND r.seq > $after_seq
    RETURN r, e ORDER BY r.tenant, r.user_id, r.memory_id, r.seq LIMIT $limit
  UNION ALL
    MATCH ()-[r:DERIVED_FROM]->(e)
    USING INDEX r:DERIVED_FROM(tenant, user_id, memory_id, seq)
    WHERE r.tenant = $tenant AND r.user_id = $user_id
      AND r.memory_id > $after_id AND r.seq IS NOT NULL
    RETURN r, e ORDER BY r.tenant, r.user_id, r.memory_id, r.seq LIMIT $limit
}
WITH r, e ORDER BY r.memory_id, r.seq LIMIT $limit
RETURN r.memory_id AS from_id, e.id AS to_id, r.seq AS seq
"""

_FACTS_PAGE = """
MATCH (f:Memory)
WHERE f.tenant = $tenant AND f.user_id = $user_id AND f.id > $after_id AND f:Fact
WITH f ORDER BY f.tenant, f.user_id, f.id LIMIT $limit
"""
_FACT_ENDS: dict[EdgeKind, LiteralString] = {
    EdgeKind.SUBJECT: _FACTS_PAGE
    + """
OPTIONAL MATCH (f)-[:SUBJECT]->(n)
WHERE n.tenant = $tenant AND n.user_id = $user_id
RETURN f.id AS from_id, n.id AS to_id
ORDER BY from_id
""",
    EdgeKind.OBJECT: _FACTS_PAGE
    + """
OPTIONAL MATCH (f)-[:OBJECT]->(n)
WHERE n.tenant = $tenant AND n.user_id = $user_id
RETURN f.id AS from_id, n.id AS to_id
ORDER BY from_id
""",
}


class Neo4jExportOps:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def nodes(self, user: UserRef, *, cursor: str, limit: int) -> Page:
        phase, at, after_id = decode(cursor, ["e", 0, ""])
        params: dict[str, Any] = {**user_params(user), "limit": limit}

        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            if phase == "e":
                return await rows(tx, _EPISODES, {**params, "after_seq": at})
            return await rows(tx, _DERIVED, {**params, "after_at": at, "after_id": after_id})

        found = [r["m"] for r in await self._conn.read(work)]
        memories = [to_memory(props, [], []) for props in found]
        if len(found) < limit:
            return Page(memories, encode(["d", -1, ""]) if phase == "e" else "")
        last = found[-1]
        if phase == "e":
            return Page(memories, encode(["e", last["seq"], ""]))
        return Page(memories, encode(["d", last["recorded_at"], last["id"]]))

    async def edges(self, user: UserRef, kind: EdgeKind, *, cursor: str, limit: int) -> EdgePage:
        params: dict[str, Any] = {**user_params(user), "limit": limit}
        statement: LiteralString
        if kind is EdgeKind.NEXT:
            at, seq = decode(cursor, [-(2**62), -1])
            statement, params = _NEXT, {**params, "after_at": at, "after_seq": seq}
        elif kind is EdgeKind.MENTIONS:
            (seq,) = decode(cursor, [0])
            statement, params = _MENTIONS, {**params, "after_seq": seq}
        elif kind is EdgeKind.DERIVED_FROM:
            after_id, seq = decode(cursor, ["", -1])
            statement, params = _DERIVED_FROM, {**params, "after_id": after_id, "after_seq": seq}
        else:
            (after_id,) = decode(cursor, [""])
            statement, params = _FACT_ENDS[kind], {**params, "after_id": after_id}

        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await rows(tx, statement, params)

        found = await self._conn.read(work)
        edges = [Edge(kind, r["from_id"], r["to_id"]) for r in found if r["to_id"] is not None]
        # Scanned rows, not edges, decide the end: a page of episodes without mentions (or of
        # facts without a subject entity) is still a full page.
        scanned = len({r["from_id"] for r in found}) if kind is EdgeKind.MENTIONS else len(found)
        if scanned < limit:
            return EdgePage(edges, "")
        last = found[-1]
        if kind is EdgeKind.NEXT:
            return EdgePage(edges, encode([last["chain_at"], last["seq"]]))
        if kind is EdgeKind.MENTIONS:
            return EdgePage(edges, encode([last["seq"]]))
        if kind is EdgeKind.DERIVED_FROM:
            return EdgePage(edges, encode([last["from_id"], last["seq"]]))
        return EdgePage(edges, encode([last["from_id"]]))
