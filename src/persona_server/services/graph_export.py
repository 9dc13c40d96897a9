"""ExportGraph: a user's whole graph, page by page, in the order the stores define
(`ExportOps`): every node, then the edges of each kind in turn.

The server holds one page at a time, whatever the user's size. Pages are separate reads, so a
write landing in the middle could yield a graph that never existed (an edge to a node that was
not exported). The user's change-log position is checked before the first page and after every
page, and the export fails with ABORTED as soon as it moved: a client never gets an export it
cannot import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from persona_server.domain.errors import AbortedError
from persona_server.domain.graph import Edge, EdgeKind
from persona_server.domain.models import Memory, UserRef
from persona_server.ports.graph_store import GraphStore

PAGE_SIZE = 500
EDGE_ORDER = (
    EdgeKind.NEXT,
    EdgeKind.MENTIONS,
    EdgeKind.DERIVED_FROM,
    EdgeKind.SUBJECT,
    EdgeKind.OBJECT,
)

Records = list[Memory] | list[Edge]


class GraphExportService:
    def __init__(self, store: GraphStore, *, page_size: int = PAGE_SIZE) -> None:
        self._store = store
        self._page_size = page_size

    async def export(self, user: UserRef) -> AsyncIterator[Records]:
        """Pages of nodes, then pages of edges; never an empty page."""
        start = await self._store.changes.latest_seq(user)
        cursor = ""
        while True:
            page = await self._store.export.nodes(user, cursor=cursor, limit=self._page_size)
            await self._check(user, start)
            if page.memories:
                yield page.memories
            cursor = page.next_cursor
            if not cursor:
                break
        for kind in EDGE_ORDER:
            cursor = ""
            while True:
                edges = await self._store.export.edges(
                    user, kind, cursor=cursor, limit=self._page_size
                )
                await self._check(user, start)
                if edges.edges:
                    yield edges.edges
                cursor = edges.next_cursor
                if not cursor:
                    break

    async def _check(self, user: UserRef, start: int) -> None:
        now = await self._store.changes.latest_seq(user)
        if now != start:
            raise AbortedError(
                f"the graph of user {user.user_id!r} changed during the export (change log "
                f"{start} -> {now}); export again when its writes pause",
                reason="GRAPH_CHANGED",
            )
