"""The knowledge-schema methods of both clients against the real (offline) server."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persona

API_KEY = "e2e-key"  # real_server.API_KEY
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    harness = importlib.import_module("tests.sdk.real_server")
    running = harness.RealServer(Path(tmp_path_factory.mktemp("persona-knowledge")))
    try:
        yield running
    finally:
        running.stop()


def test_sync_client(server: Any) -> None:
    with persona.PersonaClient(server.target, api_key=API_KEY) as client:
        assert client.put_knowledge_schema("sync_profile", SCHEMA).created
        names = [s.name for s in client.list_knowledge_schemas().knowledge_schemas]
        assert "sync_profile" in names
        with pytest.raises(persona.FailedPreconditionError):
            client.get_knowledge("u1", "sync_profile")
        assert client.delete_knowledge_schema("sync_profile").deleted_documents == 0
        with pytest.raises(persona.NotFoundError):
            client.get_knowledge("u1", "sync_profile")


async def test_async_client(server: Any) -> None:
    async with persona.AsyncPersonaClient(server.target, api_key=API_KEY) as client:
        assert (await client.put_knowledge_schema("async_profile", SCHEMA)).created
        assert not (await client.put_knowledge_schema("async_profile", SCHEMA)).created
        with pytest.raises(persona.InvalidArgumentError) as err:
            await client.put_knowledge_schema("Bad Name", SCHEMA)
        assert [v.field for v in err.value.field_violations] == ["name"]
        await client.delete_knowledge_schema("async_profile")
