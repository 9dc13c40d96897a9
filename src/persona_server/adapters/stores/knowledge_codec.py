"""A knowledge document's fields as one JSON text, the same in both stores.

The fields (value, provenance, history) are read and written whole with their document, so
they are one property/column rather than rows: a document is small (one schema's fields) and
nothing queries inside it.
"""

from __future__ import annotations

import json
from typing import Any

from persona_server.adapters.stores.values import from_us, to_us
from persona_server.domain.knowledge import FieldChange, KnowledgeField


def dump_fields(fields: dict[str, KnowledgeField]) -> str:
    out: dict[str, Any] = {}
    for name, f in fields.items():
        out[name] = {
            "value": f.value,
            "memory_ids": f.memory_ids,
            "source_ids": f.source_ids,
            "updated_at": to_us(f.updated_at),
            "history": [
                {
                    "value": h.previous_value,
                    "at": to_us(h.changed_at),
                    "memory_ids": h.memory_ids,
                    "changed_by": h.changed_by,
                }
                for h in f.history
            ],
        }
    return json.dumps(out, ensure_ascii=False, sort_keys=True)


def load_fields(text: str) -> dict[str, KnowledgeField]:
    raw: dict[str, Any] = json.loads(text)
    return {
        name: KnowledgeField(
            value=f["value"],
            memory_ids=list(f["memory_ids"]),
            source_ids=list(f["source_ids"]),
            updated_at=from_us(int(f["updated_at"])),
            history=[
                FieldChange(
                    previous_value=h["value"],
                    changed_at=from_us(int(h["at"])),
                    memory_ids=list(h["memory_ids"]),
                    changed_by=list(h["changed_by"]),
                )
                for h in f["history"]
            ],
        )
        for name, f in raw.items()
    }
