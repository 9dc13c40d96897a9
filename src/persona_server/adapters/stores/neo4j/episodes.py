"""Episodes: idempotent batch ingest, the temporal chain, extraction bookkeeping."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.batch_plan import StoredSource, checked_episodes, plan_batch
from persona_server.adapters.stores.neo4j import retention
from persona_server.adapters.stores.neo4j.cascade import detach_episodes
from persona_server.adapters.stores.neo4j.chain import ChainEdit, append, tail
from persona_server.adapters.stores.neo4j.changes import ChangeLog
from persona_server.adapters.stores.neo4j.codec import (
    MEMORY_PROJECTION,
    memory_props,
    to_memory,
    user_params,
    vector_params,
)
from persona_server.adapters.stores.neo4j.driver import Connection, rows, run
from persona_server.adapters.stores.neo4j.users import lock_user
from persona_server.adapters.stores.values import chain_at, extraction_due, to_us
from persona_server.domain.models import (
    ChangeKind,
    Episode,
    ExtractionState,
    ExtractionStatus,
    MemoryType,
    UserRef,
)
from persona_server.ports.graph_store import (
    CHANGE_LOG_MAX_ENTRIES,
    EpisodeText,
    EpisodeWriteResult,
    ExpiredEpisodes,
    Vectors,
)

_KNOWN_SOURCES = """
UNWIND $source_ids AS sid
MATCH (e:Episode {tenant: $tenant, user_id: $user_id, source_id: sid})
RETURN sid AS source_id, e.id AS id, e.text AS text, e.seq AS seq
"""

_CREATE = """
UNWIND $rows AS row
CREATE (m:Memory:Episode)
SET m = row.props, m.vector = row.blob
WITH m, row
CALL db.create.setNodeVectorProperty(m, 'embedding', row.embedding)
WITH count(*) AS created
MATCH (u:PersonaUser {tenant: $tenant, user_id: $user_id})
SET u.episode_seq = $episode_seq
"""

_REPLACE = """
UNWIND $rows AS row
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: row.props.id})
WHERE m:Episode
SET m += row.props, m.vector = row.blob
WITH m, row
CALL db.create.setNodeVectorProperty(m, 'embedding', row.embedding)
"""

# Up to `$before` / `$after` NEXT hops from several episodes at once, in one statement: the
# chain is a list (one NEXT out and in per episode), so a bounded walk visits at most that many
# nodes. Variable-length bounds cannot be parameters, hence the constant cap and the length test;
# windows beyond the cap are walked hop by hop (`_HOP`).
WALK_CAP = 8
# Expects `id` bound; binds `x`, `prev`, `next`.
WALK_BODY = """
MATCH (x:Memory {tenant: $tenant, user_id: $user_id, id: id})
WHERE x:Episode
CALL (x) {
    OPTIONAL MATCH p = (x)-[:NEXT*1..8]->(n)
    WHERE length(p) <= $after AND n.tenant = $tenant AND n.user_id = $user_id
    WITH n, length(p) AS hops ORDER BY hops
    RETURN collect(n.id) AS next
}
CALL (x) {
    OPTIONAL MATCH p = (n)-[:NEXT*1..8]->(x)
    WHERE length(p) <= $before AND n.tenant = $tenant AND n.user_id = $user_id
    WITH n, length(p) AS hops ORDER BY hops DESC
    RETURN collect(n.id) AS prev
}
"""
_WALK = "UNWIND $ids AS id" + WALK_BODY + "RETURN x.id AS id, prev, next"

# One NEXT hop from several episodes at once, both directions.
_HOP = """
UNWIND $ids AS id
MATCH (x:Memory {tenant: $tenant, user_id: $user_id, id: id})
WHERE x:Episode
OPTIONAL MATCH (x)-[:NEXT]->(n)
WHERE n.tenant = $tenant AND n.user_id = $user_id
OPTIONAL MATCH (p)-[:NEXT]->(x)
WHERE p.tenant = $tenant AND p.user_id = $user_id
RETURN x.id AS id, n.id AS next, p.id AS prev
"""

# The whole chain by index order; equal to following NEXT from the head, without the path
# bookkeeping a variable-length walk of a long chain would cost.
_CHAIN = """
MATCH (e:Episode)
USING INDEX e:Episode(tenant, user_id, chain_at, seq)
WHERE e.tenant = $tenant AND e.user_id = $user_id AND e.chain_at IS NOT NULL
  AND e.seq IS NOT NULL
