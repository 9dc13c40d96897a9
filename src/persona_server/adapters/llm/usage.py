"""Token and call accounting per tenant: OpenTelemetry counters plus an in-process ledger.

The counters (`persona.llm.tokens`, `persona.llm.calls`) go wherever the process's
MeterProvider sends them (nowhere until one is configured). The ledger keeps the same numbers in
memory so that an operator endpoint or a test can read them without a metrics pipeline.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics

from persona_server.ports.llm import LlmUsage


@dataclass(frozen=True)
class TenantUsage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageLedger:
    def __init__(self, meter_provider: Any | None = None) -> None:
        # A provider may be injected (tests use an in-memory reader); otherwise the global one.
        meter = (
            meter_provider.get_meter("persona.llm")
            if meter_provider is not None
            else metrics.get_meter("persona.llm")
        )
        self._tokens = meter.create_counter(
            "persona.llm.tokens", unit="{token}", description="LLM tokens used, by tenant and kind"
        )
        self._calls = meter.create_counter(
            "persona.llm.calls",
            unit="{call}",
            description="LLM calls, by tenant, purpose and outcome",
        )
        self._lock = threading.Lock()
        self._by_tenant: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])

    def record(self, tenant: str, model: str, purpose: str, usage: LlmUsage) -> None:
        attrs = {"tenant": tenant, "model": model, "purpose": purpose}
        self._tokens.add(usage.prompt_tokens, {**attrs, "kind": "prompt"})
        self._tokens.add(usage.completion_tokens, {**attrs, "kind": "completion"})
        self._calls.add(1, {**attrs, "outcome": "ok"})
        with self._lock:
            row = self._by_tenant[tenant]
            row[0] += 1
            row[1] += usage.prompt_tokens
            row[2] += usage.completion_tokens

    def record_failure(self, tenant: str, model: str, purpose: str, outcome: str) -> None:
        # Failed attempts cost no reported tokens but are worth seeing (rate limits, timeouts).
        self._calls.add(
            1, {"tenant": tenant, "model": model, "purpose": purpose, "outcome": outcome}
        )

    def tenant(self, tenant: str) -> TenantUsage:
        with self._lock:
            calls, prompt, completion = self._by_tenant.get(tenant, (0, 0, 0))
        return TenantUsage(calls, prompt, completion)

    def snapshot(self) -> dict[str, TenantUsage]:
        with self._lock:
            return {t: TenantUsage(*row) for t, row in self._by_tenant.items()}
