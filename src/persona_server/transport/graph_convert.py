"""ExportGraph responses: pages of domain records into size-bounded proto chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from persona.v1 import graph_pb2 as gpb
from persona.v1 import memory_pb2 as pb
from persona_server.domain.graph import Edge
from persona_server.domain.models import Memory
from persona_server.services.graph_export import Records
from persona_server.transport.convert import memory
from persona_server.transport.graph_validation import EDGE_KINDS

DEFAULT_CHUNK_RECORDS = 500
# Well under the default 4 MiB message limit, and small enough that a client sees progress.
CHUNK_BYTES = 1 << 20
_EDGE_PB = {kind: number for number, kind in EDGE_KINDS.items()}


def graph_node(mem: Memory, user_id: str) -> pb.Memory:
    out = memory(mem, user_id)
    out.ClearField("provenance")  # DERIVED_FROM edges carry it, complete
    return out


def graph_edge(edge: Edge) -> gpb.GraphEdge:
    return gpb.GraphEdge(type=_EDGE_PB[edge.kind], from_id=edge.from_id, to_id=edge.to_id)


async def chunks(
    pages: AsyncIterator[Records], user_id: str, max_records: int
) -> AsyncIterator[gpb.ExportGraphResponse]:
    """Chunks of at most `max_records` records and about `CHUNK_BYTES`, in page order."""
    chunk = gpb.ExportGraphResponse()
    count = size = 0
    async for page in pages:
        for record in page:
            if isinstance(record, Edge):
                item: pb.Memory | gpb.GraphEdge = graph_edge(record)
            else:
                item = graph_node(record, user_id)
            item_size = item.ByteSize() + 8
            if count and (count >= max_records or size + item_size > CHUNK_BYTES):
                yield chunk
                chunk = gpb.ExportGraphResponse()
                count = size = 0
            if isinstance(item, gpb.GraphEdge):
                chunk.edges.append(item)
            else:
                chunk.nodes.append(item)
            count += 1
            size += item_size
    if count:
        yield chunk
