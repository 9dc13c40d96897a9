"""Nothing acknowledged is lost when the model is slow, wrong or down: the episode is stored
(and recallable) before any LLM call, extraction state is durable and visible, the worker
retries with backoff, survives restarts, and never holds up shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from persona import AsyncPersonaClient, Item
from persona.v1 import memory_pb2 as pb
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.adapters.stores.sqlite.store import SqliteGraphStore
from persona_server.domain.models import Episode, ExtractionState, UserRef
from tests.llm.conftest import StartApp
from tests.llm.helpers import all_memories, is_done, of_type, wait_episode
from tests.llm.scripted_llm import Fail, Recorded, Reply, Response, ScriptedLLM, entity, extraction
from tests.transport.transport_settings import KEY_A

TEXT = "I adopted a cat named Miso"


def miso() -> Reply:
    return Reply(extraction(entities=[entity("Miso", "thing")]))


async def test_ingest_returns_once_stored_and_recallable_while_the_model_is_slow(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.push(Reply(extraction(entities=[entity("Miso", "thing")]), delay_s=2.0))
    started = time.monotonic()
    response = await client.ingest("u1", [Item(TEXT, source_id="cat")])
    assert time.monotonic() - started < 1.5  # did not wait for the model
    result = response.results[0]
    assert result.extraction.state == pb.EXTRACTION_STATE_PENDING

    recalled = await client.recall("u1", "which pet did I adopt", max_results=5)
    assert TEXT in [r.memory.text for r in recalled.results]  # recallable at once

    status = await wait_episode(client, "u1", result.episode_id, is_done)
    assert status.attempts == 1
    names = [
        m.entity.name for m in of_type(await all_memories(client, "u1"), pb.MEMORY_TYPE_ENTITY)
    ]
    assert "Miso" in names


async def test_a_timeout_leaves_the_episode_pending_and_a_restarted_server_finishes_it(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    # Every attempt times out; the retry backoff is long, so only a restart retries soon.
    llm.responder = lambda request: Reply(extraction(), delay_s=3.0)
    first = await start_app(llm_timeout_s=0.3, llm_max_retries=1, extraction_retry_base_s=60)
    async with AsyncPersonaClient(f"127.0.0.1:{first.port}", api_key=KEY_A) as client:
        response = await client.ingest("u1", [Item(TEXT, source_id="cat")])
        episode_id = response.results[0].episode_id
        status = await wait_episode(client, "u1", episode_id, lambda s: s.attempts == 1)
        assert status.state == pb.EXTRACTION_STATE_PENDING  # a retry is pending
        assert "LlmUnavailableError" in status.last_error and "timed out" in status.last_error
        recalled = await client.recall("u1", "cat", max_results=5)
        assert TEXT in [r.memory.text for r in recalled.results]
    await first.stop(grace_s=0)
    assert len(llm.completions()) == 2  # 1 + llm_max_retries, then the worker backs off

    llm.responder = None
    llm.push(miso())
    second = await start_app(extraction_retry_base_s=60)
    async with AsyncPersonaClient(f"127.0.0.1:{second.port}", api_key=KEY_A) as client:
        status = await wait_episode(client, "u1", episode_id, is_done)
        assert status.attempts == 2 and status.last_error == ""
        names = [
            m.entity.name for m in of_type(await all_memories(client, "u1"), pb.MEMORY_TYPE_ENTITY)
        ]
        assert "Miso" in names


async def _stored_episode(path: Path, embedder: LocalOnnxEmbedder, episode_id: str) -> Episode:
    store = SqliteGraphStore(path / "data" / "persona.db")
    await store.open(embedding_model=embedder.model_id, dimension=embedder.dimension)
    try:
        found = await store.memories.get_many(
            UserRef(tenant="tenant-a", user_id="u1"), [episode_id]
        )
    finally:
        await store.close()
    episode = found[episode_id]
    assert isinstance(episode, Episode)
    return episode


async def test_shutdown_cancels_in_flight_calls_and_the_work_stays_pending(
    start_app: StartApp, llm: ScriptedLLM, tmp_path: Path, embedder: LocalOnnxEmbedder
) -> None:
    llm.push(Reply(extraction(), delay_s=30.0))
    first = await start_app(llm_timeout_s=60)
    async with AsyncPersonaClient(f"127.0.0.1:{first.port}", api_key=KEY_A) as client:
        response = await client.ingest("u1", [Item(TEXT, source_id="cat")])
    episode_id = response.results[0].episode_id
    await llm.wait_requests(1)
    started = time.monotonic()
    await first.stop(grace_s=0)
    assert time.monotonic() - started < 3.0  # did not wait for the 30 s model call

    episode = await _stored_episode(tmp_path, embedder, episode_id)
    assert episode.extraction.state is ExtractionState.PENDING
    assert episode.extraction.attempts == 0  # a cancelled attempt is not a failure

    llm.push(miso())
    second = await start_app()
    async with AsyncPersonaClient(f"127.0.0.1:{second.port}", api_key=KEY_A) as client:
        status = await wait_episode(client, "u1", episode_id, is_done)
        assert status.attempts == 1


async def test_429_and_500_are_retried_within_one_extraction(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.push(Fail(429, "rate limited", headers={"retry-after": "0"}), Fail(500), miso())
    response = await client.ingest("u1", [Item(TEXT, source_id="cat")], wait_for_extraction=True)
    assert response.results[0].extraction.state == pb.EXTRACTION_STATE_DONE
    assert response.results[0].extraction.attempts == 1
    assert len(llm.completions()) == 3


async def test_malformed_output_gets_one_repair_round_then_fails_and_is_retried(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.push(Reply("{oops"), miso())
    repaired = await client.ingest("u1", [Item(TEXT, source_id="a")], wait_for_extraction=True)
    assert repaired.results[0].extraction.state == pb.EXTRACTION_STATE_DONE
    repair = llm.completions()[1]
    assert repair.messages[-2] == {"role": "assistant", "content": "{oops"}
    assert "not valid JSON" in repair.messages[-1]["content"]

    llm.push(Reply("{oops"), Reply('{"summary": 3}'))
    failed = await client.ingest(
        "u1", [Item("My dog is called Rex", source_id="b")], wait_for_extraction=True
    )
    status = failed.results[0].extraction
    assert status.state == pb.EXTRACTION_STATE_FAILED
    assert status.attempts == 1
    assert "LlmOutputInvalidError" in status.last_error
    assert "is a required property" in status.last_error
    assert len(llm.completions()) == 4  # one repair round only

    # The worker tries again after the backoff; this time the model answers well.
    llm.push(Reply(extraction(entities=[entity("Rex", "thing")])))
    status = await wait_episode(client, "u1", failed.results[0].episode_id, is_done)
    assert status.attempts == 2


async def test_wait_for_extraction_returns_the_failure_when_the_model_is_down(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.responder = lambda request: Fail(503, "overloaded")
    response = await client.ingest("u1", [Item(TEXT, source_id="cat")], wait_for_extraction=True)
    status = response.results[0].extraction
    assert status.state == pb.EXTRACTION_STATE_PENDING
    assert status.attempts == 1
    assert "HTTP 503" in status.last_error
    got = await client.get_memory("u1", response.results[0].episode_id)
    assert got.memory.text == TEXT  # stored all the same


async def test_a_spent_budget_fails_the_item_without_more_calls(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    app = await start_app(llm_max_calls_per_request=1, extraction_retry_base_s=60)
    llm.push(Reply("{oops"))
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        response = await client.ingest(
            "u1", [Item(TEXT, source_id="cat")], wait_for_extraction=True
        )
    status = response.results[0].extraction
    assert status.state == pb.EXTRACTION_STATE_FAILED
    assert "LlmBudgetExceededError" in status.last_error
    assert len(llm.completions()) == 1


async def test_after_max_attempts_the_episode_stays_failed(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    def always_bad(request: Recorded) -> Response:
        return Reply("not json at all")

    llm.responder = always_bad
    app = await start_app(extraction_max_attempts=2, extraction_retry_base_s=0.1)
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        response = await client.ingest("u1", [Item(TEXT, source_id="cat")])
        episode_id = response.results[0].episode_id
        status = await wait_episode(client, "u1", episode_id, lambda s: s.attempts == 2)
        assert status.state == pb.EXTRACTION_STATE_FAILED
        calls = len(llm.completions())
        assert calls == 4  # two attempts, each with its repair round
        await asyncio.sleep(0.6)
        assert len(llm.completions()) == calls  # given up: no further attempts
        assert (await client.get_memory("u1", episode_id)).memory.text == TEXT


# A bad hour, with every duration of the defaults divided by 1,000 (retry backoff 5 s -> 5 ms,
# its cap 3,600 s -> 3.6 s, a call's timeout 60 s -> 60 ms, the hour -> 3.6 s): the model
# times out, answers 500, or answers garbage, at random, while items keep arriving.
_SCALE = 1000.0
_HOUR_S = 3600 / _SCALE


async def test_a_bad_hour_of_the_model_loses_nothing_and_extraction_catches_up(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    import random

    rng = random.Random(7)
    bad = True

    def answer(request: Recorded) -> Response:
        if not bad:
            return miso()
        kind = rng.choice(["slow", "500", "garbage", "half"])
        if kind == "slow":
            return Reply(extraction(), delay_s=60 / _SCALE * 3)  # past the call's timeout
        if kind == "500":
            return Fail(500, "upstream is sad")
        if kind == "garbage":
            return Reply("not json at all {{{")
        return Reply({"summary": 3, "entities": "no"})  # JSON, but not the schema

    llm.responder = answer
    app = await start_app(
        llm_timeout_s=60 / _SCALE,
        llm_max_retries=3,
        llm_retry_base_s=0.5 / _SCALE,
        llm_retry_max_s=8 / _SCALE,
        extraction_poll_s=5 / _SCALE * 10,
        extraction_retry_base_s=5 / _SCALE,
        extraction_retry_max_s=3600 / _SCALE,
    )
    acknowledged: dict[str, str] = {}
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < _HOUR_S:
            user = f"u{n % 3}"
            response = await client.ingest(
                user, [Item(f"note {n}: I adopted a cat named Miso", source_id=f"n{n}")]
            )
            acknowledged[response.results[0].episode_id] = user
            n += 1
            await asyncio.sleep(0.05)
        bad = False
        assert len(acknowledged) >= 20

        deadline = time.monotonic() + 60
        while True:
            states = [
                (await client.get_memory(user, episode_id)).memory.episode.extraction
                for episode_id, user in acknowledged.items()
            ]
            if all(s.state == pb.EXTRACTION_STATE_DONE for s in states):
                break
            assert time.monotonic() < deadline, "extraction did not catch up after the bad hour"
            await asyncio.sleep(0.2)
        # The bad hour did cost attempts, and each item was extracted into the graph.
        assert sum(s.attempts for s in states) > len(states)
        for user in {"u0", "u1", "u2"}:
            names = [
                m.entity.name
                for m in of_type(await all_memories(client, user), pb.MEMORY_TYPE_ENTITY)
            ]
            assert "Miso" in names
