"""The NEXT chain: each user's episodes linked in (occurred_at, seq) order.

The chain is materialised as `(:Episode)-[:NEXT]->(:Episode)` relationships and kept exact by
relinking only around what a transaction changes:

1. `detach` (before an episode is removed or moved) remembers its current predecessor and cuts
   its NEXT relationships;
2. `attach` (after episodes got their final position) remembers each one and its predecessor in
   the new order;
3. `relink` gives every remembered episode that still exists its one outgoing NEXT, to its
   successor in the new order.

Every consecutive pair whose first element was not remembered is an old pair that nothing came
between, so its relationship is already right. Predecessors and successors are found by seeking
the (tenant, user_id, chain_at, seq) index in order (O(log n) each), never by scanning the chain.
Each seek names that index (`USING INDEX`): the (tenant, user_id, seq) index of export pages
matches the same predicates, and with it the planner read every episode of the user and sorted
them. The tail lookup of each Ingest took 31 ms at 8,000 episodes that way, and single-item
ingest rose from 44-57 to 81 ms at 10k (BENCHMARKS.md). A hint whose index is missing (a
database that came back without its schema) is a planner warning, not an error, under Neo4j's
default `dbms.cypher.hints_error=false` (checked on 5.26): the statement still runs.
The caller holds the user's write lock (users.lock_user), so concurrent batches of one user take
turns and each sees the chain the previous one left.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.neo4j.codec import user_params
from persona_server.adapters.stores.neo4j.driver import rows, run
from persona_server.domain.models import UserRef

_PREDECESSORS = """
UNWIND $ids AS id
MATCH (p)-[:NEXT]->(x:Memory {tenant: $tenant, user_id: $user_id, id: id})
WHERE p.tenant = $tenant AND p.user_id = $user_id
RETURN p.id AS id
"""

_CUT = """
UNWIND $ids AS id
MATCH (x:Memory {tenant: $tenant, user_id: $user_id, id: id})-[r:NEXT]-()
DELETE r
"""

# Ordering on all four index properties (equality ones included) is what lets the planner read
# the index backwards and stop at the first entry. Lookups by id always go through `:Memory`,
# whose (tenant, user_id, id) constraint is the index; the type is checked on the node.
_ORDER_PREV = """
UNWIND $ids AS id
MATCH (x:Memory {tenant: $tenant, user_id: $user_id, id: id})
WHERE x:Episode
CALL (x) {
    MATCH (p:Episode)
    USING INDEX p:Episode(tenant, user_id, chain_at, seq)
    WHERE p.tenant = $tenant AND p.user_id = $user_id
      AND p.chain_at = x.chain_at AND p.seq < x.seq
    RETURN p ORDER BY p.tenant DESC, p.user_id DESC, p.chain_at DESC, p.seq DESC LIMIT 1
  UNION ALL
    MATCH (p:Episode)
    USING INDEX p:Episode(tenant, user_id, chain_at, seq)
    WHERE p.tenant = $tenant AND p.user_id = $user_id
      AND p.chain_at < x.chain_at AND p.seq IS NOT NULL
    RETURN p ORDER BY p.tenant DESC, p.user_id DESC, p.chain_at DESC, p.seq DESC LIMIT 1
}
WITH x, p ORDER BY p.chain_at DESC, p.seq DESC
RETURN x.id AS id, collect(p.id)[0] AS neighbour
"""

# One statement: cut each episode's outgoing NEXT, seek its successor, link to it. The
# aggregation finishes every cut and seek before the first MERGE.
_RELINK = """
UNWIND $ids AS id
MATCH (x:Memory {tenant: $tenant, user_id: $user_id, id: id})
WHERE x:Episode
CALL (x) {
    MATCH (x)-[r:NEXT]->()
    DELETE r
}
CALL (x) {
    MATCH (n:Episode)
    USING INDEX n:Episode(tenant, user_id, chain_at, seq)
    WHERE n.tenant = $tenant AND n.user_id = $user_id
      AND n.chain_at = x.chain_at AND n.seq > x.seq
    RETURN n ORDER BY n.tenant, n.user_id, n.chain_at, n.seq LIMIT 1
  UNION ALL
    MATCH (n:Episode)
    USING INDEX n:Episode(tenant, user_id, chain_at, seq)
    WHERE n.tenant = $tenant AND n.user_id = $user_id
      AND n.chain_at > x.chain_at AND n.seq IS NOT NULL
    RETURN n ORDER BY n.tenant, n.user_id, n.chain_at, n.seq LIMIT 1
}
WITH x, n ORDER BY n.chain_at, n.seq
WITH x, collect(n)[0] AS next
MERGE (x)-[:NEXT]->(next)
"""


# The last episode in chain order: one backward step on the chain index.
_TAIL = """
MATCH (e:Episode)
USING INDEX e:Episode(tenant, user_id, chain_at, seq)
WHERE e.tenant = $tenant AND e.user_id = $user_id AND e.chain_at IS NOT NULL
  AND e.seq IS NOT NULL
