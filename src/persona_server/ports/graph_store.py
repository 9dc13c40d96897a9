"""The `GraphStore` port: what the services need from a store, shaped for SQLite and Neo4j alike.

Operations are grouped per aggregate (episodes, derived memories, search, users, changes). Every
call is scoped by a `UserRef` (tenant + user); an adapter must never return or touch rows of
another (tenant, user). Nothing here is SQL- or Cypher-shaped: adapters translate.

Vectors are float32, L2-normalised, one row per memory, shape (n, dimension).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from persona_server.domain.graph import Edge, EdgeKind
from persona_server.domain.models import (
    Entity,
    Episode,
    ExtractionStatus,
    GoalStatus,
    Memory,
    MemoryChange,
    MemoryType,
    UserRef,
)
from persona_server.ports.knowledge_store import KnowledgeOps

Vectors = npt.NDArray[np.float32]

# A derived memory read from a store lists at most this many provenance episodes (the first
# ingested, listed in event-time order); `mention_count` counts them all. Hubs (the user's own
# entity, a close friend) are cited by thousands of episodes, and carrying the whole list on
# every read and write made ingest quadratic in the user's size.
PROVENANCE_LIMIT = 32
Vector = npt.NDArray[np.float32]  # one row, shape (dimension,)


class WriteOutcome(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    REPLACED = "replaced"


@dataclass(frozen=True)
class EpisodeWriteResult:
    source_id: str
    episode_id: str
    outcome: WriteOutcome
    # The version now stored (its id and seq as the store assigned them) when the batch
    # created or replaced it; None when unchanged.
    episode: Episode | None = None


@dataclass(frozen=True)
class MemoryFilter:
    """Restricts search and listing. Empty means no restriction."""

    types: frozenset[MemoryType] = frozenset()
    occurred_from: datetime | None = None  # inclusive, on occurred_at
    occurred_to: datetime | None = None  # exclusive, on occurred_at
    metadata: dict[str, str] = field(default_factory=dict)  # every pair must match exactly
    # Invalidated facts are left out unless history is asked for; `as_of` keeps what was valid then.
    include_invalidated: bool = False
    as_of: datetime | None = None


@dataclass(frozen=True)
class SearchHit:
    memory_id: str
    score: float  # higher is better, channel-specific scale


@dataclass(frozen=True)
class Page:
    memories: list[Memory]
    next_cursor: str  # "" when there is no further page


class MemoryOrder(StrEnum):
    """Orders of `MemoryOps.ranked`, each best first (descending), ties to the larger id."""

    # Event time (record time when unset), then ingest order: the episode chain read backwards.
    LATEST_EVENT = "latest_event"
    # Record time.
    LATEST_RECORDED = "latest_recorded"
    # Mention count (reinforcement), then record time.
    MOST_MENTIONED = "most_mentioned"


@dataclass(frozen=True)
class RankedRead:
    """One bounded read of `MemoryOps.ranked`: the first `limit` valid (not invalidated)
    memories of `memory_type` in `order`, goals only with `goal_status` when it is set.

    Both stores serve these from an index, reading about `limit` entries whatever the user's
    size, for: episodes by LATEST_EVENT; any type by MOST_MENTIONED; any type by
    LATEST_RECORDED, goals of one status included. Other combinations are correct but may
    sort the user's memories of that type."""

    memory_type: MemoryType
    order: MemoryOrder
    limit: int
    goal_status: GoalStatus | None = None


@dataclass(frozen=True)
class MemoryCounts:
    """`MemoryOps.counts`: valid memories per type (every type present, 0 when none)."""

    by_type: dict[MemoryType, int]
    active_goals: int = 0


@dataclass(frozen=True)
class DerivedWrite:
    """Derived memories produced from one episode.

    `memories` are inserted or replaced by id (the service resolves entities and merges repeated
    psyche/goals before calling, so ids are final). `vectors` maps memory id to its vector: every
    new memory needs one; an updated memory without one keeps its stored vector (re-embedding
    an unchanged text would only cost time). `mentions` links the episode to entity ids.
    `invalidate` sets `invalid_at` on existing facts (contradictions), keeping them.
    """

    episode_id: str
    memories: Sequence[Memory]
    vectors: Mapping[str, Vector] = field(default_factory=dict)
    mentions: Sequence[str] = ()
    invalidate: Sequence[tuple[str, datetime]] = ()
    extraction: ExtractionStatus | None = None
    summary: str = ""  # the episode's summary from extraction; "" leaves it unchanged


