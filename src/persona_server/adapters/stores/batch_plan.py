"""What every store decides the same way about a write batch, decided once.

- `checked_episodes` and `prepared_derived` check a batch's arguments and normalise its
  vectors before a store opens a transaction.
- Given what a store already holds for the batch's source ids, `plan_batch` classifies each
  episode as created, unchanged or replaced (or collects the conflicts), assigns ingest sequence
  numbers, and collapses repeats of one source id inside the batch.

Stores only execute the plan, so the SQLite and Neo4j adapters cannot drift apart on these
rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from persona_server.adapters.stores.values import normalise_vectors
from persona_server.domain.models import Episode, ExtractionStatus, Memory
from persona_server.ports.graph_store import (
    DerivedWrite,
    EpisodeWriteResult,
    SourceConflictError,
    Vectors,
    WriteOutcome,
)

# A derived write with its memories (each id once, last version wins) and their vectors.
Prepared = tuple[DerivedWrite, list[Memory], dict[str, npt.NDArray[np.float32]]]


def checked_episodes(episodes: Sequence[Episode], vectors: Vectors, dimension: int) -> Vectors:
    """`put_batch`'s arguments checked; returns the vectors normalised, one row per episode."""
    for ep in episodes:
        if not isinstance(ep, Episode):
            raise TypeError(f"put_batch takes episodes, got {type(ep).__name__}")
        if not ep.source_id:
            raise ValueError("every episode needs a source_id")
    return normalise_vectors(vectors, len(episodes), dimension)


def prepared_derived(writes: Sequence[DerivedWrite], dimension: int) -> list[Prepared]:
    """`write_derived`'s arguments checked, with each write's vectors normalised."""
    prepared: list[Prepared] = []
    for write in writes:
        memories = list({m.id: m for m in write.memories}.values())
        for m in memories:
            if isinstance(m, Episode):
                raise ValueError("episodes are written with put_batch, not write_derived")
        ids = [mid for mid in write.vectors if any(m.id == mid for m in memories)]
        vecs: dict[str, npt.NDArray[np.float32]] = {}
        if ids:
            rows = normalise_vectors(
                np.stack([np.asarray(write.vectors[i], dtype=np.float32) for i in ids]),
                len(ids),
                dimension,
            )
            vecs = {mid: rows[i] for i, mid in enumerate(ids)}
        prepared.append((write, memories, vecs))
    return prepared


@dataclass(frozen=True)
class StoredSource:
    """An episode the store already holds for a source id."""

    episode_id: str
    text: str
    seq: int


@dataclass
class _Seen:
    episode_id: str
    text: str
    seq: int
    pending: int | None = None  # index into `inserts` while only a pending insert of the batch


@dataclass
class BatchPlan:
    inserts: list[tuple[Episode, int]] = field(default_factory=list)  # (episode, vector row)
    # By episode id, the last version in the batch wins; the source id maps back to the store.
    replaces: dict[str, tuple[Episode, int]] = field(default_factory=dict)
    results: list[EpisodeWriteResult] = field(default_factory=list)
    next_seq: int = 0  # the user's ingest sequence after the batch


def plan_batch(
    episodes: Sequence[Episode],
    stored: Mapping[str, StoredSource],
    last_seq: int,
    *,
    replace: bool,
    now: datetime,
) -> BatchPlan:
    """Raises `SourceConflictError` (for the whole batch) on other text without `replace`."""
    seen = {sid: _Seen(s.episode_id, s.text, s.seq) for sid, s in stored.items()}
    plan = BatchPlan(next_seq=last_seq)
    conflicts: list[str] = []
    for i, ep in enumerate(episodes):
        known = seen.get(ep.source_id)
        if known is None:
            plan.next_seq += 1
            seen[ep.source_id] = _Seen(ep.id, ep.text, plan.next_seq, len(plan.inserts))
            plan.inserts.append((ep.model_copy(update={"seq": plan.next_seq}), i))
            plan.results.append(EpisodeWriteResult(ep.source_id, ep.id, WriteOutcome.CREATED))
        elif known.text == ep.text:
            plan.results.append(
                EpisodeWriteResult(ep.source_id, known.episode_id, WriteOutcome.UNCHANGED)
            )
        elif not replace:
            conflicts.append(ep.source_id)
        else:
            version = ep.model_copy(
                update={
                    "id": known.episode_id,
                    "seq": known.seq,
                    "extraction": ExtractionStatus(updated_at=now),
                }
            )
            known.text = ep.text
            if known.pending is not None:
                # Created earlier in this same batch: the insert simply takes the new version.
                plan.inserts[known.pending] = (version, i)
            else:
                plan.replaces[known.episode_id] = (version, i)
            plan.results.append(
                EpisodeWriteResult(ep.source_id, known.episode_id, WriteOutcome.REPLACED)
            )
    if conflicts:
        raise SourceConflictError(list(dict.fromkeys(conflicts)))
    # Each result names the version that is written (a later repeat in the batch may have
    # replaced an earlier one).
    stored_versions = {e.id: e for e, _ in plan.inserts}
    stored_versions.update((i, e) for i, (e, _) in plan.replaces.items())
    plan.results = [
        dataclasses.replace(r, episode=stored_versions.get(r.episode_id))
        if r.outcome is not WriteOutcome.UNCHANGED
        else r
        for r in plan.results
    ]
    return plan
