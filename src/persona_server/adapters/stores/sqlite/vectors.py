"""Cosine search over a per-user matrix cached in memory (exact, or two-pass with exact scores
for a user above 20,000 vectors: vector_matrix.py).

A user's vectors are loaded from their BLOBs on the first search and then kept in step by the
writer thread, which applies each committed change (upsert by id, removal, user drop) right after
its commit. Beside the matrix the cache keeps one array per filterable attribute, so a filter is a
few vectorised comparisons rather than a loop over rows.

Loading races with writing: a load reads a snapshot while the writer may commit and apply
changes the snapshot does not hold. A load therefore registers itself before it opens its read
transaction; every change applied while it runs is queued and replayed on the loaded entry
before it is published. Replay is safe even for changes the snapshot already holds, because
each change sets a row to its final state (idempotent).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from persona_server.adapters.stores.values import TYPE_CODES
from persona_server.adapters.stores.vector_matrix import (
    NONE_HIGH,
    NONE_LOW,
    Change,
    UserKey,
    UserVectors,
)


@dataclass
class _Loading:
    changes: list[Change] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    result: UserVectors | None = None
    error: BaseException | None = None


class VectorCache:
    """Per-user matrices, least recently searched evicted first once over `max_bytes`."""

    def __init__(self, dimension: int, max_bytes: int) -> None:
        self.dimension = dimension
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[UserKey, UserVectors] = OrderedDict()
        self._loading: dict[UserKey, _Loading] = {}

    def __contains__(self, key: UserKey) -> bool:
        with self._lock:
            return key in self._entries

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def get(self, key: UserKey, loader: Callable[[], UserVectors | None]) -> UserVectors | None:
        """The user's entry, loading it (once, even under concurrent searches) on a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            loading = self._loading.get(key)
            owner = loading is None
            if loading is None:
                loading = self._loading[key] = _Loading()
        if not owner:
            loading.done.wait()
            if loading.error is not None:
                raise loading.error
            return loading.result
        try:
            entry = loader()
        except BaseException as exc:
            with self._lock:
                self._loading.pop(key, None)
            loading.error = exc
            loading.done.set()
            raise
        with self._lock:
            self._loading.pop(key, None)
            if entry is not None:
                for change in loading.changes:
                    entry.apply(change)
                self._entries[key] = entry
                self._evict(keep=key)
        loading.result = entry
        loading.done.set()
        return entry

    def apply(self, key: UserKey, change: Change) -> None:
        """Called by the writer thread after each commit that touched vectors or attributes."""
        with self._lock:
            loading = self._loading.get(key)
            if loading is not None:
                loading.changes.append(change)
            entry = self._entries.get(key)
            if entry is None:
                return
            with entry.lock:
                entry.apply(change)
            self._evict(keep=key)

    def evict(self, key: UserKey) -> None:
        """Forget the entry to free memory; the next search reloads it."""
        with self._lock:
            self._entries.pop(key, None)

    def drop(self, key: UserKey) -> None:
        """The user was deleted: forget the entry, and empty any load racing with the delete."""
        with self._lock:
            self._entries.pop(key, None)
            loading = self._loading.get(key)
            if loading is not None:
                loading.changes.append(Change(reset=True))

    def _evict(self, keep: UserKey) -> None:
        total = sum(e.nbytes for e in self._entries.values())
        while total > self.max_bytes and len(self._entries) > 1:
            victim = next(iter(self._entries))
            if victim == keep:
                self._entries.move_to_end(keep)
                victim = next(iter(self._entries))
            total -= self._entries.pop(victim).nbytes


def load_user_vectors(conn: sqlite3.Connection, user_key: int, dimension: int) -> UserVectors:
    """Build an entry from the user's BLOBs; the caller holds a read transaction."""
    rows = conn.execute(
        "SELECT m.id, m.type, m.recorded_at, m.occurred_at, m.valid_from, m.invalid_at, "
        "m.metadata, v.vector FROM memories m JOIN vectors v ON v.memory_rowid = m.rowid "
        "WHERE m.user_key = ?",
        (user_key,),
    ).fetchall()
    n = len(rows)
    entry = UserVectors(dimension, capacity=n + n // 4 + 1)
    if not n:
        return entry
    # Column at a time: one comprehension per attribute instead of per-row numpy stores.
    entry.ids = [r[0] for r in rows]
    entry.pos = {memory_id: i for i, memory_id in enumerate(entry.ids)}
    entry.types[:n] = np.fromiter((TYPE_CODES[r[1]] for r in rows), np.int8, n)
    entry.recorded[:n] = np.fromiter((r[2] for r in rows), np.int64, n)
    for column, target, none in (
        (3, entry.occurred, NONE_LOW),
        (4, entry.valid_from, NONE_LOW),
        (5, entry.invalid_at, NONE_HIGH),
    ):
        target[:n] = np.fromiter(
            (none if r[column] is None else r[column] for r in rows), np.int64, n
        )
    entry.meta[:n] = np.fromiter((entry._intern(r[6]) for r in rows), np.int32, n)
    entry.matrix[:n] = np.frombuffer(b"".join(r[7] for r in rows), dtype="<f4").reshape(
        n, dimension
    )
    entry.n = n
    return entry
