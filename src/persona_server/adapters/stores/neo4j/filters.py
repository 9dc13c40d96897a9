"""`MemoryFilter` as one constant Cypher predicate over `m`, switched by parameters.

The same rules as the embedded store (sqlite/filters.py) and services/filtering.py:
- types: the memory's type is one of them;
- occurred_from <= occurred_at < occurred_to; a memory without occurred_at fails any time bound
  (a comparison with null is null, which WHERE treats as false);
- metadata: every pair present with exactly that value;
- validity: by default a memory with invalid_at set is left out; include_invalidated keeps all;
  as_of keeps what was recorded by then and valid then.

A single predicate whose clauses switch off on null parameters keeps every query a literal
string: nothing from a filter is ever spliced into Cypher text.
"""

from __future__ import annotations

from typing import Any

from persona_server.adapters.stores.neo4j.codec import meta_pairs
from persona_server.adapters.stores.values import opt_us
from persona_server.ports.graph_store import MemoryFilter

FILTER = """(
    ($f_types IS NULL OR m.type IN $f_types)
    AND ($f_from IS NULL OR m.occurred_at >= $f_from)
    AND ($f_to IS NULL OR m.occurred_at < $f_to)
    AND all(pair IN $f_meta WHERE pair IN m.meta_pairs)
    AND CASE
        WHEN $f_as_of IS NOT NULL THEN
            m.recorded_at <= $f_as_of
            AND (m.valid_from IS NULL OR m.valid_from <= $f_as_of)
            AND (m.invalid_at IS NULL OR m.invalid_at > $f_as_of)
        WHEN $f_history THEN true
        ELSE m.invalid_at IS NULL
    END
)"""


def filter_params(flt: MemoryFilter) -> dict[str, Any]:
    return {
        "f_types": sorted(t.value for t in flt.types) or None,
        "f_from": opt_us(flt.occurred_from),
        "f_to": opt_us(flt.occurred_to),
        "f_meta": meta_pairs(flt.metadata),
        "f_as_of": opt_us(flt.as_of),
        "f_history": flt.include_invalidated,
    }
