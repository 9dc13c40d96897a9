"""Health, reflection, deadlines, stream cancellation and TLS of the real server."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from persona import AsyncPersonaClient, DeadlineExceededError, Item
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from tests.transport.transport_settings import KEY_A, make_settings


async def test_health_is_serving_without_a_key(app: App) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "persona.v1.MemoryService"):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING


async def _list_services(port: int) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in stub.ServerReflectionInfo(iter([request])):
            return [s.name for s in response.list_services_response.service]
    return []


async def test_reflection_on_by_default_and_can_be_turned_off(
    app: App, tmp_path: Path, embedder: LocalOnnxEmbedder
) -> None:
    assert "persona.v1.MemoryService" in await _list_services(app.port)
    quiet = await start(make_settings(tmp_path / "q", reflection=False), embedder=embedder)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _list_services(quiet.port)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await quiet.stop(grace_s=0)


class SlowEmbedder:
    """The real embedder behind a delay, to make an RPC outlive its deadline."""

    def __init__(self, inner: LocalOnnxEmbedder, delay_s: float) -> None:
        self._inner = inner
        self._delay = delay_s
        self.model_id = inner.model_id
        self.dimension = inner.dimension

    async def start(self) -> None:
        await self._inner.start()

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        await asyncio.sleep(self._delay)
        return await self._inner.embed(texts)

    async def close(self) -> None:
        return None


async def test_deadline_exceeded_and_nothing_written(
    tmp_path: Path, embedder: LocalOnnxEmbedder
) -> None:
    slow = await start(make_settings(tmp_path / "s"), embedder=SlowEmbedder(embedder, 1.0))
    try:
        async with AsyncPersonaClient(f"127.0.0.1:{slow.port}", api_key=KEY_A) as client:
            with pytest.raises(DeadlineExceededError):
                await client.ingest("u1", [Item("too slow", source_id="s")], timeout=0.3)
            await asyncio.sleep(1.5)  # past the point where the write would have happened
            # The server abandoned the call at its deadline: nothing was written.
            assert [m async for m in client.iter_memories("u1", timeout=10)] == []
    finally:
        await slow.stop(grace_s=0)


async def test_cancelled_streams_leave_nothing_behind(app: App, client: AsyncPersonaClient) -> None:
    hub = app.services.feed.hub
    await client.ingest("u1", [Item("something to show", source_id="s1")])
    tasks_before = len(asyncio.all_tasks())
    streams = [
        client.stream_context("u1", query="something" if i % 2 else "", heartbeat_seconds=1)
        for i in range(100)
    ]
    for stream in streams:
        assert (await anext(stream)).WhichOneof("event") == "snapshot"
    assert hub.subscriber_count() == 100
    assert hub.feed_count() == 1  # one change-log reader for the user, whatever the streams
    assert len(hub.tasks()) == 1
    for stream in streams:
        await stream.aclose()
    for _ in range(100):
        if hub.subscriber_count() == 0 and len(asyncio.all_tasks()) <= tasks_before:
            break
        await asyncio.sleep(0.05)
    assert hub.subscriber_count() == 0
    assert hub.feed_count() == 0
    assert hub.tasks() == []
    assert hub.notifier.listener_count() == 0
    assert len(asyncio.all_tasks()) <= tasks_before


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls(tmp_path: Path, embedder: LocalOnnxEmbedder) -> None:
    cert, key = _self_signed(tmp_path)
    settings = make_settings(tmp_path / "t", tls_cert_file=cert, tls_key_file=key)
    secure = await start(settings, embedder=embedder)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        target = f"localhost:{secure.port}"
        async with AsyncPersonaClient(target, api_key=KEY_A, tls=creds) as client:
            await client.ingest("u1", [Item("over TLS", source_id="t")])
        async with AsyncPersonaClient(target, api_key=KEY_A, default_timeout_s=2) as plain:
            with pytest.raises(Exception):  # noqa: B017 - any failure: plaintext is refused
                await plain.recall("u1", "over TLS", max_results=1)
    finally:
        await secure.stop(grace_s=0)
