"""Knowledge schemas and documents (`KnowledgeOps`), the same on every store."""

from __future__ import annotations

from datetime import timedelta

from persona_server.domain.knowledge import (
    FieldChange,
    KnowledgeDocument,
    KnowledgeField,
    KnowledgeSchema,
)
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import GraphStore

from .helpers import T0, episode, new_user, put

SCHEMA = '{"type": "object", "properties": {"city": {"type": "string"}}}'


def schema(user: UserRef, name: str = "profile", text: str = SCHEMA) -> KnowledgeSchema:
    return KnowledgeSchema(user.tenant, name, text, T0, T0)


def document(name: str = "profile", cursor: int = 1, city: str = "Paris") -> KnowledgeDocument:
    return KnowledgeDocument(
        name,
        {
            "city": KnowledgeField(
                city,
                ["ep-2"],
                ["s-2"],
                T0 + timedelta(hours=1),
                [FieldChange("Lyon", T0 + timedelta(hours=1), ["ep-1"], ["ep-2"])],
            )
        },
        cursor,
        T0 + timedelta(hours=1),
    )


async def test_schemas_upsert_list_and_delete(store: GraphStore, user: UserRef) -> None:
    ops = store.knowledge
    assert await ops.put_schema(schema(user), 10) == (True, True)
    later = KnowledgeSchema(user.tenant, "profile", '{"type": "object"}', T0, T0 + timedelta(1))
    assert await ops.put_schema(later, 10) == (False, True)
    stored = await ops.get_schema(user.tenant, "profile")
    assert stored is not None
    assert stored.json_schema == '{"type": "object"}'
    assert stored.created_at == T0  # a replacement keeps the creation time
    assert stored.updated_at == T0 + timedelta(1)
    await ops.put_schema(schema(user, "b_second"), 10)
    await ops.put_schema(schema(user, "a_first"), 10)
    names = [s.name for s in await ops.list_schemas(user.tenant, after="", limit=10)]
    assert names == ["a_first", "b_second", "profile"]
    page = await ops.list_schemas(user.tenant, after="a_first", limit=1)
    assert [s.name for s in page] == ["b_second"]
    assert await ops.delete_schema(user.tenant, "b_second") == 0
    assert await ops.delete_schema(user.tenant, "b_second") is None
    assert await ops.get_schema(user.tenant, "b_second") is None


async def test_schema_limit_refuses_new_names_only(store: GraphStore, user: UserRef) -> None:
    ops = store.knowledge
    await ops.put_schema(schema(user, "one"), 2)
    await ops.put_schema(schema(user, "two"), 2)
    assert await ops.put_schema(schema(user, "three"), 2) == (True, False)
    assert await ops.get_schema(user.tenant, "three") is None
    assert await ops.put_schema(schema(user, "two", '{"type": "object"}'), 2) == (False, True)


async def test_schemas_are_per_tenant(store: GraphStore, user: UserRef) -> None:
    other = new_user()
    await store.knowledge.put_schema(schema(user), 10)
    assert await store.knowledge.get_schema(other.tenant, "profile") is None
    assert await store.knowledge.list_schemas(other.tenant, after="", limit=10) == []
    assert await store.knowledge.delete_schema(other.tenant, "profile") is None
    assert await store.knowledge.get_schema(user.tenant, "profile") is not None


async def test_documents_round_trip_with_compare_and_set(store: GraphStore, user: UserRef) -> None:
    await put(store, user, [episode("s-1", "I live in Lyon"), episode("s-2", "Moved to Paris")])
    await store.knowledge.put_schema(schema(user), 10)
    assert await store.knowledge.documents(user) == {}
    assert await store.knowledge.put_documents(user, [(document(cursor=1), 0)])
    assert await store.knowledge.documents(user) == {"profile": document(cursor=1)}
    # A writer that read an older cursor loses: nothing changes.
    assert not await store.knowledge.put_documents(user, [(document(cursor=2, city="X"), 0)])
    assert await store.knowledge.put_documents(user, [(document(cursor=2), 1)])
    assert (await store.knowledge.documents(user))["profile"].cursor == 2
    # Nothing written for an episode the user no longer has (deleted during the model call).
    (ep_id, *_) = await store.episodes.chain(user)
    assert not await store.knowledge.put_documents(user, [(document(cursor=3), 2)], requires="ep_x")
    assert await store.knowledge.put_documents(user, [(document(cursor=3), 2)], requires=ep_id)
    # No document for a schema that is not registered (deleted meanwhile).
    assert not await store.knowledge.put_documents(user, [(document("gone"), 0)])
    # Another tenant's user of the same id sees nothing.
    assert await store.knowledge.documents(UserRef(tenant="other", user_id=user.user_id)) == {}


async def test_episodes_after_and_behind(store: GraphStore, user: UserRef) -> None:
    await put(store, user, [episode(f"s-{i}", f"item {i}") for i in range(3)])
    after = await store.knowledge.episodes_after(user, 1, 10)
    assert [seq for seq, _ in after] == [2, 3]
    assert await store.knowledge.count_episodes_after(user, 1) == 2
    assert await store.knowledge.count_episodes_after(UserRef(tenant="none", user_id="x"), 0) == 0
    assert await store.knowledge.latest_episode_seq(user) == 3
    assert user not in await store.knowledge.behind(10_000)  # no schema yet
    await store.knowledge.put_schema(schema(user), 10)
    await store.knowledge.put_schema(schema(user, "other"), 10)
    assert user in await store.knowledge.behind(10_000)
    await store.knowledge.put_documents(user, [(document(cursor=3), 0)])
    assert user in await store.knowledge.behind(10_000)  # "other" is still at 0
    await store.knowledge.put_documents(user, [(document("other", cursor=3), 0)])
    assert user not in await store.knowledge.behind(10_000)


async def test_deleting_schema_or_user_deletes_documents(store: GraphStore, user: UserRef) -> None:
    await put(store, user, [episode("s-1", "hello")])
    await store.knowledge.put_schema(schema(user), 10)
    await store.knowledge.put_schema(schema(user, "kept"), 10)
    await store.knowledge.put_documents(user, [(document(), 0), (document("kept"), 0)])
    assert await store.knowledge.delete_schema(user.tenant, "profile") == 1
    assert list(await store.knowledge.documents(user)) == ["kept"]
    await store.users.delete(user)
    assert await store.knowledge.documents(user) == {}
    # The schema is the tenant's: it outlives the user.
    assert await store.knowledge.get_schema(user.tenant, "kept") is not None
