"""SQLite: a deleted user's knowledge documents leave no trace in the database files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.knowledge import KnowledgeDocument, KnowledgeField, KnowledgeSchema

from .helpers import DIM, MODEL, episode, new_user, put
from .test_sqlite_store import raw_bytes

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MARKER = "Qvzkknowledgemarker"


async def test_delete_user_leaves_no_knowledge_document_behind(tmp_path: Path) -> None:
    store = SqliteGraphStore(tmp_path / "persona.db")
    await store.open(embedding_model=MODEL, dimension=DIM)
    try:
        doomed, kept = new_user(), new_user("bob")
        schema = '{"type": "object", "properties": {"city": {}}}'
        for u in (doomed, kept):
            await put(store, u, [episode("s1", "I live somewhere")])
            await store.knowledge.put_schema(KnowledgeSchema(u.tenant, "p", schema, T0, T0), 10)
        value = f"{MARKER} city"
        field = KnowledgeField(value, ["ep_1"], ["s1"], T0)
        await store.knowledge.put_documents(doomed, [(KnowledgeDocument("p", {"city": field}), 0)])
        other = KnowledgeField("Lisbon", ["ep_2"], ["s1"], T0)
        await store.knowledge.put_documents(kept, [(KnowledgeDocument("p", {"city": other}), 0)])
        assert MARKER.encode() in raw_bytes(store.path)
        await store.users.delete(doomed)
        assert MARKER.encode() not in raw_bytes(store.path)
        assert (await store.knowledge.documents(kept))["p"].value == {"city": "Lisbon"}
    finally:
        await store.close()
