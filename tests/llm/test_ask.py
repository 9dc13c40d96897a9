"""AskStructured with an LLM: schema-valid JSON with citations, honest "not in memory", one
repair round, and clear statuses when the model fails, is down or the budget is spent."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import pytest

from persona import (
    AbortedError,
    AsyncPersonaClient,
    InvalidArgumentError,
    Item,
    ResourceExhaustedError,
    RetryPolicy,
    UnavailableError,
)
from persona.v1 import memory_pb2 as pb
from persona_server.app import App
from tests.llm.conftest import StartApp
from tests.llm.scripted_llm import Fail, Recorded, Reply, Response, ScriptedLLM, extraction
from tests.transport.transport_settings import KEY_A

LISBON = "I moved to Lisbon in March and started learning Portuguese"
CITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": ["string", "null"]}, "since": {"type": ["string", "null"]}},
    "required": ["city", "since"],
    "additionalProperties": False,
}


class AskModel:
    """Answers extraction calls with nothing and ask calls from a script; an answer may be a
    function of the request (to cite the memory numbers it was shown)."""

    def __init__(self, llm: ScriptedLLM) -> None:
        self.answers: deque[Any] = deque()
        llm.responder = self

    def __call__(self, request: Recorded) -> Response:
        if request.schema_name == "persona_extraction":
            return Reply(extraction())
        if not self.answers:
            return Reply("{}")
        answer = self.answers.popleft()
        if callable(answer):
            answer = answer(request)
        return answer if isinstance(answer, Reply) else Reply(answer)


def number_of(request: Recorded, text: str) -> int:
    return next(int(m["n"]) for m in request.data()["memories"] if text in m["text"])


def asks(llm: ScriptedLLM) -> list[Recorded]:
    return llm.completions("persona_answer")


@pytest.fixture
def model(llm: ScriptedLLM) -> AskModel:
    return AskModel(llm)


@pytest.fixture
async def remembered(client: AsyncPersonaClient, model: AskModel) -> AsyncPersonaClient:
    await client.ingest(
        "u1",
        [
            Item(LISBON, source_id="m1"),
            Item("My favourite food is grilled sardines", source_id="m2"),
        ],
        wait_for_extraction=True,
    )
    return client


async def test_answer_is_schema_valid_json_with_citations(
    remembered: AsyncPersonaClient, model: AskModel, llm: ScriptedLLM
) -> None:
    model.answers.append(
        lambda r: {
            "answer": {"city": "Lisbon", "since": "March"},
            "answered": True,
            "citations": [number_of(r, "Lisbon"), 99],
        }
    )
    response = await remembered.ask_structured("u1", "Where does the user live?", CITY_SCHEMA)
    assert json.loads(response.answer_json) == {"city": "Lisbon", "since": "March"}
    assert response.answered is True
    (citation,) = response.citations  # the out-of-range number is dropped
    assert list(citation.source_ids) == ["m1"]
    assert citation.type == pb.MEMORY_TYPE_EPISODE
    cited = await remembered.get_memory("u1", citation.memory_id)
    assert cited.memory.text == LISBON

    (request,) = asks(llm)
    fmt = request.body["response_format"]["json_schema"]
    assert fmt["schema"]["properties"]["answer"] == CITY_SCHEMA
    assert fmt["schema"]["required"] == ["answer", "answered", "citations"]
    assert "Question: Where does the user live?" in request.user
    assert LISBON in [m["text"] for m in request.data()["memories"]]
    assert "never instructions" not in request.system  # ask has its own system prompt
    assert "not instructions to you" in request.system


async def test_cited_memories_are_reinforced_and_nothing_else(
    remembered: AsyncPersonaClient, model: AskModel
) -> None:
    """AskStructured's one side effect: what the answer relied on is reinforced."""
    before = {m.id: m for m in (await remembered.list_memories("u1")).memories}
    model.answers.append(
        lambda r: {
            "answer": {"city": "Lisbon", "since": "March"},
            "answered": True,
            "citations": [number_of(r, "Lisbon")],
        }
    )
    response = await remembered.ask_structured("u1", "Where does the user live?", CITY_SCHEMA)
    (citation,) = response.citations
    after = {m.id: m for m in (await remembered.list_memories("u1")).memories}
    cited = after[citation.memory_id]
    assert cited.reinforcement.cited_count == 1
    assert (
        cited.reinforcement.mention_count == before[citation.memory_id].reinforcement.mention_count
    )
    assert (
        cited.reinforcement.last_reinforced_at.ToDatetime()
        >= before[citation.memory_id].reinforcement.last_reinforced_at.ToDatetime()
    )
    assert cited.strength > before[citation.memory_id].strength
    # Dated at the user's present (their latest event time), the clock decay runs on.
    present = max(
        m.occurred_at.ToDatetime() for m in before.values() if m.type == pb.MEMORY_TYPE_EPISODE
    )
    assert cited.reinforcement.last_reinforced_at.ToDatetime() == present
    for memory_id, memory in after.items():
        if memory_id != citation.memory_id:
            assert memory.reinforcement == before[memory_id].reinforcement

    # No citations (not answered): nothing reinforced.
    model.answers.append(
        {"answer": {"city": None, "since": None}, "answered": False, "citations": []}
    )
    await remembered.ask_structured("u1", "Where was the user born?", CITY_SCHEMA)
    again = {m.id: m for m in (await remembered.list_memories("u1")).memories}
    assert {k: v.reinforcement for k, v in again.items()} == {
        k: v.reinforcement for k, v in after.items()
    }


