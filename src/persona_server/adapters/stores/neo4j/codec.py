"""Domain models <-> node properties, and the Cypher fragments that read them back.

Node layout (every user-data node carries `tenant` and `user_id`):
- times are INTEGER microseconds since the Unix epoch (UTC), as in the embedded store: they sort
  and compare exactly, and the shared filter and vector-cache code works on them unchanged;
- `metadata` is canonical JSON (round trip), and `meta_pairs` a list of JSON `[key, value]`
  strings that a metadata filter tests with `IN` (user keys never become property names);
- `payload` holds the type-specific fields that no query looks at, so a new model field needs
  no migration;
- `search_text` is what the full-text index reads: the text, and for an episode its speaker
  first ("Caroline: ..." is about Caroline), as in the embedded store;
- `owner` is a digits-only token per (tenant, user) that the full-text index stores beside the
  text, so a Lucene query is confined to one user inside the index (see search.py);
- `vector` is the embedding as little-endian float32 bytes (what the vector cache loads: one
  blob per node decodes far faster than a list of floats), `embedding` the same vector as the
  float array the native vector index reads.

The projection strings are constants: queries are built from them and from nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

# Store-independent rules shared with the embedded store, so both stores resolve names, merge
# keys and extraction due times identically (the conformance suite pins them).
from persona_server.adapters.stores.values import (
    MEMORY_ADAPTER,
    entity_names,
    memory_fields,
    opt_from_us,
)
from persona_server.domain.models import Entity, Episode, Goal, Memory, MemoryType, UserRef
from persona_server.ports.graph_store import PROVENANCE_LIMIT

# Fields with their own property (or rebuilt from DERIVED_FROM); the rest goes to `payload`.
_PROPERTY_FIELDS = frozenset(
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
        "summary",
    }
)

# The node's scalar properties, without the vectors (a read never ships them by accident).
MEMORY_PROJECTION = (
    "m {.id, .type, .text, .occurred_at, .recorded_at, .valid_from, .invalid_at, "
    ".mention_count, .last_reinforced_at, .metadata, .payload, .source_id, .seq, .extraction, "
    ".summary, .cited_count}"
)

# Provenance of `m`: the first `$prov_limit` episodes ingested (the port's PROVENANCE_LIMIT;
# `seq` is the user's ingest order), listed in chain order. Pass `read_params()`. Expects `m`
# bound; yields prov_ids, prov_sources. Each DERIVED_FROM carries its memory's id and its
# episode's seq (derived.py), and the `persona_provenance_order` index on them hands over the
# first links in order: O(limit) even for a hub that thousands of episodes cite. The hint keeps
# the planner from walking the index from its start instead.
PROVENANCE_SUBQUERY = """
CALL (m) {
    WITH m.id AS mid
    MATCH ()-[r:DERIVED_FROM]->(e)
    USING INDEX r:DERIVED_FROM(tenant, user_id, memory_id, seq)
    WHERE r.tenant = $tenant AND r.user_id = $user_id AND r.memory_id = mid AND r.seq IS NOT NULL
      AND e.tenant = $tenant AND e.user_id = $user_id
    WITH e ORDER BY r.tenant, r.user_id, r.memory_id, r.seq
    LIMIT $prov_limit
    WITH e ORDER BY e.chain_at, e.seq
    RETURN collect(e.id) AS prov_ids, collect(e.source_id) AS prov_sources
}
"""

MEMORY_RETURN = "RETURN " + MEMORY_PROJECTION + " AS m, prov_ids, prov_sources"


def owner_token(user: UserRef) -> str:
    """A digits-only token naming (tenant, user) in the full-text index.

    Digits pass every stage of Lucene's English analyzer unchanged (no stemming, no stop
    words), so the indexed token and the query token are the same string. A hash collision
    could only add candidates that the tenant/user property check then drops.
    """
    digest = hashlib.sha256(f"{user.tenant}\x00{user.user_id}".encode()).digest()
    return str(int.from_bytes(digest[:16], "big"))


def user_params(user: UserRef) -> dict[str, Any]:
    return {"tenant": user.tenant, "user_id": user.user_id}


def read_params(user: UserRef) -> dict[str, Any]:
    """`user_params` plus what statements returning memories (`PROVENANCE_SUBQUERY`) need."""
    return {**user_params(user), "prov_limit": PROVENANCE_LIMIT}


def meta_pairs(metadata: Mapping[str, str]) -> list[str]:
    return sorted(json.dumps([k, v], ensure_ascii=False) for k, v in metadata.items())


def memory_props(user: UserRef, memory: Memory) -> dict[str, Any]:
    """Every property of the node except the vectors; absent values are None, so that
    `SET m += props` also clears what an earlier version had set."""
    props: dict[str, Any] = {
        "tenant": user.tenant,
        "user_id": user.user_id,
        "owner": owner_token(user),
        **memory_fields(memory, _PROPERTY_FIELDS),
        "search_text": memory.text,
        # Cypher's size() counts UTF-16 units, not bytes: quotas need the bytes (users.usage).
        "text_bytes": len(memory.text.encode("utf-8")),
        "meta_pairs": meta_pairs(memory.metadata),
        "names": None,
        "summary": None,
        "status": None,
    }
    if isinstance(memory, Entity):
        props["names"] = sorted(entity_names(memory))
    if isinstance(memory, Goal):
        # Beside the payload, so the profile's active goals come from an index (schema.py).
        props["status"] = memory.status.value
    if isinstance(memory, Episode):
        props["search_text"] = f"{memory.speaker} {memory.text}".strip()
        # Its own property, so extraction can set it without rewriting the JSON payload.
        props["summary"] = memory.summary
    return props


class QuietFloats(list[float]):
    """A vector as a statement parameter, with a short repr.

    The driver formats every parameter of a statement for its debug log before it checks the
    log level (neo4j 6.4, Bolt RUN): for a batch of 100 episodes the repr of their floats and
    blobs cost about 30 ms, every batch. The packer takes list and bytes subclasses as plain
    lists and bytes, so only the repr changes.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} floats>"


