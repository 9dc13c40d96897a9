"""`MemoryFilter` as SQL, shared by listing and full-text search.

The vector cache applies the same rules with numpy (vectors.py); keep the two in step:
- types: the memory's type is one of them;
- occurred_from <= occurred_at < occurred_to; a memory without occurred_at fails any time bound;
- metadata: every pair present with exactly that value;
- validity: by default a memory with invalid_at set is left out; include_invalidated keeps all;
  as_of keeps what was known and valid at that instant: recorded_at <= as_of, (valid_from unset
  or <= as_of) and (invalid_at unset or > as_of). Same rules as services/filtering.py.
"""

from __future__ import annotations

from typing import Any

from persona_server.adapters.stores.values import to_us
from persona_server.ports.graph_store import MemoryFilter


def filter_sql(flt: MemoryFilter, alias: str = "m") -> tuple[str, list[Any]]:
    """A conjunction (starting with " AND ", or empty) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if flt.types:
        types = sorted(t.value for t in flt.types)
        clauses.append(f"{alias}.type IN ({','.join('?' * len(types))})")
        params.extend(types)
    if flt.occurred_from is not None:
        clauses.append(f"{alias}.occurred_at >= ?")
        params.append(to_us(flt.occurred_from))
    if flt.occurred_to is not None:
        clauses.append(f"{alias}.occurred_at < ?")
        params.append(to_us(flt.occurred_to))
    for key, value in sorted(flt.metadata.items()):
        # json_each rather than a JSON path: any key is safe as a bound value, no path quoting.
        clauses.append(
            f"EXISTS (SELECT 1 FROM json_each({alias}.metadata) j "
            "WHERE j.key = ? AND j.value = ? AND j.type = 'text')"
        )
        params.extend([key, value])
    if flt.as_of is not None:
        at = to_us(flt.as_of)
        clauses.append(
            f"{alias}.recorded_at <= ? "
            f"AND ({alias}.valid_from IS NULL OR {alias}.valid_from <= ?) "
            f"AND ({alias}.invalid_at IS NULL OR {alias}.invalid_at > ?)"
        )
        params.extend([at, at, at])
    elif not flt.include_invalidated:
        clauses.append(f"{alias}.invalid_at IS NULL")
    if not clauses:
        return "", params
    return " AND " + " AND ".join(clauses), params
