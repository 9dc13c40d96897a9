"""Bad input on every RPC: INVALID_ARGUMENT with BadRequest field violations, nothing written.

Requests go through the raw generated stub so that values the SDK would refuse locally (unknown
enum numbers, empty ids) reach the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from persona import AsyncPersonaClient, Item
from persona.v1 import memory_service_pb2 as svc
from persona.v1 import memory_service_pb2_grpc as svc_grpc
from persona_server.app import App
from tests.transport.transport_settings import KEY_A

AUTH = (("x-api-key", KEY_A),)


@pytest.fixture
async def stub(app: App) -> AsyncIterator[svc_grpc.MemoryServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield svc_grpc.MemoryServiceStub(channel)


def violations(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "rich status details are missing"
    fields: list[str] = []
    reasons: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append(info.reason)
    assert reasons == ["INVALID_ARGUMENT"]
    return fields


async def expect_invalid(call: Any, *fields: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        result = call
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    got = violations(err.value)
    for field in fields:
        assert field in got, f"{field} not among {got}"


def far_future() -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=4_102_444_800)  # 2100-01-01


BAD_INGESTS = [
    (svc.IngestRequest(user_id="", items=[svc.IngestItem(text="x")]), "user_id"),
    (svc.IngestRequest(user_id="u" * 129, items=[svc.IngestItem(text="x")]), "user_id"),
    (svc.IngestRequest(user_id="u1", items=[]), "items"),
    (svc.IngestRequest(user_id="u1", items=[svc.IngestItem(text="")]), "items[0].text"),
    (
        svc.IngestRequest(user_id="u1", items=[svc.IngestItem(text="x" * 40_000)]),
        "items[0].text",
    ),
    (
        svc.IngestRequest(user_id="u1", items=[svc.IngestItem(text="x", source_id="s" * 300)]),
        "items[0].source_id",
    ),
    (
        svc.IngestRequest(user_id="u1", items=[svc.IngestItem(text="x", occurred_at=far_future())]),
        "items[0].occurred_at",
    ),
    (
        svc.IngestRequest(
            user_id="u1",
            items=[svc.IngestItem(text="x", occurred_at=timestamp_pb2.Timestamp(nanos=-5))],
        ),
        "items[0].occurred_at",
    ),
    (
        svc.IngestRequest(user_id="u1", items=[svc.IngestItem(text="x", source_type=99)]),  # type: ignore[arg-type]
        "items[0].source_type",
    ),
    (
        svc.IngestRequest(
            user_id="u1",
            items=[
                svc.IngestItem(text="x", source_id="d"),
                svc.IngestItem(text="y", source_id="d"),
            ],
        ),
        "items[1].source_id",
    ),
    (
        svc.IngestRequest(
            user_id="u1", items=[svc.IngestItem(text="x", metadata={"k": "v" * 2000})]
        ),
        "items[0].metadata['k']",
    ),
]


@pytest.mark.parametrize(("request_", "field"), BAD_INGESTS)
async def test_bad_ingest_writes_nothing(
    stub: svc_grpc.MemoryServiceStub,
    client: AsyncPersonaClient,
    request_: svc.IngestRequest,
    field: str,
) -> None:
    # A good item in the same batch must not be written either.
    request = svc.IngestRequest()
    request.CopyFrom(request_)
    if request.user_id == "u1" and request.items:
        request.items.insert(0, svc.IngestItem(text="a good item", source_id="good"))
        field = field.replace("items[1]", "items[2]").replace("items[0]", "items[1]")
    await expect_invalid(stub.Ingest(request, metadata=AUTH), field)
    assert [m async for m in client.iter_memories("u1")] == []


async def test_bad_recall(stub: svc_grpc.MemoryServiceStub, client: AsyncPersonaClient) -> None:
    await client.ingest("u1", [Item("something to find", source_id="s")])
    ok = {"user_id": "u1", "query": "find", "max_results": 5}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**ok, "max_results": 0}, "max_results"),
        ({**ok, "max_results": -1}, "max_results"),
        ({**ok, "max_results": 101}, "max_results"),
        ({**ok, "query": ""}, "query"),
        ({**ok, "query": "q" * 5000}, "query"),
        ({**ok, "user_id": ""}, "user_id"),
        ({**ok, "filter": svc.RecallFilter(types=[42])}, "filter.types[0]"),  # type: ignore[list-item]
        ({**ok, "filter": svc.RecallFilter(types=[0])}, "filter.types[0]"),
    ]
    for fields, field in cases:
        await expect_invalid(stub.Recall(svc.RecallRequest(**fields), metadata=AUTH), field)
    err_message = ""
    try:
        await stub.Recall(svc.RecallRequest(**{**ok, "max_results": 0}), metadata=AUTH)
    except grpc.aio.AioRpcError as exc:
        err_message = exc.details() or ""
    assert err_message.startswith("max_results must be between 1 and 100")


async def test_bad_ask(stub: svc_grpc.MemoryServiceStub) -> None:
    ok = {"user_id": "u1", "question": "where?", "json_schema": '{"type": "object"}'}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**ok, "json_schema": ""}, "json_schema"),
        ({**ok, "json_schema": "{not json"}, "json_schema"),
        ({**ok, "json_schema": '{"type": "no-such-type"}'}, "json_schema"),
        ({**ok, "json_schema": "[1, 2]"}, "json_schema"),
        ({**ok, "json_schema": '{"a": "' + "x" * 70_000 + '"}'}, "json_schema"),
        ({**ok, "question": ""}, "question"),
        ({**ok, "max_memories": 1000}, "max_memories"),
    ]
    for fields, field in cases:
        await expect_invalid(
            stub.AskStructured(svc.AskStructuredRequest(**fields), metadata=AUTH), field
        )


async def test_bad_stream(stub: svc_grpc.MemoryServiceStub) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"user_id": ""}, "user_id"),
        ({"user_id": "u1", "max_results": 500}, "max_results"),
        ({"user_id": "u1", "resume_token": "garbage!"}, "resume_token"),
        ({"user_id": "u1", "types": [77]}, "types[0]"),
        ({"user_id": "u1", "heartbeat_seconds": -1}, "heartbeat_seconds"),
    ]
    for fields, field in cases:
        await expect_invalid(
            stub.StreamContext(svc.StreamContextRequest(**fields), metadata=AUTH), field
        )


async def test_resume_token_of_another_user_is_refused(
    stub: svc_grpc.MemoryServiceStub, client: AsyncPersonaClient
) -> None:
    stream = client.stream_context("u1", heartbeat_seconds=1)
    first = await stream.__aiter__().__anext__()
    await stream.aclose()
    request = svc.StreamContextRequest(user_id="u2", resume_token=first.resume_token)
    await expect_invalid(stub.StreamContext(request, metadata=AUTH), "resume_token")


async def test_bad_get_list_delete(
    stub: svc_grpc.MemoryServiceStub, client: AsyncPersonaClient
) -> None:
    await client.ingest("u1", [Item("keep me", source_id="k")])
    await expect_invalid(
        stub.GetMemory(svc.GetMemoryRequest(user_id="u1", memory_id=""), metadata=AUTH),
        "memory_id",
    )
    await expect_invalid(
        stub.GetMemory(svc.GetMemoryRequest(user_id="", memory_id="ep_x"), metadata=AUTH),
        "user_id",
    )
    await expect_invalid(
        stub.GetMemory(svc.GetMemoryRequest(user_id="u1", memory_id="m" * 200), metadata=AUTH),
        "memory_id",
    )
    await expect_invalid(
        stub.ListMemories(
            svc.ListMemoriesRequest(user_id="u1", page_token="not-a-token"), metadata=AUTH
        ),
        "page_token",
    )
    await expect_invalid(
        stub.ListMemories(svc.ListMemoriesRequest(user_id="u1", page_size=-3), metadata=AUTH),
        "page_size",
    )
    await expect_invalid(
        stub.ListMemories(svc.ListMemoriesRequest(user_id="u1", page_size=501), metadata=AUTH),
        "page_size",
    )
    await expect_invalid(
        stub.DeleteMemory(svc.DeleteMemoryRequest(user_id="u1", memory_id=""), metadata=AUTH),
        "memory_id",
    )
    await expect_invalid(
        stub.DeleteUser(svc.DeleteUserRequest(user_id=""), metadata=AUTH), "user_id"
    )
    await expect_invalid(
        stub.DeleteUser(svc.DeleteUserRequest(user_id="u1\n"), metadata=AUTH), "user_id"
    )
    # None of it touched the user's data.
    assert [m.text async for m in client.iter_memories("u1", types=["episode"])] == ["keep me"]


async def test_oversize_message_is_refused(
    stub: svc_grpc.MemoryServiceStub, client: AsyncPersonaClient
) -> None:
    items = [svc.IngestItem(text="x" * 30_000, source_id=f"s{i}") for i in range(200)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Ingest(svc.IngestRequest(user_id="u1", items=items), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [m async for m in client.iter_memories("u1")] == []
