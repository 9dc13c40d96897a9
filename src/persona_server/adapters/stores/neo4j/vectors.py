"""Exact vector search over a per-replica cache of each user's vectors, kept current by the
store's own change log.

Why not only the native vector index: Neo4j 5.26 cannot pre-filter `db.index.vector.queryNodes`
by tenant and user, so it returns the global top k of every user's vectors and a user's own
best matches can be missing from it (see search.py for how that path copes). Exact cosine in
Cypher (`vector.similarity.cosine` over the user's nodes) is correct but measured at about
0.4-0.8 s for 10,000 memories of 384 dimensions. A numpy matrix per user answers the same exact
query in about a millisecond.

How the cache stays correct with any number of replicas writing:
- every change to a memory writes a change-log entry in the same transaction, numbered by the
  user's `change_seq`; a user also has a `generation` that changes if it is deleted and
  created again;
- an entry remembers the (generation, seq) it reflects. Each search reads the user's head
  (one index lookup); if the seq moved, it reads the log entries after its seq and reloads just
  those memories (their current state, vector and filter attributes); if the generation moved,
  or too much changed, it reloads the user. Re-applying a state is idempotent, so reads that
  race with writers only repeat work, never lose it;
- so a search sees every write committed before it started, whichever replica made it. (A
  search that finds the entry checked after it started skips the head read: that check already
  covers what it must see.)

Memory is bounded by `max_bytes` (least recently searched users are evicted first). A user
whose matrix alone exceeds the bound is not cached: the store serves it from the native index.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.neo4j.changes import changes_since
from persona_server.adapters.stores.neo4j.codec import user_params
from persona_server.adapters.stores.neo4j.driver import Connection, rows
from persona_server.adapters.stores.neo4j.users import UserHead, fetch_head

# The embedded store's in-memory matrix: same filter semantics, same search (exact, or two-pass
# with exact scores above 20,000 vectors).
from persona_server.adapters.stores.vector_matrix import Change, UserVectors, VectorRow
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import MemoryFilter

DEFAULT_MAX_BYTES = 1 << 30
# Past this many log entries to replay, reloading the user is cheaper.
_MAX_REPLAY = 2000

_COLUMNS = """m.type AS type, m.recorded_at AS recorded_at, m.occurred_at AS occurred_at,
       m.valid_from AS valid_from, m.invalid_at AS invalid_at, m.metadata AS metadata,
       m.vector AS vector"""

_LOAD = (
    """
MATCH (m:Memory)
WHERE m.tenant = $tenant AND m.user_id = $user_id AND m.vector IS NOT NULL
RETURN m.id AS id, """
    + _COLUMNS
)

_STATES = (
    """
