"""What a tenant may do: request rate and storage quotas, and how long its episodes are kept;
server-wide defaults with per-tenant overrides (from the key file). Transport enforces the
rate, services the quotas and the retention policy."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class TenantLimits:
    """0 means no limit."""

    rate_limit_rps: float = 0.0  # sustained requests per second, per server process
    rate_limit_burst: int = 0  # requests allowed at once above the rate; 0 = one second's worth
    quota_memories_per_user: int = 0  # memories of every type one user may hold
    quota_bytes_per_tenant: int = 0  # UTF-8 bytes of text the tenant's memories may hold
    # Episodes whose event time is more than this many days ago are deleted, with what was
    # derived only from them (services/retention.py); 0 keeps them forever.
    retention_days: int = 0

    @property
    def burst(self) -> float:
        return float(self.rate_limit_burst or max(self.rate_limit_rps, 1.0))

    def overridden(self, overrides: dict[str, float | int]) -> TenantLimits:
        return replace(self, **overrides)  # type: ignore[arg-type]


LIMIT_NAMES = tuple(f.name for f in fields(TenantLimits))
