"""Knowledge schemas and the per-user documents Persona keeps for them (the Custom Knowledge API).

A tenant registers JSON Schemas of objects; for each one, every user of the tenant gets a
document: one value per top-level property ("field"), each with the memories it came from and
its earlier values. Documents are plain data here; `services/knowledge*.py` builds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
NAME_RULE = "must match ^[a-z][a-z0-9_]{0,63}$ (a lowercase letter, then letters, digits, _)"
MAX_SCHEMAS_PER_TENANT = 50
# A field lists at most this many memories (the first, then the newest confirmations are not
# added); its history keeps its newest this many earlier values.
FIELD_PROVENANCE_LIMIT = 32
FIELD_HISTORY_LIMIT = 20


@dataclass(frozen=True)
class KnowledgeSchema:
    tenant: str
    name: str
    json_schema: str  # as registered (the text is what List returns)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class FieldChange:
    """An earlier value of a field: what it was, when it was replaced, from which memories it
    came, and which memories replaced it."""

    previous_value: Any
    changed_at: datetime
    memory_ids: list[str]
    changed_by: list[str]


@dataclass(frozen=True)
class KnowledgeField:
    value: Any
    memory_ids: list[str]
    source_ids: list[str]
    updated_at: datetime
    history: list[FieldChange] = field(default_factory=list)


@dataclass(frozen=True)
class KnowledgeDocument:
    """One user's document of one schema. `cursor` is the ingest sequence (`Episode.seq`) of
    the last episode it has taken in: every episode after it is still to be read."""

    name: str
    fields: dict[str, KnowledgeField]
    cursor: int = 0
    updated_at: datetime | None = None

    @property
    def value(self) -> dict[str, Any]:
        return {k: f.value for k, f in self.fields.items()}
