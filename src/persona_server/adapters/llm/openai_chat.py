"""`LlmClient` over the Chat Completions API (`POST {base_url}/chat/completions`) with the
official `openai` package: OpenAI itself, and every OpenAI-compatible server (Ollama, vLLM,
llama.cpp, LM Studio, LiteLLM...).

Structured output has two modes, chosen by a setting because servers differ:
- `json_schema`: `response_format={"type": "json_schema", ...}` — OpenAI, vLLM, recent Ollama
  and llama.cpp constrain decoding to the schema;
- `json_object`: `response_format={"type": "json_object"}` plus the schema written into the
  system message, for servers that only know JSON mode. The caller validates either way.

The client's own retries are off: this adapter retries timeouts, refused connections, 408/409/
425/429 and 5xx itself, with exponential backoff, jitter and `Retry-After`, so that every
attempt is bounded, counted and visible in metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Sequence
from typing import Any, Literal

import openai
from openai.types.chat import ChatCompletion

from persona_server.adapters.llm.usage import UsageLedger
from persona_server.ports.llm import (
    ChatMessage,
    Completion,
    JsonSchemaFormat,
    LlmRejectedError,
    LlmScope,
    LlmUnavailableError,
    LlmUsage,
)

log = logging.getLogger(__name__)

StructuredMode = Literal["json_schema", "json_object"]
TokenLimitField = Literal["max_tokens", "max_completion_tokens"]
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
# Without a key the `openai` package refuses to start; self-hosted servers ignore the header.
_PLACEHOLDER_KEY = "not-needed"


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(float(raw) / divisor, 0.0)
        except ValueError:
            continue  # an HTTP date: rare for model servers; fall back to our own backoff
    return None


def _estimate_tokens(chars: int) -> int:
    # ~4 characters per token for English; only used when a server reports no usage.
    return max(1, chars // 4)


class OpenAIChatClient:
    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        structured_mode: StructuredMode = "json_schema",
        max_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_output_tokens: int = 2048,
        temperature: float | None = 0.0,
        token_limit_field: TokenLimitField = "max_tokens",
        max_concurrency: int = 8,
        ledger: UsageLedger | None = None,
    ) -> None:
        if not model:
            raise ValueError("model must be set for the LLM client")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._model = model
        self._timeout_s = timeout_s
        self._mode = structured_mode
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._max_output_tokens = max_output_tokens
        self._temperature = temperature
        self._token_limit_field = token_limit_field
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.ledger = ledger or UsageLedger()
        key = api_key or os.environ.get("OPENAI_API_KEY") or _PLACEHOLDER_KEY
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=base_url or None,
            timeout=timeout_s,
            max_retries=0,
        )

    @property
    def model(self) -> str:
        return self._model

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    async def close(self) -> None:
        await self._client.close()

    def _messages(
        self, messages: Sequence[ChatMessage], response_format: JsonSchemaFormat
    ) -> list[dict[str, str]]:
        out = [{"role": m.role, "content": m.content} for m in messages]
        if self._mode == "json_object":
            # JSON mode constrains the syntax only: the schema has to travel in the prompt.
            # Merged into the first system message because some chat templates (llama.cpp,
            # several Ollama models) accept only one, at the start.
            note = (
                "Reply with one JSON object and nothing else. It must be valid against this "
                f"JSON Schema:\n{json.dumps(response_format.schema, ensure_ascii=False)}"
            )
            if out and out[0]["role"] == "system":
                out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + note}
            else:
                out.insert(0, {"role": "system", "content": note})
        return out

    def _response_format(self, response_format: JsonSchemaFormat) -> dict[str, Any]:
        if self._mode == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {
                "name": response_format.name,
                "schema": dict(response_format.schema),
                "strict": response_format.strict,
            },
        }

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_max_s, self._backoff_base_s * float(2**attempt))
        # "Equal jitter": never zero, and concurrent callers spread out instead of retrying
        # in lockstep against a server that is already overloaded.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        response_format: JsonSchemaFormat,
        scope: LlmScope,
        purpose: str,
    ) -> Completion:
        scope.budget.check()
        limit = max(1, min(self._max_output_tokens, scope.budget.tokens_left))
        kwargs: dict[str, Any] = {
            "model": self._model,
            "messages": self._messages(messages, response_format),
            "response_format": self._response_format(response_format),
            self._token_limit_field: limit,
        }
        if self._temperature is not None:
            kwargs["temperature"] = self._temperature
        last = ""
        retry_after = self._backoff_base_s
        for attempt in range(self._max_retries + 1):
            if attempt:
                await asyncio.sleep(retry_after)
            outcome, detail, hint = await self._attempt(kwargs, scope, purpose)
            if isinstance(outcome, Completion):
                return outcome
            last = detail
            backoff = self._backoff(attempt)
            retry_after = max(backoff, hint) if hint is not None else backoff
            if hint is not None and hint > self._backoff_max_s * 4:
                break  # the server asks for a long pause: report it instead of sleeping on it
            log.warning(
                "LLM call failed",
                extra={"purpose": purpose, "attempt": attempt + 1, "error": detail},
            )
        raise LlmUnavailableError(
            f"the LLM at {self.base_url} did not answer after {self._max_retries + 1} "
            f"attempt(s): {last}",
            retry_after_s=retry_after,
        )

    async def _attempt(
        self, kwargs: dict[str, Any], scope: LlmScope, purpose: str
    ) -> tuple[Completion | None, str, float | None]:
        """One HTTP call: (completion, "", None) or (None, why it failed, Retry-After)."""
        tenant = scope.tenant
        try:
            async with self._semaphore, asyncio.timeout(self._timeout_s):
                response = await self._client.chat.completions.create(**kwargs)
        except (TimeoutError, openai.APITimeoutError):
            self.ledger.record_failure(tenant, self._model, purpose, "timeout")
            return None, f"timed out after {self._timeout_s:g} s", None
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status in _RETRYABLE_STATUS or status >= 500:
                self.ledger.record_failure(tenant, self._model, purpose, f"http_{status}")
                return None, f"HTTP {status}: {exc.message}"[:300], _retry_after(exc)
            self.ledger.record_failure(tenant, self._model, purpose, f"http_{status}")
            hint = ""
            if status in (400, 422) and self._mode == "json_schema":
                hint = (
                    "; if the server does not support json_schema response formats, set "
                    "PERSONA_LLM_STRUCTURED_OUTPUT=json_object"
                )
            why = f"HTTP {status}: {exc.message}"[:400]
            raise LlmRejectedError(
                f"the LLM at {self.base_url} refused the request ({why}){hint}"
            ) from exc
        except openai.APIConnectionError as exc:
            self.ledger.record_failure(tenant, self._model, purpose, "connection")
            return None, f"connection failed: {exc.message}", None
        except (ValueError, openai.APIResponseValidationError) as exc:
            # A 200 whose body is not a chat completion (a proxy's HTML page, a truncated
            # body): the endpoint is unhealthy, which is worth a retry.
            self.ledger.record_failure(tenant, self._model, purpose, "malformed")
            return None, f"malformed response: {type(exc).__name__}", None
        if not isinstance(response, ChatCompletion) or not response.choices:
            self.ledger.record_failure(tenant, self._model, purpose, "malformed")
            return None, "malformed response: not a chat completion", None
        choice = response.choices[0]
        text = choice.message.content or ""
        refusal = getattr(choice.message, "refusal", None)
        if refusal and not text:
            text = json.dumps({"refusal": refusal})
        if response.usage is not None:
            usage = LlmUsage(
                prompt_tokens=response.usage.prompt_tokens or 0,
                completion_tokens=response.usage.completion_tokens or 0,
            )
        else:
            prompt_chars = sum(len(m["content"]) for m in kwargs["messages"])
            usage = LlmUsage(_estimate_tokens(prompt_chars), _estimate_tokens(len(text)))
        scope.budget.charge(usage)
        scope.purposes[purpose] = scope.purposes.get(purpose, 0) + 1
        self.ledger.record(tenant, self._model, purpose, usage)
        return (
            Completion(text=text, usage=usage, finish_reason=choice.finish_reason or ""),
            "",
            None,
        )
