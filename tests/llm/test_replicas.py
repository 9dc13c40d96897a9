"""Several servers on one store: each episode is extracted by one of them, once.

Every replica runs a background worker over the same due episodes. The user's extraction
lease in the store (UserOps.lease_extraction) lets one worker at a time extract a user; the
others skip that user, and what it did is in the store when they look again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from persona import AsyncPersonaClient, Item
from persona.v1 import memory_pb2 as pb
from tests.llm.conftest import StartApp
from tests.llm.helpers import is_done, wait_episode
from tests.llm.scripted_llm import Recorded, Reply, ScriptedLLM, entity, extraction
from tests.neo4j_plugin import Neo4jTarget, server_settings
from tests.transport.transport_settings import KEY_A

ITEMS = 6


def _store_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if backend == "sqlite":
        return {}  # both servers open the same data directory
    target: Neo4jTarget = request.getfixturevalue("neo4j_clean_db")
    return server_settings(target)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def test_two_servers_extract_each_episode_once(
    start_app: StartApp, llm: ScriptedLLM, backend: str, request: pytest.FixtureRequest
) -> None:
    # A slow model keeps the first worker busy while the second one polls the same due work.
    def answer(request: Recorded) -> Reply:
        return Reply(extraction(entities=[entity("Miso", "thing")]), delay_s=0.15)

    llm.responder = answer
    settings = _store_settings(backend, request)
    first = await start_app(**settings)
    second = await start_app(**settings)
    async with (
        AsyncPersonaClient(f"127.0.0.1:{first.port}", api_key=KEY_A) as a,
        AsyncPersonaClient(f"127.0.0.1:{second.port}", api_key=KEY_A) as b,
    ):
        ingested = await a.ingest(
            "u1", [Item(f"note {i} about Miso", source_id=f"n{i}") for i in range(ITEMS)]
        )
        ids = [r.episode_id for r in ingested.results]
        for episode_id in ids:
            status = await wait_episode(b, "u1", episode_id, is_done)
            assert status.attempts == 1
        # An Ingest that waits returns once its episodes are done, by whichever worker got
        # the user's lease (the other server's poll may win it first).
        waited = await b.ingest(
            "u2",
            [Item(f"memo {i} about Miso", source_id=f"m{i}") for i in range(ITEMS)],
            wait_for_extraction=True,
        )
        assert all(r.extraction.state == pb.EXTRACTION_STATE_DONE for r in waited.results)
    extracted = Counter(r.data()["item"]["text"] for r in llm.completions("persona_extraction"))
    expected = [f"{kind} {i} about Miso" for kind in ("note", "memo") for i in range(ITEMS)]
    assert extracted == Counter(expected)
