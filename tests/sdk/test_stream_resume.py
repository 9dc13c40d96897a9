"""The SDK's stream iterators follow a subscription across a server restart by themselves.

The server runs on its own event loop in a background thread, on a fixed port, and is stopped
(streams end with UNAVAILABLE) and started again on the same data directory while a consumer
keeps iterating. Whatever is ingested around the restart arrives exactly once, as updates: the
iterator resumed from its last token instead of starting over with a snapshot.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from persona import AsyncPersonaClient, Item, OutOfRangeError, PersonaClient
from persona.v1 import memory_service_pb2 as pb
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from tests.sdk.fake_service import FakeServer, rich_status
from tests.transport.transport_settings import KEY_A, make_settings

T = TypeVar("T")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Restartable:
    """One server at a time on a fixed port and data directory."""

    def __init__(self, data_dir: Path, embedder: LocalOnnxEmbedder) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.target = f"127.0.0.1:{_free_port()}"
        self._settings = make_settings(data_dir, listen=self.target)
        self._embedder = embedder
        self.app: App | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def start(self) -> None:
        self.app = self.run(start(self._settings, embedder=self._embedder))

    def stop(self) -> None:
        if self.app is not None:
            self.run(self.app.stop(grace_s=0))
            self.app = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def server(tmp_path: Path, embedder: LocalOnnxEmbedder) -> Iterator[Restartable]:
    s = Restartable(tmp_path / "data", embedder)
    s.start()
    try:
        yield s
    finally:
        s.close()


def _added(event: pb.StreamContextResponse) -> set[str]:
    if event.WhichOneof("event") != "update":
        return set()
    return {c.result.memory.id for c in event.update.changes if c.kind == pb.CHANGE_KIND_ADDED}


async def test_async_iterator_resumes_across_a_server_restart(server: Restartable) -> None:
    seen: list[pb.StreamContextResponse] = []
    async with AsyncPersonaClient(server.target, api_key=KEY_A) as client:
        stream = client.stream_context("u1", heartbeat_seconds=1)
        try:
            seen.append(await asyncio.wait_for(anext(stream), 20))
            before = await client.ingest("u1", [Item("before the restart", source_id="a")])
            first_id = before.results[0].episode_id
            while first_id not in _added(seen[-1]):
                seen.append(await asyncio.wait_for(anext(stream), 20))

            # The next read runs into the restart: the iterator reconnects by itself.
            reading = asyncio.ensure_future(anext(stream))
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            after = await client.ingest("u1", [Item("after the restart", source_id="b")])
            second_id = after.results[0].episode_id
            seen.append(await asyncio.wait_for(reading, 30))
            while second_id not in set().union(*map(_added, seen)):
                seen.append(await asyncio.wait_for(anext(stream), 20))
        finally:
            await stream.aclose()
    kinds = [e.WhichOneof("event") for e in seen]
    assert kinds[0] == "snapshot" and "snapshot" not in kinds[1:] and "resync" not in kinds
    added = [i for e in seen for i in _added(e)]
    assert added.count(first_id) == 1 and added.count(second_id) == 1


def test_sync_iterator_resumes_across_a_server_restart(server: Restartable) -> None:
    with PersonaClient(server.target, api_key=KEY_A) as client:
        stream = client.stream_context("u1", heartbeat_seconds=1)
        seen = [next(stream)]
        try:
            server.stop()
            server.start()
            # Written while the iterator is still reconnecting (or just after): delivered once.
            written = client.ingest("u1", [Item("during the restart", source_id="c")])
            episode_id = written.results[0].episode_id
            while episode_id not in set().union(*map(_added, seen)):
                seen.append(next(stream))
        finally:
            stream.close()
    kinds = [e.WhichOneof("event") for e in seen]
    assert kinds[0] == "snapshot" and "snapshot" not in kinds[1:]
    assert [i for e in seen for i in _added(e)].count(episode_id) == 1


# --- against the scripted fake: how the iterator reconnects ----------------------------


def _token(tag: str, kind: str = "heartbeat") -> pb.StreamContextResponse:
    if kind == "snapshot":
        return pb.StreamContextResponse(resume_token=tag, snapshot=pb.ContextSnapshot())
    return pb.StreamContextResponse(resume_token=tag, heartbeat=pb.Heartbeat())


async def test_an_expired_own_token_starts_over_and_an_ended_call_reconnects(
    fake_server: FakeServer,
) -> None:
    service = fake_server.service
    expired = rich_status(
        grpc.StatusCode.OUT_OF_RANGE,
        "resume_token is older than the change log keeps",
        reason="RESUME_TOKEN_OUT_OF_RANGE",
    )
    # 1: a snapshot, then the call ends (a proxy cut it); 2: the token has expired meanwhile;
    # 3: the default answer, a snapshot again, then heartbeats.
    service.then("StreamContext", [_token("t1", "snapshot")], expired)
    service.stream_events = [_token("t2", "snapshot")]
    async with AsyncPersonaClient(fake_server.target) as client:
        stream = client.stream_context("u1", query="trips")
        try:
            kinds = [(await anext(stream)).WhichOneof("event") for _ in range(2)]
        finally:
            await stream.aclose()
    assert kinds == ["snapshot", "snapshot"]  # the second one: replace what you hold
    tokens = [c.request.resume_token for c in service.calls_to("StreamContext")]
    assert tokens == ["", "t1", ""]
    assert {c.request.query for c in service.calls_to("StreamContext")} == {"trips"}


def test_a_given_token_that_expired_is_the_callers_error(fake_server: FakeServer) -> None:
    fake_server.service.then(
        "StreamContext",
        rich_status(grpc.StatusCode.OUT_OF_RANGE, "too old", reason="RESUME_TOKEN_OUT_OF_RANGE"),
    )
    with PersonaClient(fake_server.target) as client, pytest.raises(OutOfRangeError) as err:
        next(client.stream_context("u1", resume_token="old"))
    assert err.value.reason == "RESUME_TOKEN_OUT_OF_RANGE"
