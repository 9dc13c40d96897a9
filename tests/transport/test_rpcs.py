"""Each RPC's happy path through the SDK against the real server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from persona import AsyncPersonaClient, FailedPreconditionError, Item, NotFoundError
from persona.v1 import memory_pb2 as pb
from persona.v1 import memory_service_pb2 as svc

LISBON = "I moved to Lisbon in March and started learning Portuguese"


async def test_ingest_then_recall_finds_it(client: AsyncPersonaClient) -> None:
    response = await client.ingest("u1", [Item(LISBON, source_id="m1")])
    assert len(response.results) == 1
    result = response.results[0]
    assert result.episode_id.startswith("ep_")
    assert result.source_id == "m1"
    assert result.outcome == svc.INGEST_OUTCOME_CREATED

    recalled = await client.recall("u1", "where does the user live", max_results=5)
    assert recalled.results, "the ingested memory must be recalled"
    # The episode leads a result or travels in the passage of a memory drawn from it.
    members = [(r, m) for r in recalled.results for m in (r.memory, *r.joined)]
    assert LISBON in [m.text for _, m in members]
    top, episode = next((r, m) for r, m in members if m.type == pb.MEMORY_TYPE_EPISODE)
    assert episode.provenance.source_ids == ["m1"]
    assert top.score > 0
    assert "Lisbon" in recalled.context_block


async def test_recall_ranks_the_relevant_memory_first(client: AsyncPersonaClient) -> None:
    await client.ingest(
        "u1",
        [
            Item("My sister Ana works as a nurse in Porto", source_id="a"),
            Item("I had pasta with tomato sauce for dinner", source_id="b"),
            Item("The football match last night was boring", source_id="c"),
        ],
    )
    recalled = await client.recall(
        "u1", "what did I eat for dinner", max_results=3, types=["episode"], explain=True
    )
    assert recalled.results[0].memory.provenance.source_ids == ["b"]
    assert {c.channel for c in recalled.results[0].channels} >= {"vector"}
    scores = [r.score for r in recalled.results]
    assert scores == sorted(scores, reverse=True)


async def test_recall_on_unknown_user_is_empty(client: AsyncPersonaClient) -> None:
    recalled = await client.recall("nobody", "anything at all", max_results=5)
    assert list(recalled.results) == []


async def test_get_list_delete_memory(client: AsyncPersonaClient) -> None:
    ingested = await client.ingest(
        "u1", [Item(f"note number {i}", source_id=f"n{i}") for i in range(5)]
    )
    first_id = ingested.results[0].episode_id
    # The response reports each item's extraction as it stands: done for the new ones, and
    # as stored for a repeat that changed nothing.
    assert {r.extraction.state for r in ingested.results} == {pb.EXTRACTION_STATE_DONE}
    repeat = await client.ingest("u1", [Item("note number 0", source_id="n0")])
    assert repeat.results[0].episode_id == first_id
    assert repeat.results[0].extraction.state == pb.EXTRACTION_STATE_DONE
    assert repeat.results[0].extraction.attempts == 1
    got = await client.get_memory("u1", first_id)
    assert got.memory.text == "note number 0"
    assert got.memory.episode.source_id == "n0"
    assert got.memory.user_id == "u1"
    # Offline extraction ran inside Ingest: done, and its summary is on the episode.
    assert got.memory.episode.extraction.state == pb.EXTRACTION_STATE_DONE
    assert got.memory.episode.summary == "note number 0"

    page = await client.list_memories("u1", page_size=2, types=["episode"])
    assert len(page.memories) == 2 and page.next_page_token
    every = [m async for m in client.iter_memories("u1", page_size=2, types=["episode"])]
    assert sorted(m.episode.source_id for m in every) == [f"n{i}" for i in range(5)]

    deleted = await client.delete_memory("u1", first_id)
    assert first_id in deleted.deleted_ids
    with pytest.raises(NotFoundError):
        await client.get_memory("u1", first_id)
    remaining = [m async for m in client.iter_memories("u1", types=["episode"])]
    assert len(remaining) == 4


async def test_get_unknown_memory_is_not_found(client: AsyncPersonaClient) -> None:
    await client.ingest("u1", [Item("hello there", source_id="h")])
    with pytest.raises(NotFoundError) as err:
        await client.get_memory("u1", "ep_doesnotexist")
    assert err.value.reason == "MEMORY_NOT_FOUND"


async def test_delete_user_leaves_nothing(client: AsyncPersonaClient) -> None:
    await client.ingest("u1", [Item("I love hiking with my friend Sam in Sintra", source_id="x")])
    assert [m async for m in client.iter_memories("u1")]
    response = await client.delete_user("u1")
    assert response.deleted_memories >= 1
    assert [m async for m in client.iter_memories("u1", include_invalidated=True)] == []
    recalled = await client.recall("u1", "hiking", max_results=5)
    assert list(recalled.results) == []


async def test_ask_structured_without_llm_explains_how_to_configure(
    client: AsyncPersonaClient,
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": ["string", "null"]}}}
    with pytest.raises(FailedPreconditionError) as err:
        await client.ask_structured("u1", "Where does the user live?", json.dumps(schema))
    assert err.value.reason == "LLM_NOT_CONFIGURED"
    assert "PERSONA_LLM_MODEL" in err.value.message


async def test_stream_context_snapshot_then_update(client: AsyncPersonaClient) -> None:
    await client.ingest("u1", [Item("I adopted a cat named Miso", source_id="cat")])
    stream = client.stream_context("u1", query="pets", max_results=5, heartbeat_seconds=1)
    try:
        events = stream.__aiter__()
        first = await asyncio.wait_for(events.__anext__(), 10)
        assert first.WhichOneof("event") == "snapshot"
        assert any("Miso" in r.memory.text for r in first.snapshot.results)
        assert first.resume_token

        await client.ingest("u1", [Item("Miso learned to open the fridge", source_id="cat2")])
        update = None
        for _ in range(10):
            event = await asyncio.wait_for(events.__anext__(), 10)
            if event.WhichOneof("event") == "update":
                update = event
                break
        assert update is not None, "an update must follow the ingest"
        texts = [c.result.memory.text for c in update.update.changes]
        assert "Miso learned to open the fridge" in texts
        assert update.resume_token != first.resume_token
    finally:
        await stream.aclose()


async def test_stream_resume_replays_missed_changes(client: AsyncPersonaClient) -> None:
    await client.ingest("u1", [Item("first memory", source_id="r1")])
    stream = client.stream_context("u1", heartbeat_seconds=1)
    snapshot = await asyncio.wait_for(stream.__aiter__().__anext__(), 10)
    await stream.aclose()
    await client.ingest("u1", [Item("missed while away", source_id="r2")])

    resumed = client.stream_context("u1", resume_token=snapshot.resume_token, heartbeat_seconds=1)
    try:
        event = await asyncio.wait_for(resumed.__aiter__().__anext__(), 10)
        assert event.WhichOneof("event") == "update"
        assert "missed while away" in [c.result.memory.text for c in event.update.changes]
    finally:
        await resumed.aclose()


async def test_stream_heartbeat(client: AsyncPersonaClient) -> None:
    stream = client.stream_context("quiet-user", heartbeat_seconds=1)
    try:
        events = stream.__aiter__()
        assert (await asyncio.wait_for(events.__anext__(), 10)).WhichOneof("event") == "snapshot"
        beat = await asyncio.wait_for(events.__anext__(), 10)
        assert beat.WhichOneof("event") == "heartbeat"
        server_time = beat.heartbeat.server_time.ToDatetime(tzinfo=UTC)
        assert abs((server_time - datetime.now(UTC)).total_seconds()) < 30
    finally:
        await stream.aclose()
