"""The export reads (`ExportOps`): a user's nodes and edges in keyset pages.

Every page is one indexed range read from its cursor, so a page costs about its own size and
an export holds one page at a time, whatever the user's size. Within one user, episode rowids
grow with `seq` (both follow insertion; SQLite hands out rowids above every existing one), so
"by episode rowid" is ingest order here.
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

from persona_server.adapters.stores.export_cursor import decode, encode
from persona_server.adapters.stores.sqlite.codec import MEMORY_COLUMNS, row_to_memory
from persona_server.adapters.stores.sqlite.connection import Database, read_transaction
from persona_server.adapters.stores.sqlite.users import find_user_key
from persona_server.domain.graph import Edge, EdgeKind
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import EdgePage, Page

_EPISODES = (
    f"SELECT {MEMORY_COLUMNS} FROM memories m "
    "WHERE m.user_key = ? AND m.type = 'episode' AND m.seq > ? ORDER BY m.seq LIMIT ?"
)
_DERIVED = (
    f"SELECT {MEMORY_COLUMNS} FROM memories m "
    "WHERE m.user_key = ? AND (m.recorded_at, m.id) > (?, ?) AND m.type <> 'episode' "
    "ORDER BY m.recorded_at, m.id LIMIT ?"
)
_CHAIN = (
    "SELECT id, chain_at, seq FROM memories "
    "WHERE user_key = ? AND type = 'episode' AND (chain_at, seq) > (?, ?) "
    "ORDER BY chain_at, seq LIMIT ?"
)
_EPISODE_KEYS = (
    "SELECT rowid, id, seq FROM memories "
    "WHERE user_key = ? AND type = 'episode' AND seq > ? ORDER BY seq LIMIT ?"
)
_MENTIONS = (
    "SELECT n.id FROM mentions x JOIN memories n ON n.rowid = x.entity_rowid "
    "WHERE x.episode_rowid = ? ORDER BY n.id"
)
# Provenance of one memory after a point, then of the memories after it: two seeks keep the
# (memory_rowid, episode_rowid) primary key order, which a single OR would lose.
_PROVENANCE_SAME = (
    "SELECT m.id, p.episode_rowid, e.id FROM memories m "
    "JOIN provenance p ON p.memory_rowid = m.rowid JOIN memories e ON e.rowid = p.episode_rowid "
    "WHERE m.user_key = ? AND m.id = ? AND p.episode_rowid > ? ORDER BY p.episode_rowid LIMIT ?"
)
_PROVENANCE_AFTER = (
    "SELECT m.id, p.episode_rowid, e.id FROM memories m "
    "JOIN provenance p ON p.memory_rowid = m.rowid JOIN memories e ON e.rowid = p.episode_rowid "
    "WHERE m.user_key = ? AND m.id > ? ORDER BY m.id, p.episode_rowid LIMIT ?"
)
_FACT_ENDS = {
    EdgeKind.SUBJECT: (
        "SELECT f.id, n.id FROM memories f JOIN memories n "
        "ON n.user_key = f.user_key AND n.id = f.subject_id AND n.type = 'entity' "
        "WHERE f.user_key = ? AND f.type = 'fact' AND f.id > ? ORDER BY f.id LIMIT ?"
    ),
    EdgeKind.OBJECT: (
        "SELECT f.id, n.id FROM memories f JOIN memories n "
        "ON n.user_key = f.user_key AND n.id = f.object_id AND n.type = 'entity' "
        "WHERE f.user_key = ? AND f.type = 'fact' AND f.id > ? ORDER BY f.id LIMIT ?"
    ),
}


class SqliteExportOps:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def nodes(self, user: UserRef, *, cursor: str, limit: int) -> Page:
        phase, at, after_id = decode(cursor, ["e", 0, ""])

        def run(conn: sqlite3.Connection) -> Page:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return Page([], "")
                if phase == "e":
                    rows = conn.execute(_EPISODES, (key, at, limit)).fetchall()
                    memories = [row_to_memory(r, {}) for r in rows]
                    if len(rows) < limit:
                        return Page(memories, encode(["d", -1, ""]))
                    return Page(memories, encode(["e", rows[-1][13], ""]))
                rows = conn.execute(_DERIVED, (key, at, after_id, limit)).fetchall()
            memories = [row_to_memory(r, {}) for r in rows]
            if len(rows) < limit:
                return Page(memories, "")
            return Page(memories, encode(["d", rows[-1][5], rows[-1][1]]))

        return await self._db.read(run)

    async def edges(self, user: UserRef, kind: EdgeKind, *, cursor: str, limit: int) -> EdgePage:
        def run(conn: sqlite3.Connection) -> EdgePage:
            with read_transaction(conn):
                key = find_user_key(conn, user)
                if key is None:
                    return EdgePage([], "")
                if kind is EdgeKind.NEXT:
                    return _next(conn, key, cursor, limit)
                if kind is EdgeKind.MENTIONS:
                    return _mentions(conn, key, cursor, limit)
                if kind is EdgeKind.DERIVED_FROM:
                    return _derived_from(conn, key, cursor, limit)
                return _fact_ends(conn, key, kind, cursor, limit)

        return await self._db.read(run)


def _next(conn: sqlite3.Connection, key: int, cursor: str, limit: int) -> EdgePage:
    # The chain is the (chain_at, seq) order itself; an edge is two neighbours in it. The
    # cursor is the position of the last edge's first episode, so the page starts at its second.
    at, seq = decode(cursor, [-(2**62), -1])
    rows = conn.execute(_CHAIN, (key, at, seq, limit + 1)).fetchall()
    edges = [Edge(EdgeKind.NEXT, a[0], b[0]) for a, b in itertools.pairwise(rows)]
    if len(rows) <= limit:
        return EdgePage(edges, "")
    last = rows[limit - 1]
    return EdgePage(edges, encode([last[1], last[2]]))


def _mentions(conn: sqlite3.Connection, key: int, cursor: str, limit: int) -> EdgePage:
    # Pages of episodes (an episode names a bounded number of entities: one text's worth).
    (after_seq,) = decode(cursor, [0])
    episodes = conn.execute(_EPISODE_KEYS, (key, after_seq, limit)).fetchall()
    edges = [
        Edge(EdgeKind.MENTIONS, episode_id, entity_id)
        for rowid, episode_id, _ in episodes
        for (entity_id,) in conn.execute(_MENTIONS, (rowid,))
    ]
    if len(episodes) < limit:
        return EdgePage(edges, "")
    return EdgePage(edges, encode([episodes[-1][2]]))


def _derived_from(conn: sqlite3.Connection, key: int, cursor: str, limit: int) -> EdgePage:
    after_id, after_rowid = decode(cursor, ["", -1])
    rows: list[Any] = []
    if after_id:
        rows = conn.execute(_PROVENANCE_SAME, (key, after_id, after_rowid, limit)).fetchall()
    if len(rows) < limit:
        rows += conn.execute(_PROVENANCE_AFTER, (key, after_id, limit - len(rows))).fetchall()
    edges = [Edge(EdgeKind.DERIVED_FROM, mid, eid) for mid, _, eid in rows]
    if len(rows) < limit:
        return EdgePage(edges, "")
    return EdgePage(edges, encode([rows[-1][0], rows[-1][1]]))


def _fact_ends(
    conn: sqlite3.Connection, key: int, kind: EdgeKind, cursor: str, limit: int
) -> EdgePage:
    (after_id,) = decode(cursor, [""])
    rows = conn.execute(_FACT_ENDS[kind], (key, after_id, limit)).fetchall()
    edges = [Edge(kind, fid, nid) for fid, nid in rows]
    if len(rows) < limit:
        return EdgePage(edges, "")
    return EdgePage(edges, encode([rows[-1][0]]))
