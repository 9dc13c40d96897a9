"""API keys and tenant isolation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from persona import (
    AsyncPersonaClient,
    FailedPreconditionError,
    Item,
    NotFoundError,
    UnauthenticatedError,
)
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from persona_server.transport.server import StartupError
from tests.transport.transport_settings import make_settings


@pytest.mark.parametrize("api_key", [None, "no-such-key"])
async def test_missing_or_unknown_key_is_unauthenticated(app: App, api_key: str | None) -> None:
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=api_key) as client:
        with pytest.raises(UnauthenticatedError) as err:
            await client.recall("u1", "anything", max_results=1)
        assert err.value.reason in {"API_KEY_MISSING", "API_KEY_INVALID"}
        with pytest.raises(UnauthenticatedError):
            stream = client.stream_context("u1")
            async for _ in stream:
                break


async def test_bearer_authorization_header_works(app: App) -> None:
    import grpc

    from persona.v1 import memory_service_pb2 as svc
    from persona.v1 import memory_service_pb2_grpc as svc_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = svc_grpc.MemoryServiceStub(channel)
        await stub.Recall(
            svc.RecallRequest(user_id="u1", query="q", max_results=1),
            metadata=(("authorization", "Bearer key-tenant-b"),),
        )


async def test_tenant_b_never_sees_or_touches_tenant_a(
    client: AsyncPersonaClient, client_b: AsyncPersonaClient
) -> None:
    ingested = await client.ingest(
        "u1", [Item("Tenant A's user u1 lives in Lisbon with her dog Rex", source_id="a1")]
    )
    a_id = ingested.results[0].episode_id
    a_memories = [m async for m in client.iter_memories("u1", include_invalidated=True)]
    assert a_memories

    # Read paths through B's key: another, empty user u1.
    assert list((await client_b.recall("u1", "Lisbon dog Rex", max_results=10)).results) == []
    assert [m async for m in client_b.iter_memories("u1", include_invalidated=True)] == []
    for memory in a_memories:
        with pytest.raises(NotFoundError):
            await client_b.get_memory("u1", memory.id)
    with pytest.raises(FailedPreconditionError):  # no LLM here; never A's data either way
        await client_b.ask_structured("u1", "Where does u1 live?", json.dumps({"type": "object"}))
    stream = client_b.stream_context("u1", query="Lisbon")
    first = await stream.__aiter__().__anext__()
    await stream.aclose()
    assert list(first.snapshot.results) == []

    # Write paths through B's key never touch A's data.
    with pytest.raises(NotFoundError):
        await client_b.delete_memory("u1", a_id)
    assert (await client_b.delete_user("u1")).deleted_memories == 0
    after = [m async for m in client.iter_memories("u1", include_invalidated=True)]
    assert [m.id for m in after] == [m.id for m in a_memories]
    assert (await client.get_memory("u1", a_id)).memory.text.startswith("Tenant A's")


async def test_hashed_key_file(tmp_path: Path, embedder: LocalOnnxEmbedder) -> None:
    key = "prod-secret-key"
    key_file = tmp_path / "keys.txt"
    digest = hashlib.sha256(key.encode()).hexdigest()
    key_file.write_text(f"# production keys\nsha256:{digest} tenant-prod\n")
    settings = make_settings(tmp_path / "d", api_keys="", api_keys_file=key_file)
    app = await start(settings, embedder=embedder)
    try:
        async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=key) as client:
            await client.ingest("u1", [Item("hello", source_id="h")])
        async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=digest) as client:
            # The digest itself is not a key.
            with pytest.raises(UnauthenticatedError):
                await client.recall("u1", "hello", max_results=1)
    finally:
        await app.stop(grace_s=0)


async def test_open_mode_only_on_loopback(tmp_path: Path, embedder: LocalOnnxEmbedder) -> None:
    open_settings = make_settings(tmp_path / "d", api_keys="")
    app = await start(open_settings, embedder=embedder)
    try:
        async with AsyncPersonaClient(f"127.0.0.1:{app.port}") as client:
            await client.ingest("u1", [Item("open mode works on loopback", source_id="o")])
    finally:
        await app.stop(grace_s=0)

    exposed = make_settings(tmp_path / "e", api_keys="", listen="0.0.0.0:0")
    with pytest.raises(StartupError, match="PERSONA_API_KEYS"):
        await start(exposed, embedder=embedder)
