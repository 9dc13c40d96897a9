"""Deletion rules that keep the graph consistent; run inside the caller's write transaction.

- An episode that goes away (deleted, or replaced by new text) takes with it the memories derived
  only from it; memories also derived from other episodes just lose it from their provenance.
- An entity that goes away takes the facts about it (as subject or object): a fact whose
  end is gone cannot be stated any more.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from persona_server.adapters.stores.sqlite.changes import ChangeLog
from persona_server.adapters.stores.sqlite.codec import chunks
from persona_server.domain.models import ChangeKind, MemoryType


def detach_episode(
    conn: sqlite3.Connection, user_key: int, episode_rowid: int, changes: ChangeLog
) -> list[str]:
    """Remove what the episode contributed; returns ids of the memories deleted as a result."""
    derived = conn.execute(
        "SELECT m.rowid, m.id, m.type FROM provenance p "
        "JOIN memories m ON m.rowid = p.memory_rowid WHERE p.episode_rowid = ?",
        (episode_rowid,),
    ).fetchall()
    conn.execute("DELETE FROM provenance WHERE episode_rowid = ?", (episode_rowid,))
    conn.execute("DELETE FROM mentions WHERE episode_rowid = ?", (episode_rowid,))
    orphans: list[int] = []
    for rowid, memory_id, memory_type in derived:
        left = conn.execute(
            "SELECT 1 FROM provenance WHERE memory_rowid = ? LIMIT 1", (rowid,)
        ).fetchone()
        if left is None:
            orphans.append(rowid)
        else:
            changes.add(ChangeKind.UPDATED, memory_id, memory_type)
    return delete_rows(conn, user_key, orphans, changes)


def delete_rows(
    conn: sqlite3.Connection, user_key: int, rowids: Sequence[int], changes: ChangeLog
) -> list[str]:
    """Delete memories by rowid plus the facts about deleted entities; returns deleted ids."""
    if not rowids:
        return []
    victims: dict[int, tuple[str, str]] = {}
    for chunk in chunks(rowids):
        marks = ",".join("?" * len(chunk))
        for rowid, memory_id, memory_type in conn.execute(
            f"SELECT rowid, id, type FROM memories WHERE rowid IN ({marks}) AND user_key = ?",
            [*chunk, user_key],
        ):
            victims[rowid] = (memory_id, memory_type)
    entity_ids = [mid for mid, mtype in victims.values() if mtype == MemoryType.ENTITY.value]
    for chunk in chunks(entity_ids):
        marks = ",".join("?" * len(chunk))
        for rowid, memory_id, memory_type in conn.execute(
            "SELECT rowid, id, type FROM memories WHERE user_key = ? AND type = 'fact' "
            f"AND (subject_id IN ({marks}) OR object_id IN ({marks}))",
            [user_key, *chunk, *chunk],
        ):
            victims.setdefault(rowid, (memory_id, memory_type))
    ordered = list(victims)
    for chunk in chunks(ordered):
        marks = ",".join("?" * len(chunk))
        # Vectors, provenance, mentions and names go by FK cascade, FTS rows by trigger.
        conn.execute(f"DELETE FROM memories WHERE rowid IN ({marks})", chunk)
    for rowid in ordered:
        memory_id, memory_type = victims[rowid]
        changes.add(ChangeKind.DELETED, memory_id, memory_type)
    return [victims[r][0] for r in ordered]
