"""Deletion rules that keep the graph consistent; run inside the caller's write transaction.

- An episode that goes away (deleted, or replaced by new text) takes with it the memories derived
  only from it; memories also derived from other episodes just lose it from their provenance.
- An entity that goes away takes the facts about it (as subject or object): a fact whose
  end is gone cannot be stated any more.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from persona_server.adapters.stores.sqlite.changes import ChangeLog
from persona_server.adapters.stores.sqlite.codec import chunks
from persona_server.domain.models import ChangeKind, MemoryType


def detach_episode(
    conn: sqlite3.Connection, user_key: int, episode_rowid: int, changes: ChangeLog
) -> list[str]:
    """Remove what the episode contributed; returns ids of the memories deleted as a result."""
    return detach_episodes(conn, user_key, [episode_rowid], changes).deleted


@dataclass(frozen=True)
class Detached:
    deleted: list[str]  # derived only from the episodes: deleted
    kept: list[str]  # also derived from another episode: kept, minus the links


def detach_episodes(
    conn: sqlite3.Connection, user_key: int, episode_rowids: Sequence[int], changes: ChangeLog
) -> Detached:
    """Remove what the episodes contributed, all at once (a memory supported by two of them
    is an orphan, not an update then a delete). A kept memory loses one mention per link
    removed (never below 1): the count must not keep testifying to a deleted episode."""
    removed: dict[int, list[Any]] = {}
    for chunk in chunks(episode_rowids):
        marks = ",".join("?" * len(chunk))
        for rowid, memory_id, memory_type, links in conn.execute(
            "SELECT m.rowid, m.id, m.type, count(*) FROM provenance p "
            "JOIN memories m ON m.rowid = p.memory_rowid "
            f"WHERE p.episode_rowid IN ({marks}) GROUP BY m.rowid",
            chunk,
        ):
            entry = removed.setdefault(rowid, [memory_id, memory_type, 0])
            entry[2] += links
        conn.execute(f"DELETE FROM provenance WHERE episode_rowid IN ({marks})", chunk)
        conn.execute(f"DELETE FROM mentions WHERE episode_rowid IN ({marks})", chunk)
    orphans: list[int] = []
    kept: list[str] = []
    for rowid, (memory_id, memory_type, links) in removed.items():
        left = conn.execute(
            "SELECT 1 FROM provenance WHERE memory_rowid = ? LIMIT 1", (rowid,)
        ).fetchone()
        if left is None:
            orphans.append(rowid)
            continue
        conn.execute(
            "UPDATE memories SET mention_count = max(1, mention_count - ?) WHERE rowid = ?",
            (links, rowid),
        )
        changes.add(ChangeKind.UPDATED, memory_id, memory_type)
        kept.append(memory_id)
    return Detached(delete_rows(conn, user_key, orphans, changes), kept)


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
