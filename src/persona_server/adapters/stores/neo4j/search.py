"""Search: vector similarity, full-text, and graph expansion.

Vector search (`vector`):
- Users that fit the per-replica cache (vectors.py) get cosine over their own vectors (exact,
  or above 20,000 vectors a projected first pass with exact re-scoring: vector_matrix.py).
- Otherwise the native vector index answers: `db.index.vector.queryNodes` over-fetches
  (`_ann_depth`) and the candidates are checked for tenant, user and filter. Neo4j 5.26 has no
  pre-filtered vector search, so this returns the global nearest neighbours of every user: it
  fills k only when the user owns enough of them, and which candidates it finds is approximate
  (HNSW over quantized vectors; the candidates are re-scored exactly). When fewer than k
  candidates pass, the query falls back to exact cosine in Cypher over the user's own nodes
  (`vector.similarity.cosine`): exact, but O(user's memories). So the index path suits
  single-tenant or dominant users and degrades to a scan for small users in a big shared
  database; the cache path is why that scan is rare. Measured with 10 other users of 1,000
  memories in the database (tests/neo4j/bench_store.py): k=60 takes about 45-75 ms p50 on the
  index path against about 10-12 ms from the cache.
- Neo4j scores cosine as (1 + cos) / 2; hits report plain cosine like the embedded store.

Full-text search (`text`): one full-text index over `search_text` (codec.py) and `owner`
(codec.owner_token) with Lucene's English analyzer (stemming, English stop words). The query
requires the user's owner token, so Lucene only scores that user's documents; every hit is
still checked for tenant and user before it is returned. User text reaches Lucene only as
quoted terms made of letters and digits (`lucene_query`), so no operator, field, wildcard,
range or boost can be injected. BM25 statistics (document frequency, average length) are those
of the whole index rather than of one user's documents, which shifts scores slightly but rarely
the order within a user.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.neo4j.codec import owner_token, user_params
from persona_server.adapters.stores.neo4j.driver import Connection, rows
from persona_server.adapters.stores.neo4j.episodes import WALK_BODY, WALK_CAP, neighbours
from persona_server.adapters.stores.neo4j.filters import FILTER, filter_params
from persona_server.adapters.stores.neo4j.memories import fetch
from persona_server.adapters.stores.neo4j.schema import TEXT_INDEX, VECTOR_INDEX
from persona_server.adapters.stores.neo4j.vectors import VectorCache
from persona_server.adapters.stores.terms import STOP_WORDS
from persona_server.adapters.stores.vector_matrix import prepare_query
from persona_server.domain.models import Memory, MemoryType, UserRef
from persona_server.ports.graph_store import (
    FetchChoice,
    MemoryFilter,
    Neighbours,
    SearchHit,
    Vectors,
)

# Runs of letters and digits: the only characters a term may carry into a Lucene query.
_TOKEN = re.compile(r"[^\W_]+")
_MAX_TERMS = 32
# Lucene's English stop set (EnglishAnalyzer): never indexed, so never worth querying.
# fmt: off
LUCENE_STOP_WORDS = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
        "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
        "these", "they", "this", "to", "was", "will", "with",
    }
)
# fmt: on
_MAX_ANN_DEPTH = 4096

# One row back: the hits that pass (in Lucene's order) and how many rows were ranked, which
# tells whether the surplus ran out before k passed.
_TEXT_RANKED = (
    """
CALL db.index.fulltext.queryNodes($index, $query, {limit: $depth}) YIELD node AS m, score
WITH m, score, (m.tenant = $tenant AND m.user_id = $user_id AND """
    + FILTER
    + """) AS ok
WITH collect(CASE WHEN ok THEN {id: m.id, score: score} END) AS hits, count(*) AS ranked
RETURN hits[..$k] AS hits, ranked
"""
)

_TEXT_FILTERED = (
    """
CALL db.index.fulltext.queryNodes($index, $query) YIELD node AS m, score
WHERE m.tenant = $tenant AND m.user_id = $user_id AND """
    + FILTER
    + """
RETURN m.id AS id, score
ORDER BY score DESC, id
LIMIT $k
"""
)

# The index ranks by quantized vectors (Neo4j 5.23+ quantizes vector indexes by default), so
# each candidate is scored again from its stored float32 vector: exact scores, and an exact
# order among the candidates.
_VECTOR_ANN = (
    """
