"""Builds the LLM client from settings; None when no model is configured (offline)."""

from __future__ import annotations

from typing import Any

from persona_server.adapters.llm.openai_chat import OpenAIChatClient, TokenLimitField
from persona_server.adapters.llm.usage import UsageLedger
from persona_server.config import Settings


def token_limit_field(settings: Settings) -> TokenLimitField:
    if settings.llm_token_limit_field != "auto":
        return settings.llm_token_limit_field
    # OpenAI's reasoning models refuse `max_tokens`; many self-hosted servers only know it.
    base = settings.llm_base_url
    return "max_completion_tokens" if not base or "api.openai.com" in base else "max_tokens"


def build_llm_client(
    settings: Settings, *, meter_provider: Any | None = None
) -> OpenAIChatClient | None:
    if not settings.llm_configured:
        return None
    return OpenAIChatClient(
        model=settings.llm_model,
        base_url=settings.llm_base_url or None,
        api_key=settings.llm_api_key.get_secret_value() or None,
        timeout_s=settings.llm_timeout_s,
        structured_mode=settings.llm_structured_output,
        max_retries=settings.llm_max_retries,
        backoff_base_s=settings.llm_retry_base_s,
        backoff_max_s=settings.llm_retry_max_s,
        max_output_tokens=settings.llm_max_output_tokens,
        temperature=settings.llm_temperature,
        token_limit_field=token_limit_field(settings),
        max_concurrency=settings.llm_max_concurrency,
        ledger=UsageLedger(meter_provider),
    )
