"""Knowledge documents built by the LLM through the scripted local server: fields, provenance,
history, one call per item for all schemas, durability across a model outage, and rejection of
invalid answers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from persona import AsyncPersonaClient, Item, NotFoundError
from persona.v1 import knowledge_pb2 as kpb
from persona_server.app import App
from tests.llm.conftest import StartApp
from tests.llm.scripted_llm import Fail, Recorded, Reply, Response, ScriptedLLM, extraction
from tests.transport.transport_settings import KEY_A, KEY_B

PROFILE = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "pets": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city"],
}
WORK = {"type": "object", "properties": {"employer": {"type": "string"}}}

# What the scripted model knows: an item's text -> the updates it supports, per document.
ANSWERS: dict[str, dict[str, dict[str, Any]]] = {
    "I live in Lyon": {"profile": {"city": "Lyon"}},
    "My cat Tom sleeps all day": {"profile": {"pets": ["Tom"]}},
    "Lyon is lovely in spring": {"profile": {"city": "Lyon"}},
    "I moved to Paris for a job at Acme": {
        "profile": {"city": "Paris"},
        "work": {"employer": "Acme"},
    },
}


def knowledge_responder(down: dict[str, bool] | None = None) -> Any:
    def respond(request: Recorded) -> Response:
        if request.schema_name != "persona_knowledge":
            return Reply(extraction())
        if down is not None and down.get("down"):
            return Fail(503, "model down")
        data = request.data()
        names = [d["name"] for d in data["documents"]]
        known = ANSWERS.get(data["item"]["text"], {})
        return Reply({"updates": {n: known.get(n, {}) for n in names}})

    return respond


def knowledge_calls(llm: ScriptedLLM) -> list[Recorded]:
    return llm.completions("persona_knowledge")


async def caught_up(
    client: AsyncPersonaClient, user: str, name: str, within_s: float = 15.0
) -> kpb.GetKnowledgeResponse:
    deadline = time.monotonic() + within_s
    while True:
        got = await client.get_knowledge(user, name)
        if got.pending_items == 0:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} of {user} still has {got.pending_items} pending items")
        await asyncio.sleep(0.05)


@pytest.fixture
async def app(start_app: StartApp) -> App:
    return await start_app(knowledge_poll_s=0.05)


async def ingest(client: AsyncPersonaClient, user: str, *texts: str) -> list[str]:
    response = await client.ingest(user, [Item(t, source_id=uuid.uuid4().hex) for t in texts])
    return [r.episode_id for r in response.results]


async def test_documents_are_built_with_provenance_and_history(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.responder = knowledge_responder()
    await client.put_knowledge_schema("profile", PROFILE)
    lyon, cat, again = await ingest(
        client, "u1", "I live in Lyon", "My cat Tom sleeps all day", "Lyon is lovely in spring"
    )
    got = await caught_up(client, "u1", "profile")
    assert json.loads(got.document_json) == {"city": "Lyon", "pets": ["Tom"]}
    assert list(got.fields["city"].memory_ids) == [lyon, again]  # set, then confirmed
    assert list(got.fields["pets"].memory_ids) == [cat]
    assert list(got.fields["city"].history) == []
    assert got.HasField("updated_at")

    (paris,) = await ingest(client, "u1", "I moved to Paris for a job at Acme")
    got = await caught_up(client, "u1", "profile")
    assert json.loads(got.document_json) == {"city": "Paris", "pets": ["Tom"]}
    city = got.fields["city"]
    assert list(city.memory_ids) == [paris]
    (change,) = city.history
    assert json.loads(change.previous_value_json) == "Lyon"
    assert list(change.memory_ids) == [lyon, again]
    assert list(change.changed_by_memory_ids) == [paris]
    assert list(got.fields["pets"].memory_ids) == [cat]  # untouched by the new item
    # The prompt carried the item and the current document, as data.
    last = knowledge_calls(llm)[-1].data()
    assert last["item"]["text"] == "I moved to Paris for a job at Acme"
    assert last["documents"][0]["current"] == {"city": "Lyon", "pets": ["Tom"]}


async def test_one_call_per_item_for_all_schemas(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.responder = knowledge_responder()
    await client.put_knowledge_schema("profile", PROFILE)
    await client.put_knowledge_schema("work", WORK)
    await ingest(client, "u1", "I moved to Paris for a job at Acme")
    await caught_up(client, "u1", "profile")
    work = await caught_up(client, "u1", "work")
    assert json.loads(work.document_json) == {"employer": "Acme"}
    (call,) = knowledge_calls(llm)
    assert sorted(d["name"] for d in call.data()["documents"]) == ["profile", "work"]


async def test_a_model_outage_loses_nothing_and_the_document_catches_up(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    down = {"down": True}
    llm.responder = knowledge_responder(down)
    await client.put_knowledge_schema("profile", PROFILE)
    await ingest(client, "u1", "I live in Lyon", "My cat Tom sleeps all day")
    deadline = time.monotonic() + 10
    while not knowledge_calls(llm):
        assert time.monotonic() < deadline, "the worker never tried the model"
        await asyncio.sleep(0.05)
    got = await client.get_knowledge("u1", "profile")
    assert got.pending_items == 2
    assert json.loads(got.document_json) == {}
    down["down"] = False
    got = await caught_up(client, "u1", "profile")
    assert json.loads(got.document_json) == {"city": "Lyon", "pets": ["Tom"]}


async def test_a_restarted_server_catches_up_what_the_last_one_left(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    down = {"down": True}
    llm.responder = knowledge_responder(down)
    first = await start_app(knowledge_poll_s=0.05)
    async with AsyncPersonaClient(f"127.0.0.1:{first.port}", api_key=KEY_A) as c:
        await c.put_knowledge_schema("profile", PROFILE)
        await ingest(c, "u1", "I live in Lyon")
    await first.stop(grace_s=0)
    down["down"] = False
    second = await start_app(knowledge_poll_s=0.05)
    async with AsyncPersonaClient(f"127.0.0.1:{second.port}", api_key=KEY_A) as c:
        got = await caught_up(c, "u1", "profile")
    assert json.loads(got.document_json) == {"city": "Lyon"}


async def test_an_invalid_answer_gets_a_repair_round_then_is_rejected(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    def respond(request: Recorded) -> Response:
        if request.schema_name != "persona_knowledge":
            return Reply(extraction())
        return Reply({"updates": {"profile": {"city": 42, "nickname": "x"}}})

    llm.responder = respond
    await client.put_knowledge_schema("profile", PROFILE)
    await ingest(client, "u1", "I live in Lyon")
    got = await caught_up(client, "u1", "profile")
    assert json.loads(got.document_json) == {}  # nothing invalid is stored
    _first, repair = knowledge_calls(llm)
    assert "nickname" in repair.messages[-1]["content"]


async def test_deletes_remove_documents_and_tenants_are_isolated(
    app: App, client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.responder = knowledge_responder()
    await client.put_knowledge_schema("profile", PROFILE)
    await client.put_knowledge_schema("work", WORK)
    await ingest(client, "u1", "I moved to Paris for a job at Acme")
    await ingest(client, "u2", "I live in Lyon")
    await caught_up(client, "u1", "work")
    await caught_up(client, "u2", "profile")
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_B) as other:
        with pytest.raises(NotFoundError):
            await other.get_knowledge("u1", "profile")
    assert (await client.delete_knowledge_schema("work")).deleted_documents >= 1
    with pytest.raises(NotFoundError):
        await client.get_knowledge("u1", "work")
    await client.delete_user("u1")
    u1 = await app.store.knowledge.documents(_user("u1"))
    assert u1 == {}
    assert "profile" in await app.store.knowledge.documents(_user("u2"))


def _user(user_id: str) -> Any:
    from persona_server.domain.models import UserRef

    return UserRef(tenant="tenant-a", user_id=user_id)


async def test_a_replaced_schema_keeps_documents_and_drops_its_old_fields_at_the_next_update(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.responder = knowledge_responder()
    await client.put_knowledge_schema("profile", PROFILE)
    await ingest(client, "u1", "I live in Lyon", "My cat Tom sleeps all day")
    await caught_up(client, "u1", "profile")
    narrower = {"type": "object", "properties": {"city": {"type": "string"}}}
    assert not (await client.put_knowledge_schema("profile", narrower)).created
    kept = await client.get_knowledge("u1", "profile")
    assert json.loads(kept.document_json) == {"city": "Lyon", "pets": ["Tom"]}
    await ingest(client, "u1", "I moved to Paris for a job at Acme")
    got = await caught_up(client, "u1", "profile")
    assert json.loads(got.document_json) == {"city": "Paris"}
    assert knowledge_calls(llm)[-1].data()["documents"][0]["schema"] == narrower


async def test_a_new_schema_is_built_from_the_users_history(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.responder = knowledge_responder()
    await ingest(client, "u1", "I live in Lyon", "I moved to Paris for a job at Acme")
    await client.put_knowledge_schema("work", WORK)
    got = await caught_up(client, "u1", "work")
    assert json.loads(got.document_json) == {"employer": "Acme"}


async def test_an_item_past_the_budget_is_skipped_not_retried_forever(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    def respond(request: Recorded) -> Response:
        if request.schema_name != "persona_knowledge":
            return Reply(extraction())
        # Invalid, and costly: the repair round would pass the request's token budget.
        return Reply({"updates": {"profile": {"city": 42}}}, prompt_tokens=5000)

    llm.responder = respond
    app = await start_app(knowledge_poll_s=0.05, llm_max_tokens_per_request=1000)
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        await client.put_knowledge_schema("profile", PROFILE)
        await ingest(client, "u1", "I live in Lyon")
        got = await caught_up(client, "u1", "profile")
    assert json.loads(got.document_json) == {}
    assert len(knowledge_calls(llm)) == 1  # no repair call past the budget, and no retry


async def test_deleting_an_episode_removes_what_documents_took_only_from_it(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.responder = knowledge_responder()
    await client.put_knowledge_schema("profile", PROFILE)
    lyon, cat, again = await ingest(
        client, "u1", "I live in Lyon", "My cat Tom sleeps all day", "Lyon is lovely in spring"
    )
    (paris,) = await ingest(client, "u1", "I moved to Paris for a job at Acme")
    await caught_up(client, "u1", "profile")
    await client.delete_memory("u1", cat)
    got = await client.get_knowledge("u1", "profile")
    assert json.loads(got.document_json) == {"city": "Paris"}  # the pets came only from it
    await client.delete_memory("u1", lyon)
    got = await client.get_knowledge("u1", "profile")
    (change,) = got.fields["city"].history
    assert list(change.memory_ids) == [again]  # the earlier value is still backed by one item
    await client.delete_memory("u1", again)
    got = await client.get_knowledge("u1", "profile")
    assert list(got.fields["city"].history) == []
    assert list(got.fields["city"].memory_ids) == [paris]
    await client.delete_memory("u1", paris)
    got = await client.get_knowledge("u1", "profile")
    assert json.loads(got.document_json) == {}
    assert "Lyon" not in str(got) and "Paris" not in str(got)


async def test_replacing_an_episode_removes_what_documents_took_from_its_old_text(
    client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.responder = knowledge_responder()
    await client.put_knowledge_schema("profile", PROFILE)
    await client.ingest("u1", [Item("I live in Lyon", source_id="m1")])
    got = await caught_up(client, "u1", "profile")
    assert json.loads(got.document_json) == {"city": "Lyon"}
    await client.ingest("u1", [Item("Actually, never mind", source_id="m1")], replace=True)
    got = await client.get_knowledge("u1", "profile")
    assert json.loads(got.document_json) == {}


async def test_retention_leaves_nothing_of_expired_episodes_in_documents(
    start_app: StartApp, llm: ScriptedLLM
) -> None:
    llm.responder = knowledge_responder()
    app = await start_app(knowledge_poll_s=0.05, retention_days=30)
    long_ago = datetime.now(UTC) - timedelta(days=400)
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        await client.put_knowledge_schema("profile", PROFILE)
        await client.ingest(
            "u1",
            [
                Item("I live in Lyon", source_id="old", occurred_at=long_ago),
                Item("My cat Tom sleeps all day", source_id="new"),
            ],
        )
        await caught_up(client, "u1", "profile")
        assert app.retention is not None
        await app.retention.run_once()
        got = await client.get_knowledge("u1", "profile")
    assert json.loads(got.document_json) == {"pets": ["Tom"]}
    assert "Lyon" not in str(got)
