"""A stream's context as one ranked list, and the differences between two of them.

Every StreamContext event is defined by `View`s: the snapshot is the view when the subscription
starts, and an update is `diff(earlier view, later view)`. With a query the view is Recall's
ranking for it; without one, the profile's groups. Ranks and scores therefore mean the same in
a snapshot and in an update: they are the ranking as of the event, whatever produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from persona_server.domain.ids import type_of
from persona_server.domain.models import ChangeKind, Memory, MemoryType
from persona_server.services.recall import context_block
from persona_server.services.results import (
    Change,
    DeletedRef,
    Member,
    RecallOutcome,
    ScoredMemory,
)


@dataclass(frozen=True)
class Entry:
    memory: Memory
    rank: int  # 1-based; within the memory's group without a query
    score: float


@dataclass(frozen=True)
class View:
    """A context at one change-log position: its entries in rank order (group by group)."""

    entries: tuple[Entry, ...] = ()
    by_id: dict[str, Entry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {e.memory.id: e for e in self.entries})

    @classmethod
    def ranked(cls, scored: list[ScoredMemory], *, by_type: bool) -> View:
        """Entries from a list in rank order; `by_type` restarts ranks in each type's group."""
        ranks: dict[MemoryType | None, int] = {}
        entries = []
        for item in scored:
            group = item.memory.type if by_type else None
            ranks[group] = ranks.get(group, 0) + 1
            entries.append(Entry(item.memory, ranks[group], item.score))
        return cls(tuple(entries))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.memory.id for e in self.entries)

    def members(self) -> list[Member]:
        return [Member(e.memory.id, e.memory.type, e.rank, e.score) for e in self.entries]

    @cached_property
    def outcome(self) -> RecallOutcome:
        """The view as a snapshot's content (built once per view)."""
        results = [ScoredMemory(e.memory, e.score) for e in self.entries]
        return RecallOutcome(results, context_block(results))


def merge_label(earlier: ChangeKind | None, later: ChangeKind) -> ChangeKind:
    """What several change-log entries of one memory amount to, seen from before the first:
    new stays new until deleted; otherwise the latest says how it stands."""
    if earlier is ChangeKind.ADDED and later is not ChangeKind.DELETED:
        return ChangeKind.ADDED
    return later


def merge_change(earlier: Change, later: Change) -> Change:
    """Two pending changes of one memory as one, for a consumer that has seen neither."""
    if earlier.kind is ChangeKind.ADDED and later.rank > 0:
        return Change(ChangeKind.ADDED, later.item, later.rank)
    return later


def diff(
    held: Mapping[str, Memory | None],
    after: View,
    labels: Mapping[str, ChangeKind],
    types: Mapping[str, MemoryType] | None = None,
) -> list[Change]:
    """The changes that turn a client's context into `after`.

    `held` maps each id the client holds to the memory as the client has it, or to None when
    only the id is known (a resume token): such a memory counts as unchanged unless the change
    log since then names it. `labels` says how the change log saw each memory change
    (`merge_label`), `types` the type it gave. Entries come first, in rank order, then what
    left the context.
    """
    out: list[Change] = []
    for entry in after.entries:
        memory = entry.memory
        label = labels.get(memory.id)
        if memory.id not in held:
            if label is ChangeKind.ADDED:
                kind = ChangeKind.ADDED
            elif label is None:
                kind = ChangeKind.ENTERED
            else:
                kind = ChangeKind.UPDATED
        else:
            known = held[memory.id]
            changed = label is not None if known is None else known != memory
            if not changed:
                continue  # its rank or score may have moved: `members` carries those
            kind = ChangeKind.UPDATED
        out.append(Change(kind, ScoredMemory(memory, entry.score), entry.rank))
    for memory_id, known in held.items():
        if memory_id in after.by_id:
            continue
        label = labels.get(memory_id)
        kind = label if label in (ChangeKind.DELETED, ChangeKind.INVALIDATED) else ChangeKind.LEFT
        memory_type = known.type if known is not None else _type_of(memory_id, types)
        # By reference: an invalidated memory's new state is filled in by the caller, who can
        # read it (`with_invalidated`).
        out.append(Change(kind, DeletedRef(memory_id, memory_type)))
    return out


def _type_of(memory_id: str, types: Mapping[str, MemoryType] | None) -> MemoryType:
    # The change log names the type of every memory that changed; one pushed out unchanged is
    # known by its id, whose prefix names its type (ids minted elsewhere: an episode).
    return (types or {}).get(memory_id) or type_of(memory_id) or MemoryType.EPISODE
