"""Identity and time rules: idempotent source ids, replace, occurred_at defaults and limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from persona import AlreadyExistsError, AsyncPersonaClient, InvalidArgumentError, Item
from persona.v1 import memory_service_pb2 as svc
from persona_server.app import App
from persona_server.domain.models import UserRef


async def test_same_source_id_same_text_is_a_noop(client: AsyncPersonaClient) -> None:
    first = await client.ingest("u1", [Item("I like tea", source_id="s1")])
    again = await client.ingest("u1", [Item("I like tea", source_id="s1")])
    assert again.results[0].episode_id == first.results[0].episode_id
    assert again.results[0].outcome == svc.INGEST_OUTCOME_UNCHANGED
    episodes = [m async for m in client.iter_memories("u1", types=["episode"])]
    assert len(episodes) == 1


async def test_same_source_id_other_text_conflicts_unless_replace(
    client: AsyncPersonaClient,
) -> None:
    first = await client.ingest("u1", [Item("I live in Berlin", source_id="s1")])
    with pytest.raises(AlreadyExistsError) as err:
        await client.ingest("u1", [Item("I live in Paris", source_id="s1")])
    assert err.value.reason == "SOURCE_ID_CONFLICT"
    got = await client.get_memory("u1", first.results[0].episode_id)
    assert got.memory.text == "I live in Berlin"

    replaced = await client.ingest("u1", [Item("I live in Paris", source_id="s1")], replace=True)
    assert replaced.results[0].outcome == svc.INGEST_OUTCOME_REPLACED
    assert replaced.results[0].episode_id == first.results[0].episode_id
    got = await client.get_memory("u1", first.results[0].episode_id)
    assert got.memory.text == "I live in Paris"
    # What was derived from the old text went with it.
    every = [m async for m in client.iter_memories("u1", include_invalidated=True)]
    assert not any("Berlin" in m.text for m in every)


async def test_conflict_in_a_batch_writes_nothing(client: AsyncPersonaClient) -> None:
    await client.ingest("u1", [Item("original", source_id="s1")])
    with pytest.raises(AlreadyExistsError):
        await client.ingest(
            "u1", [Item("brand new", source_id="s2"), Item("changed", source_id="s1")]
        )
    episodes = [m async for m in client.iter_memories("u1", types=["episode"])]
    assert [m.episode.source_id for m in episodes] == ["s1"]


async def test_server_assigns_source_id_and_time(client: AsyncPersonaClient) -> None:
    before = datetime.now(UTC)
    response = await client.ingest("u1", [Item("no ids given")])
    source_id = response.results[0].source_id
    assert source_id
    got = await client.get_memory("u1", response.results[0].episode_id)
    assert got.memory.episode.source_id == source_id
    occurred = got.memory.occurred_at.ToDatetime(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= occurred <= datetime.now(UTC) + timedelta(seconds=1)


async def test_occurred_at_limits(client: AsyncPersonaClient) -> None:
    soon = datetime.now(UTC) + timedelta(hours=12)
    await client.ingest("u1", [Item("planned for tonight", source_id="ok", occurred_at=soon)])
    far = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(InvalidArgumentError) as err:
        await client.ingest("u1", [Item("from the future", source_id="f", occurred_at=far)])
    assert [v.field for v in err.value.field_violations] == ["items[0].occurred_at"]


async def test_user_ids_are_scoped_by_tenant(
    client: AsyncPersonaClient, client_b: AsyncPersonaClient
) -> None:
    await client.ingest("u1", [Item("tenant A's secret plan", source_id="s1")])
    # The same source id in tenant B is another user's: no conflict, a new episode.
    response = await client_b.ingest("u1", [Item("tenant B's own note", source_id="s1")])
    assert response.results[0].outcome == svc.INGEST_OUTCOME_CREATED
    texts_b = [m.text async for m in client_b.iter_memories("u1", types=["episode"])]
    assert texts_b == ["tenant B's own note"]


async def test_equal_occurred_at_keeps_ingest_order_and_backfill_relinks(
    client: AsyncPersonaClient, app: App
) -> None:
    t0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    await client.ingest("u1", [Item("b", source_id="b", occurred_at=t0)])
    await client.ingest("u1", [Item("c", source_id="c", occurred_at=t0)])
    await client.ingest("u1", [Item("a", source_id="a", occurred_at=t0 - timedelta(days=1))])
    chain = await app.store.episodes.chain(UserRef(tenant="tenant-a", user_id="u1"))
    memories = await app.store.memories.get_many(UserRef(tenant="tenant-a", user_id="u1"), chain)
    assert [memories[i].text for i in chain] == ["a", "b", "c"]
