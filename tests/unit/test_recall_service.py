"""RecallService over the embedded store with the real local embedder: expansion and fetching.

Store-level behaviour is in tests/store; here, what the service does with it: neighbours that
inherit enough score are returned, and when more of the best-ranked candidates drop out (a
filter the store's search applied but expansion did not) than the first fetch allowed for,
Recall fetches further rather than return fewer results than it could.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import MemoryFilter
from persona_server.services.commands import IngestCommand, NewItem, RecallQuery
from persona_server.services.ingest import IngestService
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.recall import RecallService, RecallTuning

USER = UserRef(tenant="t", user_id="u")
T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)


async def ingest(store: SqliteGraphStore, embedder: LocalOnnxEmbedder, texts: list[str]) -> None:
    """One item per text, ten minutes apart; every fourth is on the chat channel."""
    items = [
        NewItem(
            text=text,
            source_id=f"s{i}",
            occurred_at=T0 + timedelta(minutes=10 * i),
            metadata={"channel": "chat" if i % 4 == 0 else "email"},
        )
        for i, text in enumerate(texts)
    ]
    await IngestService(store, embedder, ChangeNotifier()).ingest(IngestCommand(USER, items))


TEXTS = [
    f"note {i}: " + ("we talked about the sailing trip" if i % 4 == 0 else f"invoice {i} is due")
    for i in range(40)
]


async def test_chain_neighbours_join_the_results(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    await ingest(store, embedder, TEXTS)
    recall = RecallService(store, embedder, RecallTuning(temporal_weight=5.0))
    out = await recall.recall(RecallQuery(USER, "sailing trip", max_results=6, explain=True))
    assert len(out.results) == 6
    channels = {h.channel for r in out.results for h in r.channels}
    assert "temporal" in channels
    # a neighbour carries its provenance like any other result
    assert all(r.memory.source_ids for r in out.results)


async def test_refetches_when_more_drop_out_than_the_margin(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    await ingest(store, embedder, TEXTS)
    # Neighbours inherit five times their seed's score, so the email episodes around every
    # chat hit outrank all chat episodes, and the filter then drops them.
    recall = RecallService(store, embedder, RecallTuning(temporal_weight=5.0, temporal_window=3))
    chat = MemoryFilter(metadata={"channel": "chat"})
    out = await recall.recall(RecallQuery(USER, "sailing trip", max_results=3, filter=chat))
    assert len(out.results) == 3
    assert all(r.memory.metadata["channel"] == "chat" for r in out.results)
    assert all("sailing" in r.memory.text for r in out.results)
