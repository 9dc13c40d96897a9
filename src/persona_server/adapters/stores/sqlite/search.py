"""Search: exact vector similarity, BM25 full-text, and graph expansion."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import Sequence

import Stemmer

from persona_server.adapters.stores.sqlite.connection import read_transaction
from persona_server.adapters.stores.sqlite.context import StoreContext
from persona_server.adapters.stores.sqlite.filters import filter_sql
from persona_server.adapters.stores.sqlite.users import cache_key, find_user_key
from persona_server.adapters.stores.sqlite.vectors import load_user_vectors
from persona_server.adapters.stores.terms import STOP_WORDS
from persona_server.adapters.stores.vector_matrix import UserVectors, prepare_query
from persona_server.domain.models import Memory, MemoryType, UserRef
from persona_server.ports.graph_store import (
    EpisodeOps,
    FetchChoice,
    MemoryFilter,
    MemoryOps,
    Neighbours,
    SearchHit,
    Vectors,
)

# Same notion of a token as FTS5's unicode61 tokenizer: runs of letters and digits.
_TOKEN = re.compile(r"[^\W_]+")
_MAX_TERMS = 32
# Beyond this many rows the rank-then-filter step is no cheaper than filtering in the join.
_MAX_PREFETCH = 5000
# BM25 in FTS5 costs about a microsecond per row that matches any term. A term estimated to be
# in more than this many of the user's rows is left out of the query, unless every term is:
# at that frequency its IDF is low (about ln 50 in 100k rows, against ln 10,000 for a rare
# word), so it changes the ranking little but costs most of the time (measured at 100k
# memories with bench/latency.py's queries, see BENCHMARKS.md). A user with fewer rows than
# this never has a term left out.
COMMON_TERM_ROWS = 2000


def query_terms(text: str) -> list[str]:
    """The words of a query worth searching for: stop words are dropped unless the query has
    nothing else."""
    tokens = list(dict.fromkeys(_TOKEN.findall(text.casefold())))
    return ([t for t in tokens if t not in STOP_WORDS] or tokens)[:_MAX_TERMS]


def fts_query(text: str) -> str | None:
    """Plain words as an OR of quoted terms, or None when there is nothing to search for.

    Every term is a quoted string made only of letters and digits, so no user input can reach
    the FTS5 query syntax (operators, column filters, NEAR, prefix stars).
    """
    return _or_terms(query_terms(text))


def _or_terms(terms: Sequence[str]) -> str | None:
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


_stemmers = threading.local()


def _stem(words: Sequence[str]) -> list[str]:
    # The same Porter algorithm as FTS5's porter tokenizer, so a stem is a vocabulary term.
    # Stemmer objects are not thread-safe: one per reader thread.
    stemmer = getattr(_stemmers, "porter", None)
    if stemmer is None:
        stemmer = _stemmers.porter = Stemmer.Stemmer("porter")
    return list(stemmer.stemWords(list(words)))


def without_common_terms(conn: sqlite3.Connection, key: int, terms: list[str]) -> list[str]:
    """`terms` less those estimated to be in more than `COMMON_TERM_ROWS` of the user's rows (all
    but the rarest, if every one is). The index counts rows across users, so a term's count is
    scaled by the user's share of the rows; one look-up in the index's vocabulary, none for a
    user too small to hold such a term."""
    if len(terms) < 2:
        return terms
    user_rows = conn.execute("SELECT episode_seq FROM users WHERE key = ?", (key,)).fetchone()
    if user_rows is None or user_rows[0] <= COMMON_TERM_ROWS:
        return terms
    all_rows = conn.execute("SELECT max(rowid) FROM memories").fetchone()[0] or 1
    share = min(1.0, user_rows[0] / all_rows)
    stems = _stem(terms)
    marks = ",".join("?" * len(stems))
    counts = dict(
        conn.execute(
            f"SELECT term, doc FROM memories_fts_vocab WHERE term IN ({marks})", stems
        ).fetchall()
    )
    rows = [share * counts.get(stem, 0) for stem in stems]
    kept = [t for t, n in zip(terms, rows, strict=True) if n <= COMMON_TERM_ROWS]
    return kept or [terms[rows.index(min(rows))]]


class SqliteSearchOps:
    def __init__(self, ctx: StoreContext, episodes: EpisodeOps, memories: MemoryOps) -> None:
        self._ctx = ctx
        self._episodes = episodes
        self._memories = memories

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
        # Local reads: the two neighbour reads side by side on the reader pool, then the fetch;
        # each read is consistent on its own.
        graph, chain = await asyncio.gather(
            self.expand(user, graph_seeds, graph_limit),
            self._episodes.chain_neighbours(user, episode_seeds, before=before, after=after),
        )
        found = Neighbours(graph=graph, chain=chain)
        return found, await self._memories.get_many(user, choose(found))

    async def vector(
        self, user: UserRef, query: Vectors, k: int, filter: MemoryFilter
    ) -> list[SearchHit]:
        q = prepare_query(query, self._ctx.dimension)
        if k <= 0:
            return []

        def run(conn: sqlite3.Connection) -> list[SearchHit]:
            entry = self._ctx.cache.get(cache_key(user), lambda: self._load(conn, user))
            if entry is None:
                return []
            with entry.lock:
                found = entry.search(q, k, filter)
            return [SearchHit(memory_id, score) for memory_id, score in found]

        return await self._ctx.db.read(run)

    def _load(self, conn: sqlite3.Connection, user: UserRef) -> UserVectors | None:
        with read_transaction(conn):
            key = find_user_key(conn, user)
            if key is None:
                return None
            return load_user_vectors(conn, key, self._ctx.dimension)

    async def text(
        self, user: UserRef, query: str, k: int, filter: MemoryFilter
    ) -> list[SearchHit]:
        words = query_terms(query)
        if not words or k <= 0:
            return []
        where, params = filter_sql(filter)

        def run(conn: sqlite3.Connection) -> list[SearchHit]:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return []
                terms = _or_terms(without_common_terms(conn, key, words))
                # The owner term restricts the match to this user inside the index, so other
                # users' rows are never scored; the filter step re-checks the user anyway.
                match = f'owner : "u{key}" AND text : ({terms})'
                rows = _ranked_then_filtered(conn, match, key, where, params, k)
                if rows is None:
                    rows = conn.execute(
                        "SELECT m.id, bm25(memories_fts, 1.0, 0.0) AS score FROM memories_fts "
                        "JOIN memories m ON m.rowid = memories_fts.rowid "
                        f"WHERE memories_fts MATCH ? AND m.user_key = ?{where} "
                        "ORDER BY score, m.rowid LIMIT ?",
                        [match, key, *params, k],
                    ).fetchall()
            # bm25() is lower-is-better; the port wants higher-is-better.
            return [SearchHit(memory_id, -score) for memory_id, score in rows]

        return await self._ctx.db.read(run)

    async def expand(
        self, user: UserRef, memory_ids: Sequence[str], limit: int
    ) -> dict[str, list[str]]:
        if limit <= 0:
            return {}

        def run(conn: sqlite3.Connection) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return out
                for memory_id in dict.fromkeys(memory_ids):
                    found = _neighbours(conn, key, memory_id, limit)
                    if found is not None:
                        out[memory_id] = found
            return out

        return await self._ctx.db.read(run)


def _ranked_then_filtered(
    conn: sqlite3.Connection,
    match: str,
    key: int,
    where: str,
    params: list[object],
    k: int,
) -> list[tuple[str, float]] | None:
    """Top k by ranking the index alone, then filtering the few best rows.

    Joining every match to `memories` before sorting costs as much as the ranking itself when
    a query matches a large share of a big user's rows. Most filters (the default one only drops
    invalidated facts) keep most rows, so ranking a small surplus and filtering it afterwards
    almost always fills k. Returns None when it cannot (a selective filter), and the caller
    falls back to filtering in the join.
    """
    depth = 2 * k + 32
    if depth > _MAX_PREFETCH:
        return None
    ranked = conn.execute(
        "SELECT rowid, bm25(memories_fts, 1.0, 0.0) AS score FROM memories_fts "
        "WHERE memories_fts MATCH ? ORDER BY score, rowid LIMIT ?",
        [match, depth],
    ).fetchall()
    if not ranked:
        return []
    marks = ",".join("?" * len(ranked))
    passed = dict(
        conn.execute(
            f"SELECT m.rowid, m.id FROM memories m WHERE m.rowid IN ({marks}) "
            f"AND m.user_key = ?{where}",
            [*(r[0] for r in ranked), key, *params],
        ).fetchall()
    )
    hits = [(passed[rowid], score) for rowid, score in ranked if rowid in passed]
    if len(hits) >= k or len(ranked) < depth:
        return hits[:k]
    return None


# Each neighbour query takes (rowid or id, limit); ordering inside a kind puts the likeliest
# useful neighbour first: entities by how often they are mentioned, facts still valid before
# invalidated ones, episodes newest first.
_MENTIONED_ENTITIES = (
    "SELECT e.id FROM mentions x JOIN memories e ON e.rowid = x.entity_rowid "
    "WHERE x.episode_rowid = ? ORDER BY e.mention_count DESC, e.id LIMIT ?"
)
_MENTIONING_EPISODES = (
    "SELECT e.id FROM mentions x JOIN memories e ON e.rowid = x.episode_rowid "
    "WHERE x.entity_rowid = ? ORDER BY e.chain_at DESC, e.seq DESC LIMIT ?"
)
_DERIVED = (
    "SELECT d.id FROM provenance p JOIN memories d ON d.rowid = p.memory_rowid "
    "WHERE p.episode_rowid = ? ORDER BY d.invalid_at IS NOT NULL, d.recorded_at DESC, d.id "
    "LIMIT ?"
)
_SOURCES = (
    "SELECT e.id FROM provenance p JOIN memories e ON e.rowid = p.episode_rowid "
    "WHERE p.memory_rowid = ? ORDER BY e.chain_at DESC, e.seq DESC LIMIT ?"
)
_FACTS_OF = (
    "SELECT id FROM ("
    "SELECT id, invalid_at, recorded_at FROM memories WHERE user_key = :key AND subject_id = :id "
    "UNION "
    "SELECT id, invalid_at, recorded_at FROM memories WHERE user_key = :key AND object_id = :id"
    ") ORDER BY invalid_at IS NOT NULL, recorded_at DESC, id LIMIT :limit"
)
_ENTITIES_BY_ID = "SELECT id FROM memories WHERE user_key = ? AND type = 'entity' AND id = ?"


def _neighbours(conn: sqlite3.Connection, key: int, memory_id: str, limit: int) -> list[str] | None:
    row = conn.execute(
        "SELECT rowid, type, subject_id, object_id FROM memories WHERE user_key = ? AND id = ?",
        (key, memory_id),
    ).fetchone()
    if row is None:
        return None
    rowid, mtype, subject_id, object_id = row
    found: list[str] = []

    def take(sql: str, params: Sequence[object] | dict[str, object]) -> None:
        found.extend(r[0] for r in conn.execute(sql, params))

    if mtype == MemoryType.EPISODE.value:
        take(_MENTIONED_ENTITIES, (rowid, limit))
        take(_DERIVED, (rowid, limit))
    elif mtype == MemoryType.ENTITY.value:
        take(_FACTS_OF, {"key": key, "id": memory_id, "limit": limit})
        take(_MENTIONING_EPISODES, (rowid, limit))
        take(_SOURCES, (rowid, limit))
    else:
        if mtype == MemoryType.FACT.value:
            for end in (subject_id, object_id):
                if end:
                    take(_ENTITIES_BY_ID, (key, end))
        take(_SOURCES, (rowid, limit))
    unique = [n for n in dict.fromkeys(found) if n != memory_id]
    return unique[:limit]
