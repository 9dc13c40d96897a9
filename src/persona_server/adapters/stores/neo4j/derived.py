"""The derived-memory writes of extraction: a batch of `DerivedWrite`s in a fixed number of
statements, whatever the batch size.

The port's semantics are those of applying each write in turn (the embedded store does exactly
that): a memory written twice ends as its last version, is ADDED the first time and UPDATED
after; an invalidation only touches a memory that is valid at that point; a write whose episode
is gone is dropped. `plan` replays that sequence in memory over the state it read once, and the
statements then apply the outcome set-wise. Running one statement per write instead would cost a
dozen round trips per ingested item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from neo4j import AsyncManagedTransaction

from persona_server.adapters.stores.batch_plan import Prepared
from persona_server.adapters.stores.neo4j.changes import ChangeLog
from persona_server.adapters.stores.neo4j.codec import memory_props, user_params, vector_params
from persona_server.adapters.stores.neo4j.driver import rows, run
from persona_server.adapters.stores.neo4j.episodes import SET_EXTRACTION, status_params
from persona_server.adapters.stores.values import opt_us, to_us
from persona_server.domain.models import ChangeKind, Entity, Fact, Memory, MemoryType, UserRef

_STATE = """
UNWIND $ids AS id
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: id})
RETURN m.id AS id, m.type AS type, m.invalid_at AS invalid_at
"""

# Type labels come from this fixed list through FOREACH guards, so the statement stays a
# literal: no label is ever built from data.
_CREATE = """
UNWIND $rows AS row
CREATE (m:Memory)
SET m = row.props
FOREACH (_ IN CASE WHEN row.props.type = 'psyche' THEN [1] ELSE [] END | SET m:Psyche)
FOREACH (_ IN CASE WHEN row.props.type = 'goal' THEN [1] ELSE [] END | SET m:Goal)
FOREACH (_ IN CASE WHEN row.props.type = 'entity' THEN [1] ELSE [] END | SET m:Entity)
FOREACH (_ IN CASE WHEN row.props.type = 'fact' THEN [1] ELSE [] END | SET m:Fact)
"""

# Every property but the vectors: a memory updated without a new vector keeps its old one.
_UPDATE = """
UNWIND $rows AS row
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: row.props.id})
SET m += row.props
"""

_SET_VECTORS = """
UNWIND $rows AS row
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: row.id})
SET m.vector = row.blob
WITH m, row
CALL db.create.setNodeVectorProperty(m, 'embedding', row.embedding)
"""

_PROVENANCE = """
UNWIND $links AS link
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: link.m})
MATCH (e:Memory {tenant: $tenant, user_id: $user_id, id: link.e})
WHERE e:Episode
MERGE (m)-[r:DERIVED_FROM]->(e)
ON CREATE SET r.tenant = $tenant, r.user_id = $user_id, r.memory_id = m.id, r.seq = e.seq
"""

_MENTIONS = """
UNWIND $links AS link
MATCH (e:Memory {tenant: $tenant, user_id: $user_id, id: link.e})
WHERE e:Episode
MATCH (n:Memory {tenant: $tenant, user_id: $user_id, id: link.n})
WHERE n:Entity
MERGE (e)-[:MENTIONS]->(n)
"""

# A fact's ends may change on update: drop its SUBJECT/OBJECT links and draw them again.
_FACT_ENDS = """
UNWIND $facts AS f
MATCH (x:Memory {tenant: $tenant, user_id: $user_id, id: f.id})
WHERE x:Fact
CALL (x) {
    MATCH (x)-[r:SUBJECT|OBJECT]->()
    DELETE r
}
WITH x, f
OPTIONAL MATCH (s:Memory {tenant: $tenant, user_id: $user_id, id: f.subject_id})
WHERE s:Entity
OPTIONAL MATCH (o:Memory {tenant: $tenant, user_id: $user_id, id: f.object_id})
WHERE o:Entity
FOREACH (_ IN CASE WHEN s IS NULL THEN [] ELSE [1] END | MERGE (x)-[:SUBJECT]->(s))
FOREACH (_ IN CASE WHEN o IS NULL THEN [] ELSE [1] END | MERGE (x)-[:OBJECT]->(o))
"""

# A new entity that facts written earlier already name (the embedded store keys facts by the
# ids alone, so order never mattered there). Only for new entities: for a known one those
# links exist, and re-checking them would cost a scan of its facts on every mention.
_NEW_ENTITY_FACTS = """
UNWIND $ids AS id
MATCH (n:Memory {tenant: $tenant, user_id: $user_id, id: id})
WHERE n:Entity
CALL (n, id) {
    MATCH (f:Fact {tenant: $tenant, user_id: $user_id, subject_id: id})
    MERGE (f)-[:SUBJECT]->(n)
}
CALL (n, id) {
    MATCH (f:Fact {tenant: $tenant, user_id: $user_id, object_id: id})
    MERGE (f)-[:OBJECT]->(n)
}
"""

_SET_SUMMARY = """
UNWIND $items AS item
MATCH (e:Memory {tenant: $tenant, user_id: $user_id, id: item.id})
WHERE e:Episode
SET e.summary = item.summary
"""

_INVALIDATE = """
UNWIND $items AS item
MATCH (m:Memory {tenant: $tenant, user_id: $user_id, id: item.id})
SET m.invalid_at = item.at
"""


@dataclass
class Plan:
    """The net effect of a batch of writes, in the order the port defines."""

    final: dict[str, Memory] = field(default_factory=dict)  # last version of each written id
    vectors: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    inserts: list[str] = field(default_factory=list)  # ids new to the store, first seen order
    links: dict[tuple[str, str], None] = field(default_factory=dict)  # (memory, episode)
    mentions: dict[tuple[str, str], None] = field(default_factory=dict)  # (episode, entity)
    invalidate: dict[str, int] = field(default_factory=dict)  # stored memories only
    extraction: dict[str, dict[str, Any]] = field(default_factory=dict)  # by episode id
    summaries: dict[str, str] = field(default_factory=dict)  # by episode id


def plan(
    prepared: Sequence[Prepared], state: dict[str, dict[str, Any]], changes: ChangeLog
) -> Plan:
    """Replay the writes over `state` (id -> type, invalid_at as stored)."""
    kinds = {i: str(s["type"]) for i, s in state.items()}
    invalid: dict[str, int | None] = {i: s["invalid_at"] for i, s in state.items()}
    out = Plan()
    for write, memories, vecs in prepared:
        if kinds.get(write.episode_id) != MemoryType.EPISODE.value:
            # The episode was deleted while it was being extracted: what it yielded has no
            # provenance to hang on, so it is dropped rather than resurrected.
            continue
        for m in memories:
            known = kinds.get(m.id)
            if known is not None and known != m.type.value:
                raise ValueError(f"memory {m.id} is a {known}, cannot overwrite it as {m.type}")
            if known is None:
                out.inserts.append(m.id)
            kinds[m.id] = m.type.value
            out.final[m.id] = m
            invalid[m.id] = opt_us(m.invalid_at)
            out.invalidate.pop(m.id, None)  # this version's invalid_at wins over an earlier one
            if m.id in vecs:
                out.vectors[m.id] = vecs[m.id]
            changes.add(ChangeKind.ADDED if known is None else ChangeKind.UPDATED, m.id, m.type)
            # Provenance only grows: the writing episode plus any the caller carried over from
            # merged memories, when they are episodes of this user. Carried ids are not read
            # up front (a hub carries dozens per write): `_PROVENANCE` itself only links to
            # episodes of this user that exist.
            out.links[(m.id, write.episode_id)] = None
            for eid in m.episode_ids:
                if kinds.get(eid, MemoryType.EPISODE.value) == MemoryType.EPISODE.value:
                    out.links[(m.id, eid)] = None
        for entity_id in write.mentions:
            if kinds.get(entity_id) == MemoryType.ENTITY.value:
                out.mentions[(write.episode_id, entity_id)] = None
        for memory_id, at in write.invalidate:
            if memory_id not in kinds or invalid.get(memory_id) is not None:
                continue
            invalid[memory_id] = to_us(at)
            if memory_id in out.final:
                out.final[memory_id] = out.final[memory_id].model_copy(update={"invalid_at": at})
            else:
                out.invalidate[memory_id] = to_us(at)
            changes.add(ChangeKind.INVALIDATED, memory_id, kinds[memory_id])
        if write.extraction is not None:
            out.extraction[write.episode_id] = status_params(write.episode_id, write.extraction)
        if write.summary:
            out.summaries[write.episode_id] = write.summary
    return out


async def write_derived(
    tx: AsyncManagedTransaction, user: UserRef, prepared: Sequence[Prepared], changes: ChangeLog
) -> None:
    base = user_params(user)
    wanted: dict[str, None] = {}
    for write, memories, _ in prepared:
        wanted[write.episode_id] = None
        for m in memories:
            wanted[m.id] = None
        wanted.update(dict.fromkeys(write.mentions))
        wanted.update(dict.fromkeys(i for i, _ in write.invalidate))
    found = await rows(tx, _STATE, {**base, "ids": list(wanted)})
    p = plan(prepared, {r["id"]: r for r in found}, changes)

    inserts = set(p.inserts)
    created = [{"props": memory_props(user, p.final[i])} for i in p.inserts]
    updated = [{"props": memory_props(user, m)} for i, m in p.final.items() if i not in inserts]
    if created:
        await run(tx, _CREATE, {**base, "rows": created})
    if updated:
        await run(tx, _UPDATE, {**base, "rows": updated})
    if p.vectors:
        vectors = [vector_params(i, v) for i, v in p.vectors.items()]
        await run(tx, _SET_VECTORS, {**base, "rows": vectors})
    if p.links:
        links = [{"m": m, "e": e} for m, e in p.links]
        await run(tx, _PROVENANCE, {**base, "links": links})
    if p.mentions:
        mentions = [{"e": e, "n": n} for e, n in p.mentions]
        await run(tx, _MENTIONS, {**base, "links": mentions})
    facts = [
        {"id": m.id, "subject_id": m.subject_id, "object_id": m.object_id}
        for m in p.final.values()
        if isinstance(m, Fact)
    ]
    if facts:
        await run(tx, _FACT_ENDS, {**base, "facts": facts})
    new_entities = [i for i in p.inserts if isinstance(p.final[i], Entity)]
    if new_entities:
        await run(tx, _NEW_ENTITY_FACTS, {**base, "ids": new_entities})
    if p.invalidate:
        items = [{"id": i, "at": at} for i, at in p.invalidate.items()]
        await run(tx, _INVALIDATE, {**base, "items": items})
    if p.extraction:
        await run(tx, SET_EXTRACTION, {**base, "statuses": list(p.extraction.values())})
    if p.summaries:
        items = [{"id": i, "summary": text} for i, text in p.summaries.items()]
        await run(tx, _SET_SUMMARY, {**base, "items": items})
