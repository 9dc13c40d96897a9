"""The `LlmClient` port: chat messages in, one JSON value out, with usage and a budget.

Adapters speak to a model (the OpenAI Chat Completions API, which every OpenAI-compatible server
also speaks); callers never see HTTP. Everything a call may cost is bounded here:

- a `Budget` per request (one RPC, or one ingested item in the background) caps the calls and
  tokens it may spend; it is checked before every call against what earlier calls reported;
- an `LlmScope` names who pays (the tenant) and carries the budget. Services that know the
  request open a scope (`use_scope`); code deeper down (an extractor behind the `Extractor`
  port, which has no notion of tenants) reads it with `current_scope()`.

`structured()` adds the JSON semantics on top of `LlmClient.complete`: parse, validate against
the JSON Schema with `jsonschema`, and allow one repair round that tells the model what did not
match. Errors are the three `Llm*Error`s below; the transport maps them to gRPC statuses.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import jsonschema

from persona_server.domain.models import Entity, EntityKind
from persona_server.ports.extractor import ExtractionInput

Role = Literal["system", "user", "assistant"]


class LlmError(Exception):
    """Base of the LLM errors; `message` is readable alone in a log or a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LlmUnavailableError(LlmError):
    """The model could not be reached after bounded retries (timeouts, 429, 5xx, refused
    connections, garbled responses). Retrying after `retry_after_s` may succeed."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LlmRejectedError(LlmError):
    """The server answered and refused the request (bad key, unknown model, unsupported
    parameter such as `json_schema`, prompt too long). Retrying the same call will not help
    until the deployment is reconfigured."""


class LlmOutputInvalidError(LlmError):
    """The model's answer is not JSON, or does not match the schema, even after the repair
    round. `message` says what did not match; `output` is the last raw answer (for logs)."""

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class LlmBudgetExceededError(LlmError):
    """The request has spent its budget of calls or tokens; no further call was made."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class LlmUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class JsonSchemaFormat:
    """The shape the answer must take. `strict` asks servers that support it (OpenAI) to
    guarantee the schema; it needs every property required and no additional properties, so
    only schemas written for it (Persona's own) set it."""

    name: str  # ^[a-zA-Z0-9_-]{1,64}$, as the Chat Completions API requires
    schema: Mapping[str, Any]
    strict: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    text: str  # the assistant message's content, as sent
    usage: LlmUsage
    finish_reason: str = ""  # "length" means the answer was cut off at the token limit


@dataclass
class Budget:
    """What one request may spend. Mutable: the adapter charges it after every call."""

    max_calls: int
    max_tokens: int
    calls: int = 0
    tokens: int = 0

    def check(self) -> None:
        """Raise before a call that the budget can no longer pay for."""
        if self.calls >= self.max_calls:
            raise LlmBudgetExceededError(
                f"the request's LLM budget is spent: {self.calls} of {self.max_calls} calls "
                "used (PERSONA_LLM_MAX_CALLS_PER_REQUEST)"
            )
        if self.tokens >= self.max_tokens:
            raise LlmBudgetExceededError(
                f"the request's LLM budget is spent: {self.tokens} of {self.max_tokens} tokens "
                "used (PERSONA_LLM_MAX_TOKENS_PER_REQUEST)"
            )

    @property
    def tokens_left(self) -> int:
        return max(self.max_tokens - self.tokens, 0)

    def charge(self, usage: LlmUsage) -> None:
        self.calls += 1
        self.tokens += usage.total_tokens


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    max_calls: int
    max_tokens: int

    def new_budget(self) -> Budget:
        return Budget(max_calls=self.max_calls, max_tokens=self.max_tokens)


@dataclass
class LlmScope:
    """Who pays for the calls made inside it, and from which budget."""

    tenant: str
    budget: Budget
    # Calls by purpose ("extract", "disambiguate", "ask", "repair"), for reporting.
    purposes: dict[str, int] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return self.budget.calls


