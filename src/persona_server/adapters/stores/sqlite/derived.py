"""Extraction's derived-memory writes on SQLite: one `write_derived` call, one transaction.

A call holds one `DerivedWrite` per episode of an Ingest batch, and the writes overlap: the
user's own entity, a friend or a running goal is touched by most episodes of a batch, and each
write carries it with its provenance (up to PROVENANCE_LIMIT episode ids). Measured on
`bench/latency.py`'s stream, a batch of 100 episodes carried 145 memory rows for 27 memories
and 4,026 provenance links for 468. Writing each one as it came made the derived writes a tenth
of ingest's wall time; `DerivedBatch` keeps what the transaction has already written and
looked up, and skips what would write the same row again. The rows, links and change-log
entries it leaves are the ones the writes, applied one by one, would have left (the port's
semantics, tests/store/test_derived_batches.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from persona_server.adapters.stores.sqlite.changes import ChangeLog
from persona_server.adapters.stores.sqlite.codec import (
    BY_ID,
    INSERT_MEMORY,
    UPDATE_MEMORY,
    chunks,
    memory_params,
    vector_blob,
)
from persona_server.adapters.stores.sqlite.episodes import UPSERT_VECTOR, set_extraction_status
from persona_server.adapters.stores.values import entity_names, to_us
from persona_server.adapters.stores.vector_matrix import VectorRow
from persona_server.domain.models import ChangeKind, Entity, Memory
from persona_server.ports.graph_store import DerivedWrite

Vector = npt.NDArray[np.float32]


class DerivedBatch:
    """The state of one `write_derived` transaction for one user (`key`)."""

    def __init__(self, conn: sqlite3.Connection, key: int, changes: ChangeLog) -> None:
        self._conn = conn
        self._key = key
        self._changes = changes
        self._rowids: dict[str, int] = {}  # memory id -> rowid, as read or written
        self._types: dict[str, str] = {}
        self._written: dict[str, dict[str, object]] = {}  # the row this transaction wrote
        self._vectors: dict[str, Vector] = {}
        self._episodes: dict[str, int | None] = {}  # episode id -> rowid, None = not one
        self._entities: dict[str, int | None] = {}
        self._provenance: set[tuple[int, int]] = set()
        self._mentions: set[tuple[int, int]] = set()
        # What the vector cache must learn once the transaction commits, in write order.
        self.upserts: list[VectorRow] = []

    def prefetch_episodes(self, writes: Iterable[tuple[DerivedWrite, list[Memory]]]) -> None:
        """Look up every episode the writes name (their own and their memories' provenance)
        in one pass instead of once per write."""
        ids = {w.episode_id for w, _ in writes}
        ids.update(eid for _, memories in writes for m in memories for eid in m.episode_ids)
        self._episode_rowids(sorted(ids))

    def write(self, write: DerivedWrite, memories: list[Memory], vecs: dict[str, Vector]) -> None:
        episode_rowid = self._episode_rowids([write.episode_id]).get(write.episode_id)
        if episode_rowid is None:
            # The episode was deleted while it was being extracted: what it yielded has no
            # provenance to hang on, so it is dropped rather than resurrected.
            return
        self._read_known([m.id for m in memories])
        for m in memories:
            known = self._types.get(m.id)
            if known is not None and known != m.type.value:
                raise ValueError(f"memory {m.id} is a {known}, cannot overwrite it as {m.type}")

        params = [memory_params(self._key, m) for m in memories]
        # A row this transaction already wrote with the same values is not written again: the
        # writes of one batch carry the same hub memories over and over.
        changed = [p for p in params if self._written.get(p["id"]) != p]
        inserts = [p for p in changed if p["id"] not in self._rowids]
        updates = [p for p in changed if p["id"] in self._rowids]
        if inserts:
            self._conn.executemany(INSERT_MEMORY, inserts)
        if updates:
            self._conn.executemany(UPDATE_MEMORY, updates)
        self._read_known([p["id"] for p in inserts])  # the new rows' rowids
        for p in changed:
            self._written[p["id"]] = p
            self._types[p["id"]] = str(p["type"])
        for p in inserts:
            # Looked up as "no such entity" earlier in the batch, perhaps: not any more.
            self._entities.pop(str(p["id"]), None)
        changed_ids = {p["id"] for p in changed}
        inserted_ids = {p["id"] for p in inserts}

        entities = [m for m in memories if isinstance(m, Entity) and m.id in changed_ids]
        for entity in entities:
            self._conn.execute(
                "DELETE FROM entity_names WHERE entity_rowid = ?", (self._rowids[entity.id],)
            )
        self._conn.executemany(
            "INSERT INTO entity_names (user_key, name, entity_rowid) VALUES (?, ?, ?)",
            [(self._key, n, self._rowids[e.id]) for e in entities for n in sorted(entity_names(e))],
        )

        new_vectors = [
            (m.id, vecs[m.id])
            for m in memories
            if m.id in vecs
            and (m.id not in self._vectors or not np.array_equal(self._vectors[m.id], vecs[m.id]))
        ]
        self._conn.executemany(
            UPSERT_VECTOR, [(self._rowids[mid], vector_blob(v)) for mid, v in new_vectors]
        )
        self._vectors.update(new_vectors)

        # Provenance only grows here: the writing episode plus any the caller carried over
        # from merged memories. Ids that are not episodes of this user are ignored.
        self._episode_rowids(sorted({eid for m in memories for eid in m.episode_ids}))
        links = {
            (self._rowids[m.id], rowid)
            for m in memories
            for eid in (write.episode_id, *m.episode_ids)
            if (rowid := self._episodes.get(eid)) is not None
        } - self._provenance
        self._conn.executemany(
            "INSERT OR IGNORE INTO provenance (memory_rowid, episode_rowid) VALUES (?, ?)",
            sorted(links),
        )
        self._provenance |= links

        mentioned = {
            (episode_rowid, r) for r in self._entity_rowids(list(dict.fromkeys(write.mentions)))
        } - self._mentions
        self._conn.executemany(
            "INSERT OR IGNORE INTO mentions (episode_rowid, entity_rowid) VALUES (?, ?)",
            sorted(mentioned),
        )
        self._mentions |= mentioned

        vectors_now = dict(new_vectors)
        for p in params:
            # Logged for every write that carries the memory, as the port says (ADDED the
            # first time, UPDATED after), even when the row was not written again.
            kind = ChangeKind.ADDED if p["id"] in inserted_ids else ChangeKind.UPDATED
            self._changes.add(kind, str(p["id"]), str(p["type"]))
            if p["id"] in changed_ids:
                self.upserts.append(VectorRow.from_fields(p, vectors_now.get(str(p["id"]))))
        for mid, vector in new_vectors:
            if mid not in changed_ids:
                # A row skipped as already written, with a new vector: the cache takes it.
                self.upserts.append(VectorRow.from_fields(self._written[mid], vector))

        for fact_id, at in write.invalidate:
            cur = self._conn.execute(
                "UPDATE memories SET invalid_at = ? "
                "WHERE user_key = ? AND id = ? AND invalid_at IS NULL",
                (to_us(at), self._key, fact_id),
            )
            if cur.rowcount:
                row = self._conn.execute(
                    "SELECT id, type, recorded_at, occurred_at, valid_from, invalid_at, metadata "
                    "FROM memories WHERE user_key = ? AND id = ?",
                    (self._key, fact_id),
                ).fetchone()
                self._written.pop(fact_id, None)  # the row is no longer what was written
                self._changes.add(ChangeKind.INVALIDATED, fact_id, row[1])
                self.upserts.append(
                    VectorRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], vector=None)
                )

        if write.extraction is not None:
            set_extraction_status(self._conn, self._key, write.episode_id, write.extraction)
        if write.summary:
            self._conn.execute(
                "UPDATE memories SET payload = json_set(payload, '$.summary', ?) WHERE rowid = ?",
                (write.summary, episode_rowid),
            )

    def _read_known(self, ids: Sequence[str]) -> None:
        unknown = [i for i in dict.fromkeys(ids) if i not in self._rowids]
        for chunk in chunks(unknown):
            marks = ",".join("?" * len(chunk))
            for mid, rowid, mtype in self._conn.execute(
                f"SELECT id, rowid, type FROM memories {BY_ID} "
                f"WHERE user_key = ? AND id IN ({marks})",
                [self._key, *chunk],
            ):
                self._rowids[mid] = rowid
                self._types[mid] = mtype

    def _episode_rowids(self, ids: Sequence[str]) -> dict[str, int | None]:
        self._memo_rowids(ids, self._episodes, "episode")
        return {i: self._episodes[i] for i in ids}

    def _entity_rowids(self, ids: Sequence[str]) -> list[int]:
        self._memo_rowids(ids, self._entities, "entity")
        return [r for i in ids if (r := self._entities[i]) is not None]

    def _memo_rowids(
        self, ids: Sequence[str], memo: dict[str, int | None], memory_type: str
    ) -> None:
        """Look up the ids `memo` does not know yet, as memories of `memory_type` of this user
        (None: no such memory)."""
        missing = [i for i in dict.fromkeys(ids) if i not in memo]
        for chunk in chunks(missing):
            marks = ",".join("?" * len(chunk))
            found = dict(
                self._conn.execute(
                    f"SELECT id, rowid FROM memories {BY_ID} WHERE user_key = ? "
                    f"AND type = ? AND id IN ({marks})",
                    [self._key, memory_type, *chunk],
                ).fetchall()
            )
            for i in chunk:
                memo[i] = found.get(i)
