"""Conversions between domain models and rows: times, JSON columns, vector blobs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from persona_server.adapters.stores.values import (
    MEMORY_ADAPTER,
    from_us,
    memory_fields,
    opt_from_us,
)
from persona_server.domain.models import (
    Memory,
    MemoryType,
)
from persona_server.ports.graph_store import PROVENANCE_LIMIT

# Fields kept in their own columns (or rebuilt from provenance); everything else a memory type
# adds goes to the JSON payload, so a new field on a model needs no migration.
_COLUMN_FIELDS = frozenset(
    {
        "id",
        "type",
        "text",
        "occurred_at",
        "recorded_at",
        "valid_from",
        "invalid_at",
        "mention_count",
        "cited_count",
        "last_reinforced_at",
        "metadata",
        "source_ids",
        "episode_ids",
        "source_id",
        "seq",
        "extraction",
    }
)

MEMORY_COLUMNS = (
    "m.rowid, m.id, m.type, m.text, m.occurred_at, m.recorded_at, m.valid_from, m.invalid_at, "
    "m.mention_count, m.last_reinforced_at, m.metadata, m.payload, m.source_id, m.seq, "
    "m.extraction, m.cited_count"
)

INSERT_MEMORY = (
    "INSERT INTO memories (user_key, id, type, text, occurred_at, recorded_at, valid_from, "
    "invalid_at, mention_count, cited_count, last_reinforced_at, metadata, payload, merge_key, "
    "subject_id, object_id, source_id, seq, chain_at, extraction, extraction_due) "
    "VALUES (:user_key, :id, :type, :text, :occurred_at, :recorded_at, :valid_from, :invalid_at, "
    ":mention_count, :cited_count, :last_reinforced_at, :metadata, :payload, :merge_key, "
    ":subject_id, :object_id, :source_id, :seq, :chain_at, :extraction, :extraction_due)"
)

UPDATE_MEMORY = (
    "UPDATE memories SET text = :text, occurred_at = :occurred_at, recorded_at = :recorded_at, "
    "valid_from = :valid_from, invalid_at = :invalid_at, mention_count = :mention_count, "
    "cited_count = :cited_count, last_reinforced_at = :last_reinforced_at, "
    "metadata = :metadata, payload = :payload, "
    "merge_key = :merge_key, subject_id = :subject_id, object_id = :object_id, "
    "source_id = :source_id, seq = :seq, chain_at = :chain_at, extraction = :extraction, "
    "extraction_due = :extraction_due WHERE user_key = :user_key AND id = :id"
)


def memory_params(user_key: int, memory: Memory) -> dict[str, Any]:
    return {"user_key": user_key, **memory_fields(memory, _COLUMN_FIELDS)}


def row_to_memory(
    row: sqlite3.Row | Sequence[Any],
    provenance: Mapping[int, tuple[list[str], list[str]]],
) -> Memory:
    """A model from a MEMORY_COLUMNS row; `provenance` maps rowid to (episode ids, sources)."""
    (
        rowid,
        mid,
        mtype,
        text,
        occurred_at,
        recorded_at,
        valid_from,
        invalid_at,
        mention_count,
        last_reinforced_at,
        metadata,
        payload,
        source_id,
        seq,
        extraction,
        cited_count,
    ) = tuple(row)
    data: dict[str, Any] = json.loads(payload)
    data.update(
        id=mid,
        type=mtype,
        text=text,
        occurred_at=opt_from_us(occurred_at),
        recorded_at=from_us(recorded_at),
        valid_from=opt_from_us(valid_from),
        invalid_at=opt_from_us(invalid_at),
        mention_count=mention_count,
        cited_count=cited_count,
        last_reinforced_at=opt_from_us(last_reinforced_at),
        metadata=json.loads(metadata),
    )
    if mtype == MemoryType.EPISODE.value:
        # An episode is its own provenance: Recall credits an episode hit to its source id.
        data.update(
            source_id=source_id,
            seq=seq,
            extraction=json.loads(extraction) if extraction else {},
            episode_ids=[mid],
            source_ids=[source_id],
        )
    else:
        episode_ids, source_ids = provenance.get(rowid, ([], []))
        data.update(episode_ids=episode_ids, source_ids=source_ids)
    return MEMORY_ADAPTER.validate_python(data)


def load_provenance(
    conn: sqlite3.Connection, rowids: Sequence[int]
) -> dict[int, tuple[list[str], list[str]]]:
    """Episode ids and source ids of derived memories, in chain order of the episodes: at most
    `PROVENANCE_LIMIT` per memory, the first ingested (episode rowid order).

    One indexed range read per memory (the primary key is (memory, episode)), so a hub cited by
    100k episodes costs the same as one cited by three.
    """
    out: dict[int, tuple[list[str], list[str]]] = {}
    for memory_rowid in dict.fromkeys(rowids):
        rows = conn.execute(
            "SELECT e.id, e.source_id FROM ("
            " SELECT episode_rowid FROM provenance WHERE memory_rowid = ?"
            " ORDER BY episode_rowid LIMIT ?"
            ") p JOIN memories e ON e.rowid = p.episode_rowid ORDER BY e.chain_at, e.seq",
            (memory_rowid, PROVENANCE_LIMIT),
        ).fetchall()
        if rows:
            out[memory_rowid] = ([r[0] for r in rows], [r[1] for r in rows])
    return out


def load_memories(conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[Memory]:
    """Memories matching `where` (over alias m), in the order the clause gives, with provenance."""
    rows = conn.execute(f"SELECT {MEMORY_COLUMNS} FROM memories m {where}", params).fetchall()
    derived = [r[0] for r in rows if r[2] != MemoryType.EPISODE.value]
    provenance = load_provenance(conn, derived) if derived else {}
    return [row_to_memory(r, provenance) for r in rows]


def vector_blob(row: np.ndarray[Any, Any]) -> bytes:
    return np.ascontiguousarray(row, dtype="<f4").tobytes()


CHUNK = 500

# Reads of a user's memories by a list of ids name the (user_key, id) unique index. Without
# statistics SQLite estimates an equality on `user_key` (and `type`) at a few rows, so for
# `user_key = ? [AND type = ?] AND id IN (...)` it prefers scanning the covering
# `memories_type_recorded` index over one unique look-up per id: every such read then walked all
# of the user's rows, and Ingest slowed with the user's size (write_derived 0.5 ms per episode
# at 5k memories, 3 ms at 30k; 95 items/s at 100k). The name is SQLite's for the table's first
# UNIQUE constraint, `UNIQUE (user_key, id)` (tests/store pins the plans).
BY_ID = "INDEXED BY sqlite_autoindex_memories_1"


def chunks(items: Sequence[Any], size: int = CHUNK) -> list[Sequence[Any]]:
    """Split for IN (...) lists; SQLite caps bound parameters per statement."""
    return [items[i : i + size] for i in range(0, len(items), size)]