@dataclass(frozen=True)
class Neighbours:
    """What `SearchOps.around` found around its seeds, per seed, nearest or strongest first."""

    graph: dict[str, list[str]]  # as `SearchOps.expand`
    chain: dict[str, list[str]]  # as `EpisodeOps.chain_neighbours`


# Given the neighbours, the ids to fetch. Pure: a store may call it again if it retries.
FetchChoice = Callable[[Neighbours], Sequence[str]]


class SourceConflictError(Exception):
    """A source_id already exists with different text and the request did not ask to replace."""

    def __init__(self, source_ids: Sequence[str]) -> None:
        super().__init__(f"source_id already exists with different text: {', '.join(source_ids)}")
        self.source_ids = list(source_ids)


class InvalidCursorError(ValueError):
    """A pagination cursor that this store did not issue (malformed, tampered or from elsewhere)."""


class StoreUnavailableError(Exception):
    """The store cannot be reached or is not ready; the caller may retry later."""


class StoreFullError(StoreUnavailableError):
    """The store has no room left (a full disk): nothing was written. Transient for the
    extraction worker (it retries later) but worth telling callers apart: only freeing
    space helps."""


class EmbeddingMismatchError(Exception):
    """The store was built with another embedding model or dimension than the one configured."""


@dataclass(frozen=True)
class ExpiredEpisodes:
    """What one `EpisodeOps.expire` batch removed from one user."""

    user: UserRef
    episodes: int  # episodes deleted
    derived: int  # derived memories deleted because only those episodes supported them
    kept: int  # derived memories that stay (another episode supports them), minus those links


@dataclass(frozen=True)
class EpisodeText:
    """What an episode says and who said it, with its place in ingest order (`seq`)."""

    seq: int
    speaker: str
    text: str


class EpisodeOps(Protocol):
    async def put_batch(
        self, user: UserRef, episodes: Sequence[Episode], vectors: Vectors, *, replace: bool
    ) -> list[EpisodeWriteResult]:
        """Write a batch atomically, idempotent by `source_id`.

        Same source_id and same text: UNCHANGED, returns the existing id. Different text: raises
        `SourceConflictError` for the whole batch (nothing written) unless `replace`, in which case
        the episode keeps its id, takes the new text, time, metadata and vector, its derived
        memories are removed (those derived only from it) and its extraction goes back to pending.
        The temporal chain stays in (occurred_at, seq) order; the store assigns `seq`.
        """
        ...

    async def chain_neighbours(
        self, user: UserRef, episode_ids: Sequence[str], *, before: int = 1, after: int = 1
    ) -> dict[str, list[str]]:
        """For each episode id, the ids of its neighbours in event-time order (NEXT chain)."""
        ...

    async def chain(self, user: UserRef) -> list[str]:
        """All episode ids of the user in chain order (for tests and export)."""
        ...

    async def texts(self, user: UserRef, *, after_seq: int, limit: int) -> list[EpisodeText]:
        """Up to `limit` of the user's episodes with `seq` above `after_seq`, in ingest order:
        their words alone, for reading all a user has said (services.related_words) without
        decoding whole memories, which costs a 100,000-episode user seconds."""
        ...

    async def set_extraction(
        self, user: UserRef, episode_id: str, status: ExtractionStatus
    ) -> None: ...

    async def due_for_extraction(self, now: datetime, limit: int) -> list[tuple[UserRef, Episode]]:
        """Episodes across all tenants whose extraction is pending or failed and due by `now`."""
        ...

    async def expire(self, tenant: str, before: datetime, limit: int) -> list[ExpiredEpisodes]:
        """Retention: delete up to `limit` episodes of the tenant's users whose event time
        (`occurred_at`, record time when unset: the chain position) is before `before`, each
        user's oldest first, in one transaction, with the same cascade as deleting each one
        (`MemoryOps.delete`): memories derived only from deleted episodes go (vectors and
        full-text entries with them), memories also derived from a kept episode lose the
        deleted links and one `mention_count` per link, the chain is relinked around the
        gaps and every change is in the change log. One entry per user touched; callers
        repeat while the episodes sum to `limit`. Idempotent: what is gone is not found."""
        ...

    async def extraction_backlog(self) -> int:
        """How many episodes, across all tenants, still have an extraction to come (pending,
        or failed with a retry scheduled, due or not). For metrics: an indexed count."""
        ...


