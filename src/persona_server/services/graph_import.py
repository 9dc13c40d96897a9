"""ImportGraph: an exported graph written into a user, checked whole before anything is written.

Two phases:

1. *Check* every chunk as it arrives: duplicate ids and source ids, edges whose ends are not
   nodes of the stream or of the wrong type, nodes after edges; against the store, memories
   whose id exists with another type or text, and episodes whose source id another episode
   holds. At the end of the stream: the NEXT edges must be exactly the chain of the stream's
   episodes in event-time order (ties in stream order), every derived memory needs a
   DERIVED_FROM edge, and SUBJECT/OBJECT edges must match the facts' entity ids. New nodes go
   to a temporary spool file meanwhile; the server keeps only ids and edges in memory.
2. *Write* what is new, in order: episodes (in stream order, so they keep their relative
   ingest order and the chain forms itself), derived memories with all their provenance, then
   mentions. The store's ordinary writes do it, so every new memory gets its change-log entry
   (streams see it) and its vector; SUBJECT/OBJECT and NEXT follow from the facts and the times.

Memories that exist with the same type and text are left as they are, and re-applying a
mention changes nothing: importing the same graph twice changes nothing the second time.
A store or embedder failure during the write phase leaves a prefix written; importing again
completes it.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from persona_server.adapters.stores.values import MEMORY_ADAPTER, chain_at
from persona_server.domain.errors import AlreadyExistsError, FieldViolation, InvalidArgumentError
from persona_server.domain.graph import Edge, EdgeKind
from persona_server.domain.models import Episode, Fact, Memory, MemoryType, UserRef
from persona_server.ports.embedder import Embedder
from persona_server.ports.graph_store import DerivedWrite, GraphStore
from persona_server.services.ingest import embedding_text
from persona_server.services.notifier import ChangeNotifier

BATCH = 256
# An error names at most this many problems: enough to fix a file, small enough for a status
# trailer (gRPC clients refuse trailers over 16 KiB by default).
MAX_VIOLATIONS = 20
_ENDS: dict[EdgeKind, tuple[set[MemoryType], set[MemoryType]]] = {
    EdgeKind.NEXT: ({MemoryType.EPISODE}, {MemoryType.EPISODE}),
    EdgeKind.MENTIONS: ({MemoryType.EPISODE}, {MemoryType.ENTITY}),
    EdgeKind.DERIVED_FROM: (set(MemoryType) - {MemoryType.EPISODE}, {MemoryType.EPISODE}),
    EdgeKind.SUBJECT: ({MemoryType.FACT}, {MemoryType.ENTITY}),
    EdgeKind.OBJECT: ({MemoryType.FACT}, {MemoryType.ENTITY}),
}


@dataclass(frozen=True)
class ImportChunk:
    """One request of the stream, converted and field-checked by the transport."""

    user: UserRef
    nodes: Sequence[Memory]
    edges: Sequence[Edge]


@dataclass(frozen=True)
class ImportReport:
    nodes_created: int
    nodes_unchanged: int
    edges: int


@dataclass(slots=True)
class _Node:
    index: int
    type: MemoryType
    new: bool
    chain: int | None = None  # episodes: chain time
    subject_id: str = ""  # facts
    object_id: str = ""
    provenance: bool = False  # derived: a DERIVED_FROM edge was seen


@dataclass
class _Check:
    nodes: dict[str, _Node] = field(default_factory=dict)
    source_ids: dict[str, int] = field(default_factory=dict)
    edges: int = 0
    next_of: dict[str, tuple[str, int]] = field(default_factory=dict)  # from -> (to, edge index)
    next_into: set[str] = field(default_factory=set)
    fact_ends: set[tuple[EdgeKind, str]] = field(default_factory=set)
    mentions: dict[str, list[str]] = field(default_factory=dict)
    provenance: dict[str, list[str]] = field(default_factory=dict)
    violations: list[FieldViolation] = field(default_factory=list)
    more_violations: int = 0
    conflicts: list[tuple[int, str]] = field(default_factory=list)
    created: int = 0
    new_episodes: int = 0

    def bad(self, field_path: str, description: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(FieldViolation(field_path, description))
        else:
            self.more_violations += 1

    def raise_if_bad(self) -> None:
        if self.violations:
            raise invalid(self.violations, self.more_violations)


class GraphImportService:
    def __init__(
        self,
        store: GraphStore,
        embedder: Embedder,
        notifier: ChangeNotifier,
        *,
        batch_size: int = BATCH,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._notifier = notifier
        self._batch = batch_size

    async def import_graph(self, chunks: AsyncIterator[ImportChunk]) -> ImportReport:
        check = _Check()
        user: UserRef | None = None
        with tempfile.TemporaryFile() as spool:
            async for chunk in chunks:
                user = chunk.user
                await self._check_nodes(check, chunk, spool)
                for edge in chunk.edges:
                    _check_edge(check, edge)
                    check.edges += 1
            _finish(check)
            check.raise_if_bad()
            if check.conflicts:
                raise _conflict_error(check.conflicts)
            if user is None:
                raise InvalidArgumentError([FieldViolation("user_id", "is required")])
            await self._write(user, check, spool)
        unchanged = len(check.nodes) - check.created
        return ImportReport(check.created, unchanged, check.edges)

    async def _check_nodes(self, check: _Check, chunk: ImportChunk, spool: IO[bytes]) -> None:
        if not chunk.nodes:
            return
        first = len(check.nodes)
        if check.edges:
            check.bad(f"nodes[{first}]", "must come before every edge of the stream")
        ids = [n.id for n in chunk.nodes]
        stored = await self._store.memories.get_many(chunk.user, ids)
        sources = [n.source_id for n in chunk.nodes if isinstance(n, Episode)]
        holders = {
            m.source_id: m.id
            for m in await self._store.memories.find_by_key(chunk.user, MemoryType.EPISODE, sources)
            if isinstance(m, Episode)
        }
        for i, node in enumerate(chunk.nodes, start=first):
            path = f"nodes[{i}]"
            if node.id in check.nodes:
                check.bad(f"{path}.id", f"repeats nodes[{check.nodes[node.id].index}]")
                continue
            known = stored.get(node.id)
            if known is not None and (known.type != node.type or known.text != node.text):
                check.conflicts.append((i, f"{node.id} exists with another type or text"))
            info = _Node(i, node.type, new=known is None)
            if isinstance(node, Episode):
                if node.source_id in check.source_ids:
                    check.bad(
                        f"{path}.episode.source_id",
                        f"repeats nodes[{check.source_ids[node.source_id]}]",
                    )
                check.source_ids[node.source_id] = i
                holder = holders.get(node.source_id)
                if holder is not None and holder != node.id:
                    check.conflicts.append(
                        (i, f"source id {node.source_id!r} belongs to episode {holder}")
                    )
                info.chain = chain_at(node)
            elif isinstance(node, Fact):
                info.subject_id, info.object_id = node.subject_id, node.object_id
            check.nodes[node.id] = info
            if info.new:
                check.created += 1
                check.new_episodes += isinstance(node, Episode)
                spool.write(MEMORY_ADAPTER.dump_json(node) + b"\n")

    async def _write(self, user: UserRef, check: _Check, spool: IO[bytes]) -> None:
        if check.new_episodes:
            for batch in _batches(_spooled(spool, episodes=True), self._batch):
                episodes = [m for m in batch if isinstance(m, Episode)]
                vectors = await self._embedder.embed([embedding_text(e) for e in episodes])
                await self._store.episodes.put_batch(user, episodes, vectors, replace=False)
                self._notifier.notify(user)
        if check.created > check.new_episodes:
            for batch in _batches(_spooled(spool, episodes=False), self._batch):
                vectors = await self._embedder.embed([m.text for m in batch])
                writes = []
                for m, vector in zip(batch, vectors, strict=True):
                    sources = check.provenance[m.id]
                    version = m.model_copy(update={"episode_ids": sources, "source_ids": []})
                    writes.append(DerivedWrite(sources[0], [version], {m.id: vector}))
                await self._store.memories.write_derived(user, *writes)
                self._notifier.notify(user)
        mentions = list(check.mentions.items())
        for start in range(0, len(mentions), self._batch):
            await self._store.memories.write_derived(
                user,
                *(
                    DerivedWrite(episode_id, [], mentions=list(dict.fromkeys(entities)))
                    for episode_id, entities in mentions[start : start + self._batch]
                ),
            )


def _check_edge(check: _Check, edge: Edge) -> None:
    j = check.edges
    path = f"edges[{j}]"
    kinds_from, kinds_to = _ENDS[edge.kind]
    ends = []
    for end, node_id, kinds in (
        ("from_id", edge.from_id, kinds_from),
        ("to_id", edge.to_id, kinds_to),
    ):
        node = check.nodes.get(node_id)
        if node is None:
            check.bad(f"{path}.{end}", f"names {node_id!r}, which is no node of the stream")
        elif node.type not in kinds:
            wanted = " or ".join(sorted(k.value for k in kinds))
            check.bad(
                f"{path}.{end}",
                f"must name a {wanted} for {edge.kind.name}, not a {node.type.value}",
            )
        else:
            ends.append(node)
    if len(ends) < 2:
        return
    source = ends[0]
    if edge.kind is EdgeKind.NEXT:
        if edge.from_id in check.next_of:
            check.bad(
                f"{path}.from_id",
                f"already has a NEXT edge (edges[{check.next_of[edge.from_id][1]}])",
            )
        elif edge.to_id in check.next_into:
            check.bad(f"{path}.to_id", "already has a NEXT edge pointing to it")
        else:
            check.next_of[edge.from_id] = (edge.to_id, j)
            check.next_into.add(edge.to_id)
    elif edge.kind is EdgeKind.MENTIONS:
        check.mentions.setdefault(edge.from_id, []).append(edge.to_id)
    elif edge.kind is EdgeKind.DERIVED_FROM:
        source.provenance = True
        if source.new:
            check.provenance.setdefault(edge.from_id, []).append(edge.to_id)
    else:
        expected = source.subject_id if edge.kind is EdgeKind.SUBJECT else source.object_id
        if edge.to_id != expected:
            field_name = "subject_id" if edge.kind is EdgeKind.SUBJECT else "object_id"
            check.bad(f"{path}.to_id", f"must be the fact's {field_name} ({expected!r})")
        check.fact_ends.add((edge.kind, edge.from_id))


def _finish(check: _Check) -> None:
    """The checks that need the whole stream."""
    episodes = sorted(
        (n.chain, n.index, node_id) for node_id, n in check.nodes.items() if n.chain is not None
    )
    expected = {a[2]: b[2] for a, b in itertools.pairwise(episodes)}
    for source, (target, j) in check.next_of.items():
        if expected.get(source) != target:
            want = expected.get(source)
            hint = (
                f"the next episode in event time is {want!r}"
                if want
                else "it is the last episode in event time"
            )
            check.bad(f"edges[{j}].to_id", f"breaks the chain: {hint}")
    for source, target in expected.items():
        if source not in check.next_of:
            check.bad("edges", f"the chain needs a NEXT edge from {source!r} to {target!r}")
    for node_id, n in check.nodes.items():
        if n.type is not MemoryType.EPISODE and not n.provenance:
            check.bad(
                f"nodes[{n.index}]", f"{node_id} is a derived memory without a DERIVED_FROM edge"
            )
        for kind, end, field_name in (
            (EdgeKind.SUBJECT, n.subject_id, "subject_id"),
            (EdgeKind.OBJECT, n.object_id, "object_id"),
        ):
            end_node = check.nodes.get(end) if end else None
            if (
                end_node is not None
                and end_node.type is MemoryType.ENTITY
                and (kind, node_id) not in check.fact_ends
            ):
                check.bad(
                    f"nodes[{n.index}].fact.{field_name}",
                    f"names entity {end!r} of the stream, but no {kind.name} edge does",
                )


def invalid(violations: list[FieldViolation], more: int = 0) -> InvalidArgumentError:
    """The error for a bad stream, naming at most `MAX_VIOLATIONS` problems."""
    more += max(len(violations) - MAX_VIOLATIONS, 0)
    shown = violations[:MAX_VIOLATIONS]
    text = "; ".join(f"{v.field} {v.description}" for v in shown)
    return InvalidArgumentError(shown, text + (f" (and {more} more problems)" if more else ""))


def _conflict_error(conflicts: list[tuple[int, str]]) -> AlreadyExistsError:
    shown = "; ".join(f"nodes[{i}]: {why}" for i, why in conflicts[:5])
    more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
    return AlreadyExistsError(
        f"the user already holds other versions of {len(conflicts)} memories: {shown}{more}; "
        "import into a new user, or delete this one first",
        reason="IMPORT_CONFLICT",
        metadata={"nodes": ",".join(str(i) for i, _ in conflicts[:100])},
    )


def _spooled(spool: IO[bytes], *, episodes: bool) -> Iterator[Memory]:
    spool.seek(0)
    for line in spool:
        memory = MEMORY_ADAPTER.validate_json(line)
        if isinstance(memory, Episode) == episodes:
            yield memory


def _batches(items: Iterator[Memory], size: int) -> Iterator[list[Memory]]:
    while batch := list(itertools.islice(items, size)):
        yield batch
