"""StreamContext's events are serialized once per event, not once per stream, and the server
runs on uvloop when it is installed (unless turned off), with streams working on it."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvloop

from persona import AsyncPersonaClient, Item
from persona.v1 import memory_service_pb2 as pb
from persona.v1 import memory_service_pb2_grpc as svc_grpc
from persona_server import event_loop
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import start
from persona_server.domain.models import UserRef
from persona_server.services.results import HeartbeatEvent
from persona_server.transport.registration import memory_service_handlers, pass_through
from persona_server.transport.servicer import MemoryServicer
from tests.transport.transport_settings import KEY_A, make_settings


def test_stream_context_sends_the_bytes_its_servicer_serialized() -> None:
    service, handlers = memory_service_handlers(svc_grpc.MemoryServiceServicer())
    assert service == "persona.v1.MemoryService"
    wire = pb.StreamContextResponse(resume_token="t").SerializeToString()
    stream = handlers["StreamContext"]
    assert stream.response_serializer is pass_through
    assert stream.response_serializer(wire) is wire  # sent as is: not parsed, not copied
    # A message (none is expected) still goes out as its own serialization.
    message = pb.StreamContextResponse(resume_token="m")
    assert stream.response_serializer(message) == message.SerializeToString()
    # Every other method keeps the generated handler's serializer and request parser.
    ingest = handlers["Ingest"]
    response = pb.IngestResponse(results=[pb.IngestResult(episode_id="e")])
    assert ingest.response_serializer is not None
    assert ingest.response_serializer(response) == response.SerializeToString()
    assert stream.request_deserializer is not None
    request = pb.StreamContextRequest(user_id="u")
    assert stream.request_deserializer(request.SerializeToString()) == request
    generated: dict[str, Any] = {}

    class Collect:
        def add_generic_rpc_handlers(self, _handlers: Any) -> None:
            pass

        def add_registered_method_handlers(self, _service: str, found: dict[str, Any]) -> None:
            generated.update(found)

    svc_grpc.add_MemoryServiceServicer_to_server(svc_grpc.MemoryServiceServicer(), Collect())  # type: ignore[arg-type]
    assert set(handlers) == set(generated)  # no method lost


def test_uvloop_is_the_loop_unless_turned_off_or_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert event_loop.loop_factory(True) is uvloop.new_event_loop
    assert event_loop.loop_factory(False) is None

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert event_loop.run(loop_type(), True) is uvloop.Loop
    assert not issubclass(event_loop.run(loop_type(), False), uvloop.Loop)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: import fails
    assert event_loop.loop_factory(True) is None


def test_a_stream_on_a_uvloop_server_gets_its_update(
    tmp_path: Path, embedder: LocalOnnxEmbedder
) -> None:
    async def follow() -> tuple[type, pb.StreamContextResponse]:
        app = await start(make_settings(tmp_path / "data"), embedder=embedder)
        try:
            async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
                stream = client.stream_context("u1", heartbeat_seconds=60)
                first = await asyncio.wait_for(anext(stream), 20)
                assert first.WhichOneof("event") == "snapshot"
                reply = await client.ingest("u1", [Item("I moved to Lisbon in May.")])
                episode = reply.results[0].episode_id
                while True:
                    event = await asyncio.wait_for(anext(stream), 20)
                    if event.WhichOneof("event") == "update":
                        ids = {c.result.memory.id for c in event.update.changes}
                        if episode in ids:
                            await stream.aclose()
                            return type(asyncio.get_running_loop()), event
        finally:
            await app.stop(grace_s=0)

    loop, update = event_loop.run(follow(), True)
    assert loop is uvloop.Loop
    # The bytes the servicer serialized arrive as the message the SDK parses.
    assert update.resume_token
    assert any(c.result.memory.text for c in update.update.changes)


def test_the_servicer_serializes_an_event_once_for_every_stream() -> None:
    servicer = MemoryServicer(None)  # type: ignore[arg-type]  # _wire needs no service
    user = UserRef(tenant="t", user_id="u")
    event = HeartbeatEvent(3, datetime(2024, 1, 1, tzinfo=UTC))
    first = servicer._wire(event, user)
    assert servicer._wire(event, user) is first  # the same bytes object for the next stream
    assert pb.StreamContextResponse.FromString(first).WhichOneof("event") == "heartbeat"