class MemoryOps(Protocol):
    async def get_many(self, user: UserRef, ids: Sequence[str]) -> dict[str, Memory]: ...

    async def list_page(
        self, user: UserRef, *, filter: MemoryFilter, limit: int, cursor: str
    ) -> Page:
        """Stable order: record time then id. `cursor` is opaque to callers ("" = first page)."""
        ...

    async def delete(self, user: UserRef, memory_id: str) -> list[str]:
        """Delete one memory; deleting an episode also deletes memories derived only from it.

        Returns the ids deleted (empty if the memory did not exist).
        """
        ...

    async def write_derived(self, user: UserRef, *writes: DerivedWrite) -> None:
        """Write every `DerivedWrite` in one transaction (a batch of episodes at once)."""
        ...

    async def ranked(self, user: UserRef, reads: Sequence[RankedRead]) -> list[list[Memory]]:
        """For each read, in the same order, its memories best first (see `RankedRead`), all
        from one snapshot of the store."""
        ...

    async def reinforce(self, user: UserRef, ids: Sequence[str], at: datetime) -> list[str]:
        """Count one citation (an AskStructured answer relied on them) for each of the user's
        memories among `ids`: `cited_count` + 1, and `last_reinforced_at` moves to `at` unless
        it is later already. Each is logged as UPDATED. Returns the ids reinforced, in the
        order given (unknown ids and repeats are skipped)."""
        ...

    async def counts(self, user: UserRef, *, recorded_by: datetime | None = None) -> MemoryCounts:
        """How many valid (not invalidated) memories the user has per type, and active goals;
        only those recorded by `recorded_by` when it is set. An index range count per type."""
        ...

    async def find_entities(self, user: UserRef, names: Sequence[str]) -> list[Entity]:
        """Entities whose normalised name or alias equals one of `names` (already normalised)."""
        ...

    async def find_by_key(
        self, user: UserRef, memory_type: MemoryType, keys: Sequence[str]
    ) -> list[Memory]:
        """Psyche or goals by their merge key; facts by `subject_id|predicate` key."""
        ...


class SearchOps(Protocol):
    async def vector(
        self, user: UserRef, query: Vectors, k: int, filter: MemoryFilter
    ) -> list[SearchHit]:
        """Cosine similarity over the user's memories, best first."""
        ...

    async def text(
        self, user: UserRef, query: str, k: int, filter: MemoryFilter
    ) -> list[SearchHit]:
        """Full-text (BM25-like) over the user's memories, best first; the query is plain words."""
        ...

    async def expand(
        self, user: UserRef, memory_ids: Sequence[str], limit: int
    ) -> dict[str, list[str]]:
        """Graph neighbours of each id: mentions (episode-entity), facts of entities,
        provenance (derived memory-episode). Chain neighbours are `EpisodeOps.chain_neighbours`."""
        ...

    async def around(
        self,
        user: UserRef,
        *,
        graph_seeds: Sequence[str],
        graph_limit: int,
        episode_seeds: Sequence[str],
        before: int,
        after: int,
        choose: FetchChoice,
    ) -> tuple[Neighbours, dict[str, Memory]]:
        """Recall's second stage: the graph neighbours of `graph_seeds` (as `expand`) and the
        chain neighbours of `episode_seeds` (as `EpisodeOps.chain_neighbours`), then the
        memories whose ids `choose` picks once it has seen them (as `MemoryOps.get_many`).
        A networked store does all of it in one read transaction, so one round trip and one
        snapshot; the embedded store may read the three in turn."""
        ...


