"""The OpenAI Chat Completions adapter against the scripted server: request shape, structured
output modes, retries with backoff, budgets and per-tenant usage metrics."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from persona_server.adapters.llm.factory import build_llm_client, token_limit_field
from persona_server.adapters.llm.openai_chat import OpenAIChatClient
from persona_server.adapters.llm.usage import UsageLedger
from persona_server.ports.llm import (
    Budget,
    ChatMessage,
    JsonSchemaFormat,
    LlmBudgetExceededError,
    LlmOutputInvalidError,
    LlmRejectedError,
    LlmScope,
    LlmUnavailableError,
    structured,
)
from tests.llm.conftest import llm_settings
from tests.llm.scripted_llm import Fail, Raw, Reply, ScriptedLLM

SCHEMA = JsonSchemaFormat(
    name="city",
    schema={
        "type": "object",
        "properties": {"city": {"type": ["string", "null"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
    strict=True,
)
MESSAGES = [ChatMessage("system", "Answer in JSON."), ChatMessage("user", "Where?")]


def scope(tenant: str = "tenant-a", calls: int = 10, tokens: int = 100_000) -> LlmScope:
    return LlmScope(tenant=tenant, budget=Budget(max_calls=calls, max_tokens=tokens))


def make_client(llm: ScriptedLLM, **overrides: Any) -> OpenAIChatClient:
    options: dict[str, Any] = {
        "model": "scripted-model",
        "base_url": llm.base_url,
        "api_key": "sk-test-key",
        "timeout_s": 2.0,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    options.update(overrides)
    return OpenAIChatClient(**options)


@pytest.fixture
async def client(llm: ScriptedLLM) -> AsyncIterator[OpenAIChatClient]:
    c = make_client(llm)
    try:
        yield c
    finally:
        await c.close()


async def test_json_schema_request_over_http(llm: ScriptedLLM, client: OpenAIChatClient) -> None:
    llm.push(Reply({"city": "Lisbon"}, prompt_tokens=50, completion_tokens=7))
    result = await structured(client, MESSAGES, SCHEMA, scope=scope(), purpose="ask")
    assert result.value == {"city": "Lisbon"} and result.calls == 1

    (request,) = llm.completions()
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-key"
    assert request.body["model"] == "scripted-model"
    assert request.body["messages"] == [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "Where?"},
    ]
    fmt = request.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"] == {"name": "city", "schema": SCHEMA.schema, "strict": True}
    assert request.body["max_tokens"] == 2048
    assert request.body["temperature"] == 0.0


async def test_json_object_mode_puts_the_schema_in_the_prompt_and_still_validates(
    llm: ScriptedLLM,
) -> None:
    client = make_client(llm, structured_mode="json_object")
    try:
        llm.push(Reply('```json\n{"city": 42}\n```'), Reply('{"city": "Porto"}'))
        result = await structured(client, MESSAGES, SCHEMA, scope=scope(), purpose="ask")
    finally:
        await client.close()
    assert result.value == {"city": "Porto"} and result.calls == 2
    first, repair = llm.completions()
    assert first.body["response_format"] == {"type": "json_object"}
    # One system message, first, carrying the schema (chat templates that allow only one).
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert json.dumps(SCHEMA.schema) in first.system
    # The repair round shows the model its answer and what did not match.
    assert repair.messages[-2] == {"role": "assistant", "content": '```json\n{"city": 42}\n```'}
    assert "at /city: 42 is not of type 'string', 'null'" in repair.messages[-1]["content"]


async def test_429_and_500_are_retried_with_backoff(
    llm: ScriptedLLM, client: OpenAIChatClient
) -> None:
    llm.push(
        Fail(429, "slow down", headers={"retry-after-ms": "150"}),
        Fail(500, "boom"),
        Reply({"city": "Faro"}),
    )
    started = time.monotonic()
    result = await structured(client, MESSAGES, SCHEMA, scope=scope(), purpose="ask")
    assert result.value == {"city": "Faro"}
    assert len(llm.completions()) == 3
    # The server's Retry-After (150 ms) is honoured over the shorter own backoff.
    assert time.monotonic() - started >= 0.15
    assert client.ledger.tenant("tenant-a").calls == 1  # only the answered call is billed


async def test_retries_are_bounded_then_unavailable(
    llm: ScriptedLLM, client: OpenAIChatClient
) -> None:
    llm.push(Fail(503), Fail(502), Fail(500), Fail(500))
    with pytest.raises(LlmUnavailableError) as err:
        await client.complete(MESSAGES, response_format=SCHEMA, scope=scope(), purpose="ask")
    assert len(llm.completions()) == 3  # 1 + max_retries
    assert "HTTP 500" in err.value.message
    assert err.value.retry_after_s > 0


async def test_timeouts_are_retried_then_unavailable(llm: ScriptedLLM) -> None:
    client = make_client(llm, timeout_s=0.2, max_retries=1)
    try:
        llm.push(Reply({"city": "x"}, delay_s=2), Reply({"city": "x"}, delay_s=2))
        started = time.monotonic()
        with pytest.raises(LlmUnavailableError, match="timed out"):
            await client.complete(MESSAGES, response_format=SCHEMA, scope=scope(), purpose="ask")
        assert time.monotonic() - started < 1.5
        assert len(llm.completions()) == 2
    finally:
        await client.close()


async def test_a_garbled_body_is_retried(llm: ScriptedLLM, client: OpenAIChatClient) -> None:
    llm.push(Raw(b"<html>bad gateway</html"), Raw(b'{"choices": [tru'), Reply({"city": "Braga"}))
    result = await structured(client, MESSAGES, SCHEMA, scope=scope(), purpose="ask")
    assert result.value == {"city": "Braga"}
    assert len(llm.completions()) == 3


async def test_a_refusal_is_not_retried(llm: ScriptedLLM, client: OpenAIChatClient) -> None:
    llm.push(Fail(400, "response_format json_schema is not supported"))
    with pytest.raises(LlmRejectedError) as err:
        await client.complete(MESSAGES, response_format=SCHEMA, scope=scope(), purpose="ask")
    assert len(llm.completions()) == 1
    assert "PERSONA_LLM_STRUCTURED_OUTPUT=json_object" in err.value.message


async def test_output_that_never_fits_fails_after_one_repair(
    llm: ScriptedLLM, client: OpenAIChatClient
) -> None:
    llm.push(Reply("{not json"), Reply('{"town": "Lisbon"}'))
    with pytest.raises(LlmOutputInvalidError) as err:
        await structured(client, MESSAGES, SCHEMA, scope=scope(), purpose="ask")
    assert len(llm.completions()) == 2
    assert "'city' is a required property" in err.value.message


async def test_budget_is_checked_before_each_call(
    llm: ScriptedLLM, client: OpenAIChatClient
) -> None:
    llm.push(Reply("{not json", prompt_tokens=10, completion_tokens=5))
    calls_budget = scope(calls=1)
    with pytest.raises(LlmBudgetExceededError, match="1 of 1 calls"):
        await structured(client, MESSAGES, SCHEMA, scope=calls_budget, purpose="ask")
    assert len(llm.completions()) == 1  # the repair call was never sent

    llm.push(Reply({"city": "Evora"}, prompt_tokens=900, completion_tokens=200))
    tokens_budget = scope(tokens=1000)
    await client.complete(MESSAGES, response_format=SCHEMA, scope=tokens_budget, purpose="ask")
    assert tokens_budget.budget.tokens == 1100
    with pytest.raises(LlmBudgetExceededError, match="1100 of 1000 tokens"):
        await client.complete(MESSAGES, response_format=SCHEMA, scope=tokens_budget, purpose="ask")
    assert len(llm.completions()) == 2


async def test_output_cap_never_exceeds_the_budget_left(
    llm: ScriptedLLM, client: OpenAIChatClient
) -> None:
    llm.push(Reply({"city": "Sines"}))
    budget = scope(tokens=300)
    await client.complete(MESSAGES, response_format=SCHEMA, scope=budget, purpose="ask")
    assert llm.completions()[0].body["max_tokens"] == 300


async def test_usage_is_counted_per_tenant_and_exported(llm: ScriptedLLM) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    client = make_client(llm, ledger=UsageLedger(provider))
    try:
        llm.push(
            Reply({"city": "a"}, prompt_tokens=100, completion_tokens=10),
            Reply({"city": "b"}, prompt_tokens=200, completion_tokens=20),
            Reply({"city": "c"}, prompt_tokens=1, completion_tokens=2),
        )
        await client.complete(MESSAGES, response_format=SCHEMA, scope=scope("t1"), purpose="ask")
        await client.complete(MESSAGES, response_format=SCHEMA, scope=scope("t1"), purpose="x")
        await client.complete(MESSAGES, response_format=SCHEMA, scope=scope("t2"), purpose="ask")
    finally:
        await client.close()
    t1 = client.ledger.tenant("t1")
    assert (t1.calls, t1.prompt_tokens, t1.completion_tokens) == (2, 300, 30)
    assert client.ledger.tenant("t2").total_tokens == 3

    data = reader.get_metrics_data()
    assert data is not None
    totals: dict[tuple[str, str], int] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != "persona.llm.tokens":
                    continue
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    attrs = dict(point.attributes or {})
                    key = (str(attrs["tenant"]), str(attrs["kind"]))
                    totals[key] = totals.get(key, 0) + int(point.value)
    assert totals == {
        ("t1", "prompt"): 300,
        ("t1", "completion"): 30,
        ("t2", "prompt"): 1,
        ("t2", "completion"): 2,
    }


async def test_a_server_that_reports_no_usage_is_still_charged(
    llm: ScriptedLLM, client: OpenAIChatClient
) -> None:
    llm.push(Reply({"city": "Tavira"}, usage=False))
    budget = scope()
    await client.complete(MESSAGES, response_format=SCHEMA, scope=budget, purpose="ask")
    assert budget.budget.calls == 1 and budget.budget.tokens > 0


def test_settings_build_the_client(llm: ScriptedLLM, tmp_path: Any) -> None:
    settings = llm_settings(tmp_path, llm, llm_structured_output="json_object")
    built = build_llm_client(settings)
    assert built is not None and built.model == "scripted-model"
    assert built.base_url.rstrip("/") == llm.base_url
    assert token_limit_field(settings) == "max_tokens"
    assert token_limit_field(llm_settings(tmp_path, llm, llm_base_url="")) == (
        "max_completion_tokens"
    )
    assert build_llm_client(llm_settings(tmp_path, llm, llm_model="")) is None