UNWIND $ids AS id
OPTIONAL MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: id})
RETURN id, """
    + _COLUMNS
)

UserKey = tuple[str, str]


@dataclass
class _Entry:
    generation: str
    seq: int
    vectors: UserVectors
    # When the head this entry reflects was read (monotonic clock, taken before the read).
    checked_at: float = 0.0


def _row(r: dict[str, Any], dimension: int) -> VectorRow:
    blob = r["vector"]
    vector = None
    if blob is not None:
        vector = np.frombuffer(bytes(blob), dtype="<f4")
        if vector.shape != (dimension,):
            raise ValueError(f"stored vector of {r['id']} has {vector.size} values")
    return VectorRow.from_fields(r, vector)


class VectorCache:
    def __init__(self, conn: Connection, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._conn = conn
        self.max_bytes = max_bytes
        self.dimension = 0
        self._entries: OrderedDict[UserKey, _Entry] = OrderedDict()
        self._locks: dict[UserKey, asyncio.Lock] = {}
        # Users too large to cache, with the generation measured: served by the index instead.
        self._too_big: dict[UserKey, str] = {}
        # Bytes per cached entry as last measured, and their sum, so eviction is O(1) per search.
        self._sizes: dict[UserKey, int] = {}
        self._total = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def nbytes(self) -> int:
        return self._total

    def __contains__(self, user: UserRef) -> bool:
        return (user.tenant, user.user_id) in self._entries

    async def search(
        self, user: UserRef, query: npt.NDArray[np.float32], k: int, flt: MemoryFilter
    ) -> list[tuple[str, float]] | None:
        """Exact top k, or None when this user is not served from the cache."""
        if not self.enabled:
            return None
        started = time.monotonic()
        key = (user.tenant, user.user_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        # One refresh per user at a time: concurrent searches never load the same user twice.
        async with lock:
            entry = self._entries.get(key)
            if entry is None or entry.checked_at < started:
                # An entry checked after this search began already holds every write committed
                # before it began (Recall runs two vector searches of one user side by side).
                checked_at = time.monotonic()
                head = await fetch_head(self._conn, user)
                if head is None:
                    self._forget(key)
                    return []
                if self._too_big.get(key) == head.generation:
                    return None
                entry = await self._current(user, key, head)
                if entry is not None:
                    entry.checked_at = checked_at
        if entry is None:
            return None
        # Synchronous from here: no other coroutine can change the matrix mid-search.
        return entry.vectors.search(query, k, flt)

    async def _current(self, user: UserRef, key: UserKey, head: UserHead) -> _Entry | None:
        entry = self._entries.get(key)
        # A head behind the entry only happens when the database went back in time (restored
        # from a backup): nothing cached can be trusted then.
        if entry is not None and (
            entry.generation != head.generation
            or entry.seq > head.change_seq
            or (entry.seq < head.change_seq and not await self._catch_up(user, entry))
        ):
            entry = None
        if entry is None:
            entry = await self._load(user, head)
            if entry.vectors.nbytes > self.max_bytes:
                self._forget(key)
                self._too_big[key] = head.generation
                return None
        self._entries[key] = entry
        self._entries.move_to_end(key)
        size = entry.vectors.nbytes
        self._total += size - self._sizes.get(key, 0)
        self._sizes[key] = size
        self._evict(keep=key)
        return entry

    def _forget(self, key: UserKey) -> None:
        self._entries.pop(key, None)
        self._total -= self._sizes.pop(key, 0)

    async def _load(self, user: UserRef, head: UserHead) -> _Entry:
        # The head was read before the rows: anything committed in between is replayed later
        # (idempotently) because the entry claims only the older seq.
        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await rows(tx, _LOAD, user_params(user))

        found = await self._conn.read(work)
        vectors = UserVectors(self.dimension, capacity=len(found) + len(found) // 4 + 1)
        vectors.apply(Change(upserts=[_row(r, self.dimension) for r in found]))
        return _Entry(head.generation, head.change_seq, vectors)

    async def _catch_up(self, user: UserRef, entry: _Entry) -> bool:
        """Replay the log after the entry's seq; False when a reload is the better deal."""
        logged = await self._conn.read(changes_since, user, entry.seq, _MAX_REPLAY)
        if len(logged) >= _MAX_REPLAY:
            return False
        if not logged:
            return True
        ids = list(dict.fromkeys(str(r["memory_id"]) for r in logged))

        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await rows(tx, _STATES, {**user_params(user), "ids": ids})

        states = await self._conn.read(work)
        removals = [r["id"] for r in states if r["type"] is None]
        upserts = [_row(r, self.dimension) for r in states if r["type"] is not None]
        entry.vectors.apply(Change(upserts=upserts, removals=removals))
        entry.seq = max(int(r["seq"]) for r in logged)
        return True

    def _evict(self, keep: UserKey) -> None:
        while self._total > self.max_bytes and len(self._entries) > 1:
            victim = next(iter(self._entries))
            if victim == keep:
                self._entries.move_to_end(keep)
                victim = next(iter(self._entries))
            self._forget(victim)
        if len(self._locks) > 2 * len(self._entries) + 1000:
            # Locks of users no longer cached (evicted, deleted) would otherwise pile up.
            for key in [k for k in self._locks if k not in self._entries]:
                if not self._locks[key].locked():
                    del self._locks[key]

    def clear(self) -> None:
        self._entries.clear()
        self._sizes.clear()
        self._total = 0
        self._too_big.clear()
