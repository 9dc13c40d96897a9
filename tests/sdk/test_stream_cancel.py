"""When the consumer of a context stream stops, the server sees the call cancelled.

Runs against a real in-process gRPC server (the scripted fake) so that cancellation travels
over the wire exactly as it would to the Persona server.
"""

from __future__ import annotations

import asyncio
import threading

import persona
from persona.v1 import memory_service_pb2 as pb
from tests.sdk.fake_service import FakeServer

SNAPSHOT = pb.StreamContextResponse(resume_token="t0", snapshot=pb.ContextSnapshot())


async def _server_saw_cancel(server: FakeServer) -> bool:
    return await asyncio.to_thread(server.service.stream_cancelled.wait, 5)


async def test_breaking_out_of_async_for_cancels(fake_server: FakeServer) -> None:
    fake_server.service.stream_events = [SNAPSHOT]
    async with persona.AsyncPersonaClient(fake_server.target) as client:
        async for event in client.stream_context("u1", query="trips"):
            assert event.WhichOneof("event") == "snapshot"
            break
        assert await _server_saw_cancel(fake_server)
    assert fake_server.service.calls_to("StreamContext")[0].request.query == "trips"


async def test_aclose_cancels(fake_server: FakeServer) -> None:
    async with persona.AsyncPersonaClient(fake_server.target) as client:
        stream = client.stream_context("u1")
        first = await anext(stream)
        assert first.WhichOneof("event") == "heartbeat"
        await stream.aclose()
        assert await _server_saw_cancel(fake_server)
        assert [e async for e in stream] == []  # a closed stream stays closed


async def test_leaving_async_with_cancels(fake_server: FakeServer) -> None:
    async with persona.AsyncPersonaClient(fake_server.target) as client:
        async with client.stream_context("u1") as stream:
            await anext(stream)
        assert await _server_saw_cancel(fake_server)


async def test_cancelling_the_task_cancels(fake_server: FakeServer) -> None:
    received = asyncio.Event()

    async def consume(client: persona.AsyncPersonaClient) -> None:
        async for _event in client.stream_context("u1"):
            received.set()

    async with persona.AsyncPersonaClient(fake_server.target) as client:
        task = asyncio.create_task(consume(client))
        await asyncio.wait_for(received.wait(), 5)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("the task should have ended cancelled")
        assert await _server_saw_cancel(fake_server)


async def test_aclose_from_another_task_ends_a_waiting_consumer_cleanly(
    fake_server: FakeServer,
) -> None:
    fake_server.service.stream_events = [SNAPSHOT]
    fake_server.service.heartbeat_interval_s = 30  # the consumer will be waiting on a read
    async with persona.AsyncPersonaClient(fake_server.target) as client:
        stream = client.stream_context("u1")
        seen: list[str] = []
        got_one = asyncio.Event()

        async def consume() -> None:
            async for event in stream:
                seen.append(event.resume_token)
                got_one.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(got_one.wait(), 5)
        await asyncio.sleep(0.05)  # let the consumer block in its next read
        await stream.aclose()
        await asyncio.wait_for(task, 5)  # ends normally, not with CancelledError
        assert seen == ["t0"]
        assert await _server_saw_cancel(fake_server)


def test_sync_break_cancels_when_the_stream_is_dropped(fake_server: FakeServer) -> None:
    fake_server.service.stream_events = [SNAPSHOT]
    with persona.PersonaClient(fake_server.target) as client:
        for event in client.stream_context("u1"):
            assert event.resume_token == "t0"
            break
        assert fake_server.service.stream_cancelled.wait(5)


def test_sync_with_block_cancels(fake_server: FakeServer) -> None:
    with persona.PersonaClient(fake_server.target) as client:
        stream = client.stream_context("u1")
        with stream:
            next(stream)
        assert fake_server.service.stream_cancelled.wait(5)
        assert list(stream) == []


def test_sync_close_from_another_thread_ends_a_blocked_iteration(
    fake_server: FakeServer,
) -> None:
    # How a CLI or a worker stops a subscription it is blocked on.
    fake_server.service.stream_events = [SNAPSHOT]
    fake_server.service.heartbeat_interval_s = 30
    with persona.PersonaClient(fake_server.target) as client:
        stream = client.stream_context("u1")
        assert next(stream).resume_token == "t0"
        timer = threading.Timer(0.2, stream.close)
        timer.start()
        assert list(stream) == []  # blocked in the next read until close() cancels it
        timer.join()
        assert fake_server.service.stream_cancelled.wait(5)
