"""AskStructured. Without an LLM configured it explains how to configure one."""

from __future__ import annotations

from typing import Protocol

from persona_server.domain.errors import FailedPreconditionError
from persona_server.services.commands import AskQuery
from persona_server.services.results import AskAnswer

LLM_NOT_CONFIGURED = (
    "AskStructured needs an LLM and none is configured: set PERSONA_LLM_MODEL (and "
    "PERSONA_LLM_BASE_URL and PERSONA_LLM_API_KEY for OpenAI or a self-hosted "
    "OpenAI-compatible server such as Ollama or vLLM), then restart the server"
)


class AskService(Protocol):
    async def ask(self, q: AskQuery) -> AskAnswer: ...


class OfflineAskService:
    async def ask(self, q: AskQuery) -> AskAnswer:
        raise FailedPreconditionError(LLM_NOT_CONFIGURED, reason="LLM_NOT_CONFIGURED")
