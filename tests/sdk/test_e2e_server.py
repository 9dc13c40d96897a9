"""Both clients against the real Persona server (embedded store, local embeddings, no LLM)."""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import persona
from persona.v1 import memory_pb2
from persona.v1 import memory_service_pb2 as pb

API_KEY = "e2e-key"  # real_server.API_KEY


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # Imported here, not at the top: if the server cannot even be imported, these tests fail
    # one by one instead of stopping the collection of every other test.
    harness = importlib.import_module("tests.sdk.real_server")
    running = harness.RealServer(Path(tmp_path_factory.mktemp("persona-e2e")))
    try:
        yield running
    finally:
        running.stop()


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


async def _eventually_async(condition: Callable[[], bool]) -> bool:
    return await asyncio.to_thread(_eventually, condition)


def test_sync_round_trip(server: Any) -> None:
    with persona.PersonaClient(server.target, api_key=API_KEY) as client:
        created = client.ingest(
            "sync-user",
            [
                persona.Item(
                    "I moved to Lisbon last month",
                    source_id="m1",
                    occurred_at=datetime(2023, 5, 8, 13, 56),
                    metadata={"channel": "sms"},
                ),
                persona.Item("My sister Carla lives in Porto", source_id="m2"),
            ],
        )
        assert [r.outcome for r in created.results] == [pb.INGEST_OUTCOME_CREATED] * 2
        again = client.ingest(
            "sync-user", [persona.Item("I moved to Lisbon last month", source_id="m1")]
        )
        assert again.results[0].outcome == pb.INGEST_OUTCOME_UNCHANGED

        recalled = client.recall("sync-user", "moved to Lisbon", types="episode")
        # (ranking is the server's business: find the item by its source id)
        top = next(
            r.memory for r in recalled.results if list(r.memory.provenance.source_ids) == ["m1"]
        )
        assert top.text == "I moved to Lisbon last month"
        assert dict(top.metadata) == {"channel": "sms"}
        assert top.occurred_at.ToDatetime(tzinfo=UTC) == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)

        assert client.get_memory("sync-user", top.id).memory.id == top.id
        ids = {m.id for m in client.iter_memories("sync-user", page_size=1)}
        assert top.id in ids
        assert top.id in client.delete_memory("sync-user", top.id).deleted_ids
        with pytest.raises(persona.NotFoundError):
            client.get_memory("sync-user", top.id)
        assert client.delete_user("sync-user").deleted_memories >= 1


def test_server_errors_arrive_typed(server: Any) -> None:
    with persona.PersonaClient(server.target, api_key=API_KEY) as client:
        with pytest.raises(persona.InvalidArgumentError) as invalid:
            client.recall("u-err", "q", max_results=0)
        assert invalid.value.domain == "persona.dev"
        assert invalid.value.field_violations[0].field == "max_results"

        # far in the future: the SDK sends it, the server refuses it
        with pytest.raises(persona.InvalidArgumentError) as future:
            client.ingest("u-err", [persona.Item("x", occurred_at="2999-01-01")])
        assert future.value.field_violations[0].field == "items[0].occurred_at"

        client.ingest("u-err", [persona.Item("first text", source_id="dup")])
        with pytest.raises(persona.AlreadyExistsError) as conflict:
            client.ingest("u-err", [persona.Item("other text", source_id="dup")])
        assert conflict.value.reason == "SOURCE_ID_CONFLICT"

        with pytest.raises(persona.FailedPreconditionError) as no_llm:
            client.ask_structured("u-err", "city?", {"type": "object"})
        assert no_llm.value.reason == "LLM_NOT_CONFIGURED"

    with (
        persona.PersonaClient(server.target, api_key="wrong") as client,
        pytest.raises(persona.UnauthenticatedError),
    ):
        client.recall("u-err", "q")


async def test_async_round_trip_and_stream_update(server: Any) -> None:
    async with persona.AsyncPersonaClient(server.target, api_key=API_KEY) as client:
        await client.ingest(
            "async-user", [persona.Item("I adopted a cat named Miso", source_id="a1")]
        )
        stream = client.stream_context("async-user", query="pets", heartbeat_seconds=1)
        first = await anext(stream)
        assert first.WhichOneof("event") == "snapshot"
        snapshot = [m for r in first.snapshot.results for m in (r.memory, *r.joined)]
        assert any(m.text.startswith("I adopted") for m in snapshot)

        await client.ingest("async-user", [persona.Item("Miso learned to sit", source_id="a2")])
        added: list[str] = []
        async with asyncio.timeout(15):
            async for event in stream:
                if event.WhichOneof("event") == "update":
                    added += [
                        c.result.memory.text
                        for c in event.update.changes
                        if c.kind == pb.CHANGE_KIND_ADDED
                    ]
                    if "Miso learned to sit" in added:
                        break
        assert stream.resume_token
        await stream.aclose()


async def test_async_break_cancels_the_servers_stream(server: Any) -> None:
    async with persona.AsyncPersonaClient(server.target, api_key=API_KEY) as client:
        await client.ingest("cancel-user", text="hello")
        async for _event in client.stream_context("cancel-user", heartbeat_seconds=1):
            assert await _eventually_async(lambda: server.stream_subscribers() >= 1)
            break
        assert await _eventually_async(lambda: server.stream_subscribers() == 0)


async def test_task_cancellation_cancels_the_servers_stream(server: Any) -> None:
    async with persona.AsyncPersonaClient(server.target, api_key=API_KEY) as client:

        async def consume() -> None:
            async for _event in client.stream_context("cancel-user-2", heartbeat_seconds=1):
                pass

        task = asyncio.create_task(consume())
        assert await _eventually_async(lambda: server.stream_subscribers() >= 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _eventually_async(lambda: server.stream_subscribers() == 0)


def test_sync_close_cancels_the_servers_stream(server: Any) -> None:
    with persona.PersonaClient(server.target, api_key=API_KEY) as client:
        stream = client.stream_context("cancel-user-3", types=[memory_pb2.MEMORY_TYPE_EPISODE])
        assert next(stream).WhichOneof("event") == "snapshot"
        assert _eventually(lambda: server.stream_subscribers() >= 1)
        stream.close()
        assert _eventually(lambda: server.stream_subscribers() == 0)