RETURN e.id AS id
ORDER BY e.tenant, e.user_id, e.chain_at, e.seq
"""

_TEXTS = """
MATCH (e:Episode)
WHERE e.tenant = $tenant AND e.user_id = $user_id AND e.seq > $after_seq
RETURN e.seq AS seq, e.payload AS payload, e.text AS text
ORDER BY e.tenant, e.user_id, e.seq LIMIT $limit
"""

SET_EXTRACTION = """
UNWIND $statuses AS item
MATCH (e:Memory {tenant: $tenant, user_id: $user_id, id: item.id})
WHERE e:Episode
SET e.extraction = item.extraction,
    e.extraction_due = CASE WHEN item.due_on_record THEN e.recorded_at ELSE item.due END
"""

# The only query across tenants: the extraction worker's queue, served by the due-time index.
_BACKLOG = "MATCH (m:Episode) WHERE m.extraction_due IS NOT NULL RETURN count(m) AS n"
_DUE = (
    """
MATCH (m:Episode)
WHERE m.extraction_due IS NOT NULL AND m.extraction_due <= $now
WITH m ORDER BY m.extraction_due, m.tenant, m.user_id, m.seq
LIMIT $limit
RETURN m.tenant AS tenant, m.user_id AS user_id, """
    + MEMORY_PROJECTION
    + " AS m"
)


class Neo4jEpisodeOps:
    def __init__(
        self,
        conn: Connection,
        dimension: int = 0,
        change_log_max_entries: int = CHANGE_LOG_MAX_ENTRIES,
    ) -> None:
        self._conn = conn
        self.dimension = dimension
        self.change_log_max_entries = change_log_max_entries

    async def put_batch(
        self, user: UserRef, episodes: Sequence[Episode], vectors: Vectors, *, replace: bool
    ) -> list[EpisodeWriteResult]:
        if not episodes:
            return []
        vecs = checked_episodes(episodes, vectors, self.dimension)
        return await self._conn.write(self._put, user, episodes, vecs, replace)

    async def _put(
        self,
        tx: AsyncManagedTransaction,
        user: UserRef,
        episodes: Sequence[Episode],
        vecs: npt.NDArray[np.float32],
        replace: bool,
    ) -> list[EpisodeWriteResult]:
        # A transaction function may run more than once (the driver retries): everything below
        # is derived from what this run reads.
        now = datetime.now(UTC)
        head = await lock_user(tx, user, now, create=True)
        assert head is not None
        base = user_params(user)
        sources = sorted({ep.source_id for ep in episodes})
        stored = {
            r["source_id"]: StoredSource(r["id"], r["text"], r["seq"])
            for r in await rows(tx, _KNOWN_SOURCES, {**base, "source_ids": sources})
        }
        # A conflict raises inside the transaction function: the driver rolls everything back
        # (the user node included) and does not retry, since this is not a driver error.
        plan = plan_batch(episodes, stored, head.episode_seq, replace=replace, now=now)
        inserts, replaces, results, next_seq = (
            plan.inserts,
            plan.replaces,
            plan.results,
            plan.next_seq,
        )

        changes = ChangeLog(head.change_seq, now, self.change_log_max_entries)
        chain = ChainEdit(user)
        # New episodes have the highest seqs, so when none is earlier in event time than the
        # current tail, the chain only grows at its end (checked before they are created).
        in_order = sorted(inserts, key=lambda item: (chain_at(item[0]), item[0].seq))
        appending = False
        last: tuple[str, int] | None = None
        if in_order and not replaces:
            last = await tail(tx, user)
            appending = last is None or chain_at(in_order[0][0]) >= last[1]
        if replaces:
            replaced = list(replaces)
            # The new text may carry a new time: cut the episodes out and put them back below.
            await chain.detach(tx, replaced, removing=False)
            await detach_episodes(tx, user, replaced, changes)
            await run(tx, _REPLACE, {**base, "rows": _episode_rows(user, replaces.values(), vecs)})
            for episode_id in replaced:
                changes.add(ChangeKind.UPDATED, episode_id, MemoryType.EPISODE)
        if inserts:
            rows_ = _episode_rows(user, inserts, vecs)
            await run(tx, _CREATE, {**base, "rows": rows_, "episode_seq": next_seq})
            for ep, _ in inserts:
                changes.add(ChangeKind.ADDED, ep.id, MemoryType.EPISODE)
        if appending:
            await append(tx, user, last[0] if last else None, [ep.id for ep, _ in in_order])
        else:
            await chain.attach(tx, [ep.id for ep, _ in inserts] + list(replaces))
            await chain.relink(tx)
        await changes.flush(tx, user)
        return results

    async def chain_neighbours(
        self, user: UserRef, episode_ids: Sequence[str], *, before: int = 1, after: int = 1
    ) -> dict[str, list[str]]:
        wanted = list(dict.fromkeys(episode_ids))
        if not wanted:
            return {}
        return await self._conn.read(neighbours, user, wanted, max(before, 0), max(after, 0))

    async def chain(self, user: UserRef) -> list[str]:
        async def work(tx: AsyncManagedTransaction) -> list[str]:
            return [r["id"] for r in await rows(tx, _CHAIN, user_params(user))]

        return await self._conn.read(work)

    async def texts(self, user: UserRef, *, after_seq: int, limit: int) -> list[EpisodeText]:
        if limit <= 0:
            return []

        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            params = {**user_params(user), "after_seq": after_seq, "limit": limit}
            return await rows(tx, _TEXTS, params)

        # The speaker is in the JSON payload: decoding that alone is still far cheaper than
        # the whole memory (provenance, times, the model's validation).
        return [
            EpisodeText(r["seq"], json.loads(r["payload"]).get("speaker") or "", r["text"])
            for r in await self._conn.read(work)
        ]

    async def set_extraction(
        self, user: UserRef, episode_id: str, status: ExtractionStatus
    ) -> None:
        async def work(tx: AsyncManagedTransaction) -> None:
            statuses = [status_params(episode_id, status)]
            await run(tx, SET_EXTRACTION, {**user_params(user), "statuses": statuses})

        await self._conn.write(work)

    async def due_for_extraction(self, now: datetime, limit: int) -> list[tuple[UserRef, Episode]]:
        if limit <= 0:
            return []

        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await rows(tx, _DUE, {"now": to_us(now), "limit": limit})

        out: list[tuple[UserRef, Episode]] = []
        for r in await self._conn.read(work):
            memory = to_memory(r["m"], [], [])
            assert isinstance(memory, Episode)
            out.append((UserRef(tenant=r["tenant"], user_id=r["user_id"]), memory))
        return out

    async def expire(self, tenant: str, before: datetime, limit: int) -> list[ExpiredEpisodes]:
        return await retention.expire(
            self._conn, tenant, before, limit, self.change_log_max_entries
        )

    async def extraction_backlog(self) -> int:
        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await rows(tx, _BACKLOG, {})

        return int((await self._conn.read(work))[0]["n"])


async def neighbours(
    tx: AsyncManagedTransaction, user: UserRef, wanted: list[str], before: int, after: int
) -> dict[str, list[str]]:
    """`chain_neighbours` inside a transaction (ids unique, windows not negative)."""
    base = user_params(user)
    if max(before, after) <= WALK_CAP:
        params = {**base, "ids": wanted, "before": before, "after": after}
        return {r["id"]: [*r["prev"], *r["next"]] for r in await rows(tx, _WALK, params)}
    # A wide window: one NEXT hop per statement for all ids at once.
    found = await rows(tx, _HOP, {**base, "ids": wanted})
    first = {r["id"]: r for r in found}
    prev: dict[str, list[str]] = {}
    nxt: dict[str, list[str]] = {}
    for episode_id in wanted:
        r = first.get(episode_id)
        if r is None:
            continue
        prev[episode_id] = [r["prev"]] if before and r["prev"] else []
        nxt[episode_id] = [r["next"]] if after and r["next"] else []
    for hop in range(1, max(before, after)):
        # Only paths that got a neighbour at every hop so far can grow further.
        frontier = {p[-1] for p in prev.values() if len(p) == hop and hop < before}
        frontier |= {n[-1] for n in nxt.values() if len(n) == hop and hop < after}
        if not frontier:
            break
        step = {r["id"]: r for r in await rows(tx, _HOP, {**base, "ids": sorted(frontier)})}
        for p in prev.values():
            if len(p) == hop and hop < before and (r := step.get(p[-1])) and r["prev"]:
                p.append(r["prev"])
        for n in nxt.values():
            if len(n) == hop and hop < after and (r := step.get(n[-1])) and r["next"]:
                n.append(r["next"])
    return {e: list(reversed(prev[e])) + nxt[e] for e in prev}


def status_params(episode_id: str, status: ExtractionStatus) -> dict[str, Any]:
    """One item of `SET_EXTRACTION`: the due time rule of codec.extraction_due, with the
    record time (pending without a retry time is due at once, first in first out) read from
    the node rather than passed in."""
    on_record = status.state is ExtractionState.PENDING and status.next_attempt_at is None
    return {
        "id": episode_id,
        "extraction": status.model_dump_json(),
        "due_on_record": on_record,
        "due": None if on_record else extraction_due(status, datetime.now(UTC)),
    }


def _episode_rows(user: UserRef, items: Any, vecs: npt.NDArray[np.float32]) -> list[dict[str, Any]]:
    out = []
    for ep, i in items:
        row = vector_params(ep.id, vecs[i])
        row["props"] = memory_props(user, ep)
        out.append(row)
    return out