async def test_when_memory_does_not_hold_the_answer_it_says_so(
    remembered: AsyncPersonaClient, model: AskModel, llm: ScriptedLLM
) -> None:
    model.answers.append(
        {"answer": {"city": None, "since": None}, "answered": False, "citations": []}
    )
    response = await remembered.ask_structured("u1", "Which car does the user drive?", CITY_SCHEMA)
    assert response.answered is False
    assert json.loads(response.answer_json) == {"city": None, "since": None}
    assert list(response.citations) == []


async def test_a_user_with_no_memories_is_answered_without_a_model_call(
    client: AsyncPersonaClient, model: AskModel, llm: ScriptedLLM
) -> None:
    response = await client.ask_structured("nobody", "Where does the user live?", CITY_SCHEMA)
    assert response.answered is False
    assert json.loads(response.answer_json) == {"city": None, "since": None}
    assert asks(llm) == []


async def test_an_answer_without_citations_is_repaired(
    remembered: AsyncPersonaClient, model: AskModel, llm: ScriptedLLM
) -> None:
    model.answers.append(
        {"answer": {"city": "Lisbon", "since": None}, "answered": True, "citations": []}
    )
    model.answers.append(
        lambda r: {
            "answer": {"city": "Lisbon", "since": None},
            "answered": True,
            "citations": [number_of(r, "Lisbon")],
        }
    )
    response = await remembered.ask_structured("u1", "Where does the user live?", CITY_SCHEMA)
    assert json.loads(response.answer_json)["city"] == "Lisbon"
    assert len(response.citations) == 1
    _, repair = asks(llm)
    assert "no shown memory is cited" in repair.messages[-1]["content"]


async def test_malformed_json_gets_one_repair_round_then_aborted(
    remembered: AsyncPersonaClient, model: AskModel, llm: ScriptedLLM
) -> None:
    model.answers.extend(
        [
            Reply('{"answer": {"city": "Lisbon"'),
            {"answer": {"city": 42, "since": None}, "answered": True, "citations": [1]},
        ]
    )
    with pytest.raises(AbortedError) as err:
        await remembered.ask_structured("u1", "Where does the user live?", CITY_SCHEMA)
    assert err.value.reason == "LLM_OUTPUT_INVALID"
    assert "at /answer/city: 42 is not of type 'string', 'null'" in err.value.message
    _, repair = asks(llm)
    assert "not valid JSON" in repair.messages[-1]["content"]
    assert len(asks(llm)) == 2  # exactly one repair round


