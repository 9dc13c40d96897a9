"""Several servers on one store: each episode is extracted by one of them, once.

Every replica runs a background worker over the same due episodes. The user's extraction
lease in the store (UserOps.lease_extraction) lets one worker at a time extract a user; the
others skip that user, and what it did is in the store when they look again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from persona import AsyncPersonaClient, Item
from persona.v1 import memory_pb2 as pb
from persona_server.domain.models import UserRef
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


async def test_a_slow_extraction_keeps_its_lease_past_the_term(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    # Each model call lasts longer than the lease's whole term: only the heartbeat keeps the
    # lease, so the second server (polling the same due work) must still never get the user.
    def answer(request: Recorded) -> Reply:
        return Reply(extraction(entities=[entity("Miso", "thing")]), delay_s=1.0)

    llm.responder = answer
    first = await start_app(extraction_lease_s=0.6, extraction_poll_s=0.1)
    await start_app(extraction_lease_s=0.6, extraction_poll_s=0.1)
    async with AsyncPersonaClient(f"127.0.0.1:{first.port}", api_key=KEY_A) as a:
        ingested = await a.ingest("u1", [Item(f"slow {i}", source_id=f"s{i}") for i in range(2)])
        for result in ingested.results:
            status = await wait_episode(a, "u1", result.episode_id, is_done)
            assert status.attempts == 1
    extracted = Counter(r.data()["item"]["text"] for r in llm.completions("persona_extraction"))
    assert extracted == Counter(["slow 0", "slow 1"])


async def test_a_lease_left_by_a_killed_replica_runs_out_and_the_user_is_taken_over(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    llm.responder = lambda request: Reply(extraction(entities=[entity("Miso", "thing")]))
    app = await start_app(extraction_lease_s=1.0)
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        await client.ingest("u1", [Item("first note", source_id="f")], wait_for_extraction=True)
        # A replica that died mid-extraction: its lease on u1 is still in the store.
        user = UserRef(tenant="tenant-a", user_id="u1")
        now = datetime.now(UTC)
        assert await app.store.users.lease_extraction(
            user, "dead-replica", now, now + timedelta(seconds=1.0)
        )
        ingested = await client.ingest("u1", [Item("second note", source_id="g")])
        status = await wait_episode(client, "u1", ingested.results[0].episode_id, is_done)
        assert status.attempts == 1


async def test_a_worker_that_loses_its_lease_stops_extracting_that_user(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    llm.responder = lambda request: Reply(extraction(), delay_s=0.8)
    app = await start_app(extraction_lease_s=0.6, extraction_max_attempts=0)
    user = UserRef(tenant="tenant-a", user_id="u1")
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        ingested = await client.ingest(
            "u1", [Item(f"note {i}", source_id=f"n{i}") for i in range(3)]
        )
        await llm.wait_requests(1)
        # Another owner takes the lease over (as if the term had run out): the store sees a
        # `now` past the worker's expiry. The worker's next renewal fails and it must stop.
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await app.store.users.lease_extraction(
            user, "other-replica", later, later + timedelta(hours=1)
        )
        await asyncio.sleep(1.5)
        calls = len(llm.completions("persona_extraction"))
        statuses = [
            (await client.get_memory("u1", r.episode_id)).memory.episode.extraction
            for r in ingested.results
        ]
    # The call in flight was abandoned: nothing written for it, and no further item started.
    assert calls == 1
    assert all(s.state == pb.EXTRACTION_STATE_PENDING and s.attempts == 0 for s in statuses)
