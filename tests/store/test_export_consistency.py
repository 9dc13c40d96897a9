"""ExportGraph never hands out a graph that did not exist: a write landing between two pages
ends the export with ABORTED (the file would hold edges to nodes it lacks)."""

from __future__ import annotations

import pytest

from persona_server.domain.errors import AbortedError
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import GraphStore
from persona_server.services.graph_export import GraphExportService

from .helpers import episode, hours, put


async def test_a_write_between_pages_aborts_the_export(store: GraphStore, user: UserRef) -> None:
    await put(store, user, [episode(f"s{i}", f"note {i}", hours(i)) for i in range(5)])
    whole = [r async for page in GraphExportService(store).export(user) for r in page]
    assert len(whole) == 5 + 4  # the nodes, then the chain

    pages = GraphExportService(store, page_size=2).export(user)
    first = await pages.__anext__()
    assert len(first) == 2
    await put(store, user, [episode("late", "written during the export", hours(9))])
    with pytest.raises(AbortedError, match="changed during the export"):
        async for _ in pages:
            pass
    # A fresh export after the write is whole again.
    assert (
        len([r async for p in GraphExportService(store, page_size=2).export(user) for r in p])
        == 6 + 5
    )
