"""ExportGraph / ImportGraph requests, shared by the async and sync clients."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from persona._errors import invalid_argument
from persona.v1 import graph_pb2, memory_pb2

__all__ = ["GraphRecord", "export_request", "import_requests"]

GraphRecord = memory_pb2.Memory | graph_pb2.GraphEdge

# Well under the server's default 4 MiB message limit.
CHUNK_BYTES = 1 << 20
CHUNK_RECORDS = 500


def export_request(user_id: str, chunk_size: int) -> graph_pb2.ExportGraphRequest:
    return graph_pb2.ExportGraphRequest(user_id=user_id, chunk_size=chunk_size)


def import_requests(
    user_id: str, records: Iterable[GraphRecord]
) -> Iterator[graph_pb2.ImportGraphRequest]:
    """The records in order, in requests of at most `CHUNK_RECORDS` and about `CHUNK_BYTES`.
    The first request names the user (the server wants it there), even when there are no
    records."""
    request = graph_pb2.ImportGraphRequest(user_id=user_id)
    count = size = 0
    first = True
    for record in records:
        if not isinstance(record, memory_pb2.Memory | graph_pb2.GraphEdge):
            raise invalid_argument("records", f"expected Memory or GraphEdge, got {record!r}")
        record_size = record.ByteSize() + 8
        if count and (count >= CHUNK_RECORDS or size + record_size > CHUNK_BYTES):
            yield request
            first = False
            request = graph_pb2.ImportGraphRequest()
            count = size = 0
        if isinstance(record, memory_pb2.Memory):
            request.nodes.append(record)
        else:
            request.edges.append(record)
        count += 1
        size += record_size
    if count or first:
        yield request