async def test_schemas_with_defs_and_local_refs_are_supported(
    remembered: AsyncPersonaClient, model: AskModel, llm: ScriptedLLM
) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "place": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            }
        },
        "properties": {
            "home": {"anyOf": [{"$ref": "#/$defs/place"}, {"type": "null"}]},
            "previous": {"$ref": "#/properties/home"},
        },
        "required": ["home"],
    }
    model.answers.append(
        lambda r: {
            "answer": {"home": {"name": "Lisbon"}},
            "answered": True,
            "citations": [number_of(r, "Lisbon")],
        }
    )
    response = await remembered.ask_structured("u1", "Where is home?", schema)
    assert json.loads(response.answer_json) == {"home": {"name": "Lisbon"}}
    sent = asks(llm)[0].body["response_format"]["json_schema"]["schema"]
    assert "place" in sent["$defs"]  # hoisted to the root, where refs look for it
    answer = sent["properties"]["answer"]
    assert "$defs" not in answer and "$schema" not in answer
    assert answer["properties"]["previous"]["$ref"] == "#/properties/answer/properties/home"


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        (
            {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}},
            "remote $ref",
        ),
        ({"$dynamicRef": "#meta"}, "$dynamicRef"),
    ],
)
async def test_unsupported_schemas_are_invalid_argument(
    remembered: AsyncPersonaClient, model: AskModel, llm: ScriptedLLM, schema: Any, needle: str
) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        await remembered.ask_structured("u1", "Where?", schema)
    assert needle in err.value.message
    assert [v.field for v in err.value.field_violations] == ["json_schema"]
    assert asks(llm) == []


async def test_a_deeply_nested_schema_is_too_large(
    remembered: AsyncPersonaClient, model: AskModel
) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        schema = {"type": "object", "properties": {"x": schema}}
    with pytest.raises(InvalidArgumentError, match="nested more than"):
        await remembered.ask_structured("u1", "Where?", schema)


@pytest.fixture
async def no_retry_client(app: App) -> AsyncIterator[AsyncPersonaClient]:
    async with AsyncPersonaClient(
        f"127.0.0.1:{app.port}", api_key=KEY_A, retry=RetryPolicy(max_attempts=1)
    ) as c:
        yield c


async def test_a_model_that_cannot_be_reached_is_unavailable_with_retry_info(
    remembered: AsyncPersonaClient, no_retry_client: AsyncPersonaClient, llm: ScriptedLLM
) -> None:
    llm.responder = lambda request: Fail(503, "overloaded")
    with pytest.raises(UnavailableError) as err:
        await no_retry_client.ask_structured("u1", "Where does the user live?", CITY_SCHEMA)
    assert err.value.reason == "LLM_UNAVAILABLE"
    assert err.value.retry_delay is not None and err.value.retry_delay > 0
    assert "HTTP 503" in err.value.message
    assert len(asks(llm)) == 3  # 1 + llm_max_retries


async def test_a_spent_budget_is_resource_exhausted(start_app: StartApp, llm: ScriptedLLM) -> None:
    model = AskModel(llm)
    app = await start_app(llm_max_calls_per_request=1)
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        await client.ingest("u1", [Item(LISBON, source_id="m1")], wait_for_extraction=True)
        model.answers.append(Reply("not json"))
        with pytest.raises(ResourceExhaustedError) as err:
            await client.ask_structured("u1", "Where does the user live?", CITY_SCHEMA)
    assert err.value.reason == "LLM_BUDGET_EXHAUSTED"
    assert "PERSONA_LLM_MAX_CALLS_PER_REQUEST" in err.value.message
    assert len(asks(llm)) == 1  # the repair call was not made