@dataclass(frozen=True)
class Usage:
    """What a user or a tenant holds: memories of every type, and their text in UTF-8 bytes."""

    memories: int = 0
    text_bytes: int = 0


class UserOps(Protocol):
    async def exists(self, user: UserRef) -> bool: ...

    async def usage(self, user: UserRef) -> Usage:
        """The user's memories and their text size (for quotas: an aggregate, not a cache)."""
        ...

    async def tenant_usage(self, tenant: str) -> Usage:
        """The same summed over every user of the tenant."""
        ...

    async def lease_extraction(
        self, user: UserRef, owner: str, now: datetime, until: datetime
    ) -> bool:
        """Take or extend the user's extraction lease for `owner`, to `until`. True when
        `owner` holds it now (it was free, had run out by `now`, or was `owner`'s already);
        False when another owner holds it, or there is no such user. Atomic across every
        process that shares the store: background workers of several replicas use it so that
        one user's episodes are extracted by one of them at a time."""
        ...

    async def release_extraction(self, user: UserRef, owner: str) -> None:
        """Give the user's extraction lease up, if `owner` holds it."""
        ...

    async def tenants(self) -> list[str]:
        """Every tenant that has a user in the store, sorted (retention walks them)."""
        ...

    async def delete(self, user: UserRef) -> int:
        """Remove every row, vector and index entry of the user; returns memories deleted."""
        ...


# Each user's change log keeps at most this many entries by default (the newest); older ones are
# pruned as new ones are written. Stores take their own limit (`change_log_max_entries`).
CHANGE_LOG_MAX_ENTRIES = 10_000


class ChangeOps(Protocol):
    """The per-user change log: every write records which memories it added, updated,
    invalidated or deleted, numbered 1, 2, 3... per user in commit order, in the same
    transaction. A store keeps each user's newest `change_log_max_entries` entries (older ones
    go as new ones are written) and `prune` removes entries by age, so a reader that finds the
    entry after its position missing knows it was pruned."""

    async def latest_seq(self, user: UserRef) -> int: ...

    async def since(self, user: UserRef, seq: int, limit: int) -> list[MemoryChange]:
        """Changes with seq > `seq`, oldest first."""
        ...

    async def prune(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` entries, of any user, written before `before` (oldest first);
        returns how many went. Callers repeat while it returns `limit`."""
        ...


@dataclass(frozen=True)
class EdgePage:
    edges: list[Edge]
    next_cursor: str  # "" when there is no further page


class ExportOps(Protocol):
    """A user's whole graph in pages, in an order both stores define the same way (so an export
    from one store equals the export of its import into another). Cursors are opaque and only
    valid for the store that issued them; "" starts at the beginning. A page may be shorter
    than `limit`, or empty, before the end: the end is an empty `next_cursor`.

    Ingest order means the episodes' `seq`: an import keeps its relative order, not its values.
    """

    async def nodes(self, user: UserRef, *, cursor: str, limit: int) -> Page:
        """Every memory: episodes in ingest order, then derived memories by (recorded_at, id).
        Provenance lists are left empty (the DERIVED_FROM edges carry all of it)."""
        ...

    async def edges(self, user: UserRef, kind: EdgeKind, *, cursor: str, limit: int) -> EdgePage:
        """Every edge of one kind. NEXT: in chain order of its first episode. MENTIONS: by
        episode (ingest order), then entity id. DERIVED_FROM: by memory id, then episode (ingest
        order), every link (not only the first `PROVENANCE_LIMIT`). SUBJECT, OBJECT: by fact id,
        for facts whose entity exists."""
        ...


class GraphStore(Protocol):
    episodes: EpisodeOps
    memories: MemoryOps
    search: SearchOps
    users: UserOps
    changes: ChangeOps
    export: ExportOps
    knowledge: KnowledgeOps

    async def open(self, *, embedding_model: str, dimension: int) -> None:
        """Create schema if needed; raise `EmbeddingMismatchError` if built with another model."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store answers; used by health checks."""
        ...