RETURN e.id AS id, e.chain_at AS chain_at
ORDER BY e.tenant DESC, e.user_id DESC, e.chain_at DESC, e.seq DESC
LIMIT 1
"""

_LINK = """
UNWIND $pairs AS pair
MATCH (a:Memory {tenant: $tenant, user_id: $user_id, id: pair.a})
MATCH (b:Memory {tenant: $tenant, user_id: $user_id, id: pair.b})
CREATE (a)-[:NEXT]->(b)
"""


async def tail(tx: AsyncManagedTransaction, user: UserRef) -> tuple[str, int] | None:
    """The id and chain time of the user's last episode in chain order, if any."""
    found = await rows(tx, _TAIL, user_params(user))
    return (found[0]["id"], found[0]["chain_at"]) if found else None


async def append(
    tx: AsyncManagedTransaction, user: UserRef, last: str | None, ordered: list[str]
) -> None:
    """Link new episodes that all sort after `last` (the tail before they were created), in
    their chain order: the common case of a stream ingested in time order, for which seeking
    each one's neighbours (ChainEdit) would cost two index seeks and a relink per episode."""
    ids = [last, *ordered] if last is not None else ordered
    pairs = [{"a": a, "b": b} for a, b in itertools.pairwise(ids)]
    if pairs:
        await run(tx, _LINK, {**user_params(user), "pairs": pairs})


class ChainEdit:
    """The NEXT relinking of one write transaction of one user."""

    def __init__(self, user: UserRef) -> None:
        self._user = user
        self._affected: set[str] = set()
        self._removed: set[str] = set()

    async def detach(
        self, tx: AsyncManagedTransaction, episode_ids: Iterable[str], *, removing: bool
    ) -> None:
        """Cut episodes out of the chain; call before they are deleted or given a new time."""
        ids = sorted(set(episode_ids))
        if not ids:
            return
        params = {**user_params(self._user), "ids": ids}
        self._affected.update(r["id"] for r in await rows(tx, _PREDECESSORS, params))
        await run(tx, _CUT, params)
        if removing:
            self._removed.update(ids)

    async def attach(self, tx: AsyncManagedTransaction, episode_ids: Iterable[str]) -> None:
        """Note episodes that now sit at their final (chain_at, seq) position."""
        ids = sorted(set(episode_ids))
        if not ids:
            return
        params = {**user_params(self._user), "ids": ids}
        found = await rows(tx, _ORDER_PREV, params)
        self._affected.update(ids)
        self._affected.update(r["neighbour"] for r in found if r["neighbour"] is not None)

    async def relink(self, tx: AsyncManagedTransaction) -> None:
        ids = sorted(self._affected - self._removed)
        self._affected.clear()
        if ids:
            await run(tx, _RELINK, {**user_params(self._user), "ids": ids})
