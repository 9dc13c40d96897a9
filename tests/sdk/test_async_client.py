"""The asyncio client against a real in-process server: requests built, retries, paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import grpc
import grpc.aio
import pytest

import persona
from persona.v1 import memory_pb2
from persona.v1 import memory_service_pb2 as pb
from tests.sdk.fake_service import FakeServer, memory, rich_status

FAST = persona.RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01)
UNAVAILABLE = rich_status(grpc.StatusCode.UNAVAILABLE, "store down", reason="STORE_UNAVAILABLE")


def _client(server: FakeServer, **kwargs: object) -> persona.AsyncPersonaClient:
    return persona.AsyncPersonaClient(server.target, api_key="secret", retry=FAST, **kwargs)  # type: ignore[arg-type]


async def test_ingest_builds_items_from_friendly_values(fake_server: FakeServer) -> None:
    fake_server.service.default["Ingest"] = pb.IngestResponse()
    async with _client(fake_server) as client:
        await client.ingest(
            "u1",
            [
                persona.Item(
                    "I moved to Lisbon",
                    source_id="msg-1",
                    occurred_at=datetime(2023, 5, 8, 13, 56),  # naive: read as UTC
                    source_type="chat_message",
                    speaker="Ana",
                    role="user",
                    metadata={"channel": "sms"},
                ),
                {"text": "bought a bike", "occurred_at": "2023-05-09T10:00:00+02:00"},
                pb.IngestItem(text="raw proto", source_id="p1"),
            ],
            replace=True,
            wait_for_extraction=True,
        )
    call = fake_server.service.calls_to("Ingest")[0]
    assert call.metadata["x-api-key"] == "secret"
    request = call.request
    assert request.user_id == "u1" and request.replace and request.wait_for_extraction
    first, second, third = request.items
    assert first.occurred_at.ToDatetime(tzinfo=UTC) == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert first.source_type == memory_pb2.SOURCE_TYPE_CHAT_MESSAGE
    assert first.role == memory_pb2.CHAT_ROLE_USER
    assert (first.speaker, dict(first.metadata)) == ("Ana", {"channel": "sms"})
    assert second.occurred_at.ToDatetime(tzinfo=UTC) == datetime(2023, 5, 9, 8, 0, tzinfo=UTC)
    assert third.source_id == "p1"


async def test_ingest_text_shortcut(fake_server: FakeServer) -> None:
    fake_server.service.default["Ingest"] = pb.IngestResponse()
    async with _client(fake_server) as client:
        await client.ingest("u1", text="hello")
        with pytest.raises(TypeError):
            await client.ingest("u1", "hello")  # type: ignore[arg-type]
    assert [i.text for i in fake_server.service.calls_to("Ingest")[0].request.items] == ["hello"]


async def test_recall_builds_filter_and_has_a_deadline(fake_server: FakeServer) -> None:
    fake_server.service.default["Recall"] = pb.RecallResponse(
        results=[pb.RecallResult(memory=memory(), score=0.5)]
    )
    async with _client(fake_server, default_timeout_s=7.0) as client:
        response = await client.recall(
            "u1",
            "where does she live?",
            max_results=5,
            types=["episode", memory_pb2.MEMORY_TYPE_FACT],
            time_range=(datetime(2023, 1, 1, tzinfo=timezone(timedelta(hours=2))), None),
            metadata={"channel": "sms"},
            explain=True,
            as_of="2024-01-01",
        )
    assert response.results[0].memory.id == "ep_1"
    call = fake_server.service.calls_to("Recall")[0]
    request = call.request
    assert list(request.filter.types) == [
        memory_pb2.MEMORY_TYPE_EPISODE,
        memory_pb2.MEMORY_TYPE_FACT,
    ]
    assert request.filter.time_range.start.ToDatetime(tzinfo=UTC) == datetime(
        2022, 12, 31, 22, 0, tzinfo=UTC
    )
    assert not request.filter.time_range.HasField("end")
    assert dict(request.filter.metadata) == {"channel": "sms"}
    assert request.as_of.ToDatetime(tzinfo=UTC) == datetime(2024, 1, 1, tzinfo=UTC)
    assert request.explain and request.max_results == 5
    # (the grpc-timeout header is coarse: the server may see a hair more than 7 s)
    assert call.time_remaining is not None and 6.0 < call.time_remaining <= 7.1


async def test_recall_without_filters_sends_no_filter(fake_server: FakeServer) -> None:
    fake_server.service.default["Recall"] = pb.RecallResponse()
    async with _client(fake_server) as client:
        await client.recall("u1", "q")
    request = fake_server.service.calls_to("Recall")[0].request
    assert not request.HasField("filter") and not request.HasField("as_of")
    assert request.max_results == 10


async def test_ask_structured_serialises_a_dict_schema(fake_server: FakeServer) -> None:
    fake_server.service.default["AskStructured"] = pb.AskStructuredResponse(answer_json="{}")
    async with _client(fake_server) as client:
        await client.ask_structured("u1", "city?", {"type": "object", "title": "Città"})
        await client.ask_structured("u1", "city?", '{"type": "object"}')
    first, second = fake_server.service.calls_to("AskStructured")
    assert first.request.json_schema == '{"type": "object", "title": "Città"}'
    assert second.request.json_schema == '{"type": "object"}'


async def test_unavailable_then_ok_is_retried(fake_server: FakeServer) -> None:
    fake_server.service.then("GetMemory", UNAVAILABLE, pb.GetMemoryResponse(memory=memory()))
    async with _client(fake_server) as client:
        response = await client.get_memory("u1", "ep_1")
    assert response.memory.id == "ep_1"
    assert len(fake_server.service.calls_to("GetMemory")) == 2


async def test_ingest_without_source_ids_is_not_retried(fake_server: FakeServer) -> None:
    fake_server.service.then("Ingest", UNAVAILABLE, pb.IngestResponse())
    async with _client(fake_server) as client:
        with pytest.raises(persona.UnavailableError):
            await client.ingest("u1", [persona.Item("a", source_id="s1"), persona.Item("b")])
    assert len(fake_server.service.calls_to("Ingest")) == 1


async def test_ingest_with_source_ids_is_retried(fake_server: FakeServer) -> None:
    fake_server.service.then("Ingest", UNAVAILABLE, pb.IngestResponse())
    async with _client(fake_server) as client:
        await client.ingest("u1", [persona.Item("a", source_id="s1")])
    assert len(fake_server.service.calls_to("Ingest")) == 2


async def test_no_server_is_unavailable() -> None:
    async with persona.AsyncPersonaClient("127.0.0.1:1", retry=FAST) as client:
        with pytest.raises(persona.UnavailableError) as caught:
            await client.recall("u1", "q", timeout=5)
    assert caught.value.reason == "UNAVAILABLE"


async def test_iter_memories_walks_every_page(fake_server: FakeServer) -> None:
    fake_server.service.then(
        "ListMemories",
        pb.ListMemoriesResponse(memories=[memory("ep_1"), memory("ep_2")], next_page_token="p2"),
        pb.ListMemoriesResponse(memories=[memory("ep_3")], next_page_token=""),
    )
    async with _client(fake_server) as client:
        ids = [m.id async for m in client.iter_memories("u1", page_size=2, types="episode")]
    assert ids == ["ep_1", "ep_2", "ep_3"]
    requests = [c.request for c in fake_server.service.calls_to("ListMemories")]
    assert [r.page_token for r in requests] == ["", "p2"]
    assert all(list(r.types) == [memory_pb2.MEMORY_TYPE_EPISODE] for r in requests)


async def test_deletes(fake_server: FakeServer) -> None:
    fake_server.service.default["DeleteMemory"] = pb.DeleteMemoryResponse(deleted_ids=["ep_1"])
    fake_server.service.default["DeleteUser"] = pb.DeleteUserResponse(deleted_memories=3)
    async with _client(fake_server) as client:
        assert list((await client.delete_memory("u1", "ep_1")).deleted_ids) == ["ep_1"]
        assert (await client.delete_user("u1")).deleted_memories == 3


async def test_an_injected_channel_is_left_open(fake_server: FakeServer) -> None:
    fake_server.service.default["DeleteUser"] = pb.DeleteUserResponse()
    channel = grpc.aio.insecure_channel(fake_server.target)
    async with persona.AsyncPersonaClient(channel=channel) as client:
        await client.delete_user("u1")
    # still usable: the caller owns it
    async with persona.AsyncPersonaClient(channel=channel) as client:
        await client.delete_user("u1")
    await channel.close()


def test_target_or_channel_is_required() -> None:
    with pytest.raises(TypeError):
        persona.AsyncPersonaClient()
    with pytest.raises(ValueError):
        persona.PersonaClient("127.0.0.1:1", default_timeout_s=0)