CALL db.index.vector.queryNodes($index, $depth, $vector) YIELD node AS m
RETURN m.id AS id, vector.similarity.cosine(m.embedding, $vector) AS score,
       (m.tenant = $tenant AND m.user_id = $user_id AND """
    + FILTER
    + ") AS ok"
)

_VECTOR_EXACT = (
    """
MATCH (m:Memory)
WHERE m.tenant = $tenant AND m.user_id = $user_id AND m.embedding IS NOT NULL AND """
    + FILTER
    + """
WITH m, vector.similarity.cosine(m.embedding, $vector) AS score
ORDER BY score DESC, m.id
LIMIT $k
RETURN m.id AS id, score
"""
)

# Neighbours are reached by expanding from the seed: relationship types imply the neighbour's
# type (writes only ever link MENTIONS/SUBJECT/OBJECT to entities and DERIVED_FROM to episodes),
# and leaving labels off the neighbour keeps the planner from seeking a label index of all the
# user's nodes instead of following a few relationships. Tenant and user are still checked.
# Expects `id` bound; binds `m` and one list per kind of neighbour.
_EXPAND_BODY = """
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: id})
CALL (m) {
    OPTIONAL MATCH (m)-[:MENTIONS]->(n)
    WHERE n.tenant = $tenant AND n.user_id = $user_id
    WITH n ORDER BY n.mention_count DESC, n.id LIMIT $limit
    RETURN collect(n.id) AS mentioned
}
CALL (m) {
    OPTIONAL MATCH (d)-[:DERIVED_FROM]->(m)
    WHERE d.tenant = $tenant AND d.user_id = $user_id
    WITH d ORDER BY d.invalid_at IS NOT NULL, d.recorded_at DESC, d.id LIMIT $limit
    RETURN collect(d.id) AS derived
}
CALL (m) {
    OPTIONAL MATCH (f)-[:SUBJECT|OBJECT]->(m)
    WHERE f.tenant = $tenant AND f.user_id = $user_id
    WITH DISTINCT f ORDER BY f.invalid_at IS NOT NULL, f.recorded_at DESC, f.id LIMIT $limit
    RETURN collect(f.id) AS facts
}
CALL (m) {
    OPTIONAL MATCH (e)-[:MENTIONS]->(m)
    WHERE e.tenant = $tenant AND e.user_id = $user_id
    WITH e ORDER BY e.chain_at DESC, e.seq DESC LIMIT $limit
    RETURN collect(e.id) AS mentioning
}
CALL (m) {
    OPTIONAL MATCH (m)-[:DERIVED_FROM]->(e)
    WHERE e.tenant = $tenant AND e.user_id = $user_id
    WITH e ORDER BY e.chain_at DESC, e.seq DESC LIMIT $limit
    RETURN collect(e.id) AS sources
}
CALL (m) {
    OPTIONAL MATCH (m)-[r:SUBJECT|OBJECT]->(n)
    WHERE n.tenant = $tenant AND n.user_id = $user_id
    WITH n, r ORDER BY type(r) DESC
    RETURN collect(n.id) AS ends
}
"""
_EXPAND_COLUMNS = "m.type AS type, mentioned, derived, facts, mentioning, sources, ends"
_EXPAND = "UNWIND $ids AS id" + _EXPAND_BODY + "RETURN id, " + _EXPAND_COLUMNS

# Graph and chain neighbours in one statement (`around`), one row per seed and kind.
_AROUND = (
    "CALL () {\nUNWIND $graph_ids AS id"
    + _EXPAND_BODY
    + "RETURN 'graph' AS kind, id, "
    + _EXPAND_COLUMNS
    + ", [] AS prev, [] AS next\nUNION ALL\nUNWIND $episode_ids AS id"
    + WALK_BODY
    + "RETURN 'chain' AS kind, id, 'episode' AS type, [] AS mentioned, [] AS derived, "
    "[] AS facts, [] AS mentioning, [] AS sources, [] AS ends, prev, next\n}\n"
    "RETURN kind, id, type, mentioned, derived, facts, mentioning, sources, ends, prev, next"
)


def lucene_query(owner: str, text: str) -> str | None:
    """The user's words as a Lucene query confined to `owner`, or None if nothing to search.

    Each term is a run of letters and digits inside double quotes: no character with a meaning
    in Lucene's syntax survives, and quoting keeps words such as AND, OR and NOT plain terms.
    Stop words are dropped unless the query has nothing else (Lucene's own English stop words
    always, since they are not in the index).
    """
    tokens = list(dict.fromkeys(_TOKEN.findall(text.casefold())))
    terms = [t for t in tokens if t not in STOP_WORDS and t not in LUCENE_STOP_WORDS]
    terms = terms or [t for t in tokens if t not in LUCENE_STOP_WORDS]
    if not terms:
        return None
    words = " OR ".join(f'search_text:"{t}"' for t in terms[:_MAX_TERMS])
    return f'owner:"{owner}" AND ({words})'


def _ann_depth(k: int) -> int:
    return min(max(8 * k, 100), _MAX_ANN_DEPTH)


def _cosine(neo4j_score: float) -> float:
    return 2.0 * float(neo4j_score) - 1.0


class Neo4jSearchOps:
    def __init__(self, conn: Connection, cache: VectorCache) -> None:
        self._conn = conn
        self._cache = cache
        self.dimension = 0

    async def vector(
        self, user: UserRef, query: Vectors, k: int, filter: MemoryFilter
    ) -> list[SearchHit]:
        q = prepare_query(query, self.dimension)
        if k <= 0:
            return []
        cached = await self._cache.search(user, q, k, filter)
        if cached is not None:
            return [SearchHit(memory_id, score) for memory_id, score in cached]
        if not np.any(q):
            return []
        params = {
            **user_params(user),
            **filter_params(filter),
            "index": VECTOR_INDEX,
            "vector": q.astype(float).tolist(),
            "k": k,
            "depth": _ann_depth(k),
        }
        return await self._conn.read(_vector_from_index, params, k)

    async def text(
        self, user: UserRef, query: str, k: int, filter: MemoryFilter
    ) -> list[SearchHit]:
        lucene = lucene_query(owner_token(user), query)
        if lucene is None or k <= 0:
            return []
        params = {
            **user_params(user),
            **filter_params(filter),
            "index": TEXT_INDEX,
            "query": lucene,
            "k": k,
            # Rank a small surplus first, so that k fills without materialising every match
            # of a big user: without a narrowing filter only invalidated memories drop out.
            "depth": 2 * k + 32 if _narrows(filter) else k + max(16, k // 4),
        }
        # Two transactions at most: the second only for a selective filter (rare), and each
        # is a consistent read whose hits are checked against the filter again.
        first = (await self._conn.read_one(_TEXT_RANKED, params))[0]
        hits = [SearchHit(h["id"], float(h["score"])) for h in first["hits"]]
        if len(hits) < k and first["ranked"] >= params["depth"]:
            # A selective filter: let the filter run over every match of the user.
            found = await self._conn.read_one(_TEXT_FILTERED, params)
            hits = [SearchHit(r["id"], float(r["score"])) for r in found]
        hits.sort(key=lambda h: (-h.score, h.memory_id))
        return hits[:k]

    async def expand(
        self, user: UserRef, memory_ids: Sequence[str], limit: int
    ) -> dict[str, list[str]]:
        wanted = list(dict.fromkeys(memory_ids))
        if limit <= 0 or not wanted:
            return {}
        params = {**user_params(user), "ids": wanted, "limit": limit}
        return _neighbours_by_type(await self._conn.read_one(_EXPAND, params), limit)

    async def around(
        self,
        user: UserRef,
        *,
        graph_seeds: Sequence[str],
        graph_limit: int,
        episode_seeds: Sequence[str],
        before: int,
        after: int,
        choose: FetchChoice,
    ) -> tuple[Neighbours, dict[str, Memory]]:
        graph_ids = list(dict.fromkeys(graph_seeds)) if graph_limit > 0 else []
        episode_ids = list(dict.fromkeys(episode_seeds))

        before, after = max(before, 0), max(after, 0)

        async def work(tx: AsyncManagedTransaction) -> tuple[Neighbours, dict[str, Memory]]:
            # One transaction: one begin and commit, and the fetch without a second trip.
            if max(before, after) <= WALK_CAP:
                params = {
                    **user_params(user),
                    "graph_ids": graph_ids,
                    "episode_ids": episode_ids,
                    "limit": max(graph_limit, 0),
                    "before": before,
                    "after": after,
                }
                found_rows = await rows(tx, _AROUND, params)
                graph = _neighbours_by_type(
                    [r for r in found_rows if r["kind"] == "graph"], graph_limit
                )
                chain = {
                    r["id"]: [*r["prev"], *r["next"]] for r in found_rows if r["kind"] == "chain"
                }
            else:
                graph = await _expand(tx, user, graph_ids, graph_limit) if graph_ids else {}
                chain = (
                    await neighbours(tx, user, episode_ids, before, after) if episode_ids else {}
                )
            near = Neighbours(graph=graph, chain=chain)
            return near, await fetch(tx, user, choose(near))

        return await self._conn.read(work)


async def _expand(
    tx: AsyncManagedTransaction, user: UserRef, wanted: list[str], limit: int
) -> dict[str, list[str]]:
    params = {**user_params(user), "ids": wanted, "limit": limit}
    return _neighbours_by_type(await rows(tx, _EXPAND, params), limit)


def _narrows(flt: MemoryFilter) -> bool:
    """Whether the filter may drop many of a user's memories (types, metadata, time)."""
    return bool(
        flt.types
        or flt.metadata
        or flt.occurred_from is not None
        or flt.occurred_to is not None
        or flt.as_of is not None
    )


def _neighbours_by_type(records: list[dict[str, Any]], limit: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in records:
        memory_id, mtype = r["id"], r["type"]
        # Same neighbour kinds and priority as the embedded store.
        if mtype == MemoryType.EPISODE.value:
            found = [*r["mentioned"], *r["derived"]]
        elif mtype == MemoryType.ENTITY.value:
            found = [*r["facts"], *r["mentioning"], *r["sources"]]
        elif mtype == MemoryType.FACT.value:
            found = [*r["ends"], *r["sources"]]
        else:
            found = list(r["sources"])
        out[memory_id] = [n for n in dict.fromkeys(found) if n != memory_id][:limit]
    return out


async def _vector_from_index(
    tx: AsyncManagedTransaction, params: dict[str, Any], k: int
) -> list[SearchHit]:
    ranked = await rows(tx, _VECTOR_ANN, params)
    hits = [SearchHit(r["id"], _cosine(r["score"])) for r in ranked if r["ok"]]
    if len(hits) < k:
        found = await rows(tx, _VECTOR_EXACT, params)
        hits = [SearchHit(r["id"], _cosine(r["score"])) for r in found]
    hits.sort(key=lambda h: (-h.score, h.memory_id))
    return hits[:k]