class QuietBytes(bytes):
    """Bytes with a short repr, for the same reason as `QuietFloats`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


def vector_params(memory_id: str, vector: npt.NDArray[np.float32]) -> dict[str, Any]:
    row = np.ascontiguousarray(vector, dtype="<f4")
    return {
        "id": memory_id,
        "blob": QuietBytes(row.tobytes()),
        "embedding": QuietFloats(row.astype(float).tolist()),
    }


def to_memory(
    props: Mapping[str, Any], prov_ids: Sequence[str], prov_sources: Sequence[str]
) -> Memory:
    """A model from `MEMORY_PROJECTION` plus its provenance lists."""
    data: dict[str, Any] = json.loads(props["payload"] or "{}")
    data.update(
        id=props["id"],
        type=props["type"],
        text=props["text"],
        occurred_at=opt_from_us(props["occurred_at"]),
        recorded_at=opt_from_us(props["recorded_at"]),
        valid_from=opt_from_us(props["valid_from"]),
        invalid_at=opt_from_us(props["invalid_at"]),
        mention_count=props["mention_count"],
        # Absent on nodes written before citations were counted (schema version 3): none.
        cited_count=props.get("cited_count") or 0,
        last_reinforced_at=opt_from_us(props["last_reinforced_at"]),
        metadata=json.loads(props["metadata"] or "{}"),
    )
    if props["type"] == MemoryType.EPISODE.value:
        # An episode is its own provenance: Recall credits an episode hit to its source id.
        data.update(
            source_id=props["source_id"],
            seq=props["seq"],
            extraction=json.loads(props["extraction"]) if props["extraction"] else {},
            episode_ids=[props["id"]],
            source_ids=[props["source_id"]],
        )
        if props.get("summary") is not None:
            data["summary"] = props["summary"]
    else:
        data.update(episode_ids=list(prov_ids), source_ids=list(prov_sources))
    return MEMORY_ADAPTER.validate_python(data)


def record_to_memory(record: Mapping[str, Any]) -> Memory:
    return to_memory(record["m"], record["prov_ids"], record["prov_sources"])
