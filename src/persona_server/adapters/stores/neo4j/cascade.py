"""Deletion rules that keep a user's graph consistent; run inside the caller's transaction.

- An episode that goes away (deleted, or replaced by new text) takes with it the memories
  derived only from it; memories also derived from other episodes just lose it from their
  provenance (DERIVED_FROM).
- An entity that goes away takes the facts about it (SUBJECT or OBJECT): a fact whose end is
  gone cannot be stated any more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.neo4j.changes import ChangeLog
from persona_server.adapters.stores.neo4j.codec import user_params
from persona_server.adapters.stores.neo4j.driver import rows, run
from persona_server.domain.models import ChangeKind, UserRef

_CUT_DERIVED = """
UNWIND $ids AS id
MATCH (e:Memory {tenant: $tenant, user_id: $user_id, id: id})<-[r:DERIVED_FROM]-(d)
WHERE e:Episode AND d.tenant = $tenant AND d.user_id = $user_id
DELETE r
RETURN d.id AS id, count(*) AS links
"""

_STILL_DERIVED = """
UNWIND $ids AS id
MATCH (d:Memory {tenant: $tenant, user_id: $user_id, id: id})
RETURN d.id AS id, d.type AS type, EXISTS { (d)-[:DERIVED_FROM]->() } AS kept
"""

# A kept memory loses one mention per link removed (never below 1): the count must not keep
# testifying to a deleted episode.
_UNMENTION = """
UNWIND $cuts AS cut
MATCH (d:Memory {tenant: $tenant, user_id: $user_id, id: cut.id})
SET d.mention_count = CASE WHEN d.mention_count - cut.links < 1 THEN 1
                           ELSE d.mention_count - cut.links END
"""

_CUT_MENTIONS = """
UNWIND $ids AS id
MATCH (e:Memory {tenant: $tenant, user_id: $user_id, id: id})-[r:MENTIONS]->()
DELETE r
"""

_VICTIMS = """
UNWIND $ids AS id
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: id})
OPTIONAL MATCH (f)-[:SUBJECT|OBJECT]->(m)
WHERE f.tenant = $tenant AND f.user_id = $user_id
RETURN m.id AS id, m.type AS type, collect(DISTINCT f.id) AS facts
"""

_DELETE = """
UNWIND $ids AS id
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: id})
DETACH DELETE m
"""


async def detach_episodes(
    tx: AsyncManagedTransaction, user: UserRef, episode_ids: Sequence[str], changes: ChangeLog
) -> list[str]:
    """Remove what the episodes contributed; returns ids of the memories deleted as a result."""
    return (await cut_episodes(tx, user, episode_ids, changes)).deleted


@dataclass(frozen=True)
class Detached:
    deleted: list[str]  # derived only from the episodes: deleted
    kept: list[str]  # also derived from another episode: kept, minus the links


async def cut_episodes(
    tx: AsyncManagedTransaction, user: UserRef, episode_ids: Sequence[str], changes: ChangeLog
) -> Detached:
    """`detach_episodes`, telling deleted memories from kept ones."""
    if not episode_ids:
        return Detached([], [])
    params = {**user_params(user), "ids": list(episode_ids)}
    links: dict[str, int] = {}
    for r in await rows(tx, _CUT_DERIVED, params):
        links[r["id"]] = links.get(r["id"], 0) + int(r["links"])
    await run(tx, _CUT_MENTIONS, params)
    if not links:
        return Detached([], [])
    found = await rows(tx, _STILL_DERIVED, {**params, "ids": list(links)})
    orphans: list[str] = []
    kept: list[str] = []
    for r in found:
        if r["kept"]:
            changes.add(ChangeKind.UPDATED, r["id"], r["type"])
            kept.append(r["id"])
        else:
            orphans.append(r["id"])
    if kept:
        cuts = [{"id": i, "links": links[i]} for i in kept]
        await run(tx, _UNMENTION, {**user_params(user), "cuts": cuts})
    return Detached(await delete_memories(tx, user, orphans, changes), kept)


async def delete_memories(
    tx: AsyncManagedTransaction, user: UserRef, ids: Sequence[str], changes: ChangeLog
) -> list[str]:
    """Delete memories plus the facts about deleted entities; returns the deleted ids, the
    requested ones first. Episodes must have been cut out of the chain by the caller."""
    if not ids:
        return []
    base = user_params(user)
    found = await rows(tx, _VICTIMS, {**base, "ids": list(dict.fromkeys(ids))})
    victims: dict[str, str] = {r["id"]: r["type"] for r in found}
    for r in found:
        for fact_id in r["facts"]:
            victims.setdefault(fact_id, "fact")
    if not victims:
        return []
    ordered = [i for i in ids if i in victims]
    ordered += [i for i in victims if i not in set(ordered)]
    ordered = list(dict.fromkeys(ordered))
    await run(tx, _DELETE, {**base, "ids": ordered})
    for memory_id in ordered:
        changes.add(ChangeKind.DELETED, memory_id, victims[memory_id])
    return ordered