_scope: contextvars.ContextVar[LlmScope | None] = contextvars.ContextVar(
    "persona_llm_scope", default=None
)


@contextlib.contextmanager
def use_scope(scope: LlmScope) -> Iterator[LlmScope]:
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current_scope() -> LlmScope | None:
    return _scope.get()


class LlmClient(Protocol):
    @property
    def model(self) -> str:
        """The model name calls go to, e.g. "gpt-4o-mini" or "llama3.1:8b"."""
        ...

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        response_format: JsonSchemaFormat,
        scope: LlmScope,
        purpose: str,
    ) -> Completion:
        """One chat completion asking for JSON of `response_format`'s shape.

        Checks and charges `scope.budget`; retries transient failures with backoff; raises
        `LlmUnavailableError`, `LlmRejectedError` or `LlmBudgetExceededError`. The text is not
        validated here (see `structured`).
        """
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Structured:
    value: Any  # the parsed JSON, valid against the schema
    text: str
    calls: int  # 1, or 2 after a repair round


Check = Callable[[Any], list[str]]  # extra checks after the schema: problems, empty if fine


def schema_problems(schema: Mapping[str, Any], value: Any, limit: int = 5) -> list[str]:
    """What does not match, one readable line per problem ("at /age: 'x' is not of type
    'integer'"), the most relevant first."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(value), key=jsonschema.exceptions.relevance)
    out = []
    for error in errors[:limit]:
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        out.append(f"at {where}: {error.message}"[:300])
    return out


def parse_json(text: str) -> tuple[Any, str]:
    """(value, problem): the JSON in a model's answer, tolerating a Markdown code fence, which
    small self-hosted models add even in JSON mode."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        return json.loads(body), ""
    except json.JSONDecodeError as exc:
        return (
            None,
            f"the answer is not valid JSON ({exc.msg} at line {exc.lineno} col {exc.colno})",
        )


async def structured(
    llm: LlmClient,
    messages: Sequence[ChatMessage],
    response_format: JsonSchemaFormat,
    *,
    scope: LlmScope,
    purpose: str,
    check: Check | None = None,
    repairs: int = 1,
) -> Structured:
    """Ask, parse, validate; on a mismatch show the model its answer and the problems and ask
    again (at most `repairs` times). Raises `LlmOutputInvalidError` when it still does not fit."""
    conversation = list(messages)
    calls = 0
    while True:
        completion = await llm.complete(
            conversation,
            response_format=response_format,
            scope=scope,
            purpose=purpose if calls == 0 else "repair",
        )
        calls += 1
        value, problem = parse_json(completion.text)
        if problem and completion.finish_reason == "length":
            problem = "the answer was cut off at the output token limit; answer more briefly"
        problems = [problem] if problem else schema_problems(response_format.schema, value)
        if not problems and check is not None:
            problems = check(value)
        if not problems:
            return Structured(value=value, text=completion.text, calls=calls)
        if calls > repairs:
            raise LlmOutputInvalidError(
                "the model's answer did not match the required JSON Schema after "
                f"{repairs} repair round(s): " + "; ".join(problems),
                output=completion.text,
            )
        conversation += [
            ChatMessage("assistant", completion.text[:20_000]),
            ChatMessage(
                "user",
                "Your answer was rejected: "
                + "; ".join(problems)
                + ". Answer again with only one JSON value that satisfies the schema.",
            ),
        ]


# --- entity disambiguation (the one small extra call extraction may make per item) ---


@dataclass(frozen=True, slots=True)
class AmbiguousMention:
    """An extracted name that deterministic resolution could not pin to one existing entity."""

    name: str
    kind: EntityKind
    candidates: tuple[Entity, ...]


@runtime_checkable
class Disambiguator(Protocol):
    async def disambiguate(
        self, item: ExtractionInput, mentions: Sequence[AmbiguousMention]
    ) -> dict[str, str | None]:
        """For each mention name: the id of the candidate it refers to, or None for "a new
        entity / cannot tell". Ids outside a mention's candidates are ignored by the caller."""
        ...
