"""Knowledge schemas: register, list and delete a tenant's schemas, and read users' documents.

A knowledge schema is a JSON Schema of an object; its top-level properties are the fields of
the document Persona keeps per user (built by `knowledge_updater.py`). Schemas have the same
limits as AskStructured's (`json_schemas`).

Replacing a schema (Put with the name of an existing one) keeps the documents already built:
GetKnowledge returns them as they are until the user's next item is taken in; that update
drops the fields the new schema no longer has and validates the document against the new
schema. Documents of a new schema are built from each user's whole history (every stored
episode is read once, in ingest order).

Deleting memories (`forget_memories`, called by DeleteMemory; any other deletion of episodes
should call it too) takes them out of every field's provenance and history; a value, current
or earlier, that came only from them goes with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from persona_server.domain.errors import (
    FailedPreconditionError,
    NotFoundError,
    ResourceExhaustedError,
)
from persona_server.domain.knowledge import (
    MAX_SCHEMAS_PER_TENANT,
    FieldChange,
    KnowledgeDocument,
    KnowledgeField,
    KnowledgeSchema,
)
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import GraphStore, StoreUnavailableError
from persona_server.services import json_schemas
from persona_server.services.ingest import utcnow

LLM_NOT_CONFIGURED = (
    "GetKnowledge needs an LLM and none is configured: set PERSONA_LLM_MODEL (and "
    "PERSONA_LLM_BASE_URL and PERSONA_LLM_API_KEY for OpenAI or a self-hosted "
    "OpenAI-compatible server such as Ollama or vLLM), then restart the server. Registered "
    "schemas are kept; their documents are built from each user's history once it runs"
)


def document_fields(schema: dict[str, Any]) -> list[str]:
    """The top-level properties of a knowledge schema, or `SchemaProblem` if it does not
    describe an object with at least one."""
    if schema.get("type") != "object":
        raise json_schemas.SchemaProblem('must describe an object ("type": "object")')
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise json_schemas.SchemaProblem("must have at least one property (its document fields)")
    return list(properties)


def partial_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a document is checked against: without its top-level `required`, since a
    document is built up field by field as items support them."""
    return {k: v for k, v in schema.items() if k != "required"}


@dataclass(frozen=True)
class PutSchema:
    tenant: str
    name: str
    json_schema: str  # validated: json_schemas.parse and document_fields accept it


@dataclass(frozen=True)
class KnowledgeView:
    document: KnowledgeDocument
    pending_items: int


class KnowledgeService:
    def __init__(self, store: GraphStore, *, llm_configured: bool) -> None:
        self._store = store
        self._llm_configured = llm_configured

    async def put_schema(self, cmd: PutSchema) -> tuple[KnowledgeSchema, bool]:
        now = utcnow()
        created, accepted = await self._store.knowledge.put_schema(
            KnowledgeSchema(cmd.tenant, cmd.name, cmd.json_schema, now, now),
            MAX_SCHEMAS_PER_TENANT,
        )
        if not accepted:
            raise ResourceExhaustedError(
                f"the tenant already has {MAX_SCHEMAS_PER_TENANT} knowledge schemas, the most "
                "it may register: delete one first",
                reason="KNOWLEDGE_SCHEMA_LIMIT",
            )
        stored = await self._store.knowledge.get_schema(cmd.tenant, cmd.name)
        if stored is None:  # deleted between the two calls by another request
            raise NotFoundError(
                f"knowledge schema {cmd.name!r} was deleted meanwhile",
                reason="KNOWLEDGE_SCHEMA_NOT_FOUND",
            )
        return stored, created

    async def list_schemas(
        self, tenant: str, *, after: str, limit: int
    ) -> tuple[list[KnowledgeSchema], str]:
        found = await self._store.knowledge.list_schemas(tenant, after=after, limit=limit + 1)
        page = found[:limit]
        return page, (page[-1].name if len(found) > limit else "")

    async def delete_schema(self, tenant: str, name: str) -> int:
        deleted = await self._store.knowledge.delete_schema(tenant, name)
        if deleted is None:
            raise NotFoundError(
                f"no knowledge schema named {name!r}", reason="KNOWLEDGE_SCHEMA_NOT_FOUND"
            )
        return deleted

    async def get(self, user: UserRef, name: str) -> KnowledgeView:
        if await self._store.knowledge.get_schema(user.tenant, name) is None:
            raise NotFoundError(
                f"no knowledge schema named {name!r}", reason="KNOWLEDGE_SCHEMA_NOT_FOUND"
            )
        if not self._llm_configured:
            raise FailedPreconditionError(LLM_NOT_CONFIGURED, reason="LLM_NOT_CONFIGURED")
        documents = await self._store.knowledge.documents(user)
        document = documents.get(name) or KnowledgeDocument(name, {})
        pending = await self._store.knowledge.count_episodes_after(user, document.cursor)
        return KnowledgeView(document, pending)


_FORGET_ATTEMPTS = 5


def without(document: KnowledgeDocument, gone: set[str]) -> KnowledgeDocument | None:
    """The document with no trace of the memories in `gone` (None if it has none): they leave
    every provenance list; a value (current or earlier) that came only from them goes."""
    changed = False
    fields: dict[str, KnowledgeField] = {}
    for name, f in document.fields.items():
        history = []
        for h in f.history:
            kept = [m for m in h.memory_ids if m not in gone]
            by = [m for m in h.changed_by if m not in gone]
            changed |= len(kept) != len(h.memory_ids) or len(by) != len(h.changed_by)
            if kept:
                history.append(FieldChange(h.previous_value, h.changed_at, kept, by))
        pairs = [(m, s) for m, s in zip(f.memory_ids, f.source_ids, strict=False) if m not in gone]
        changed |= len(pairs) != len(f.memory_ids)
        if pairs:
            fields[name] = KnowledgeField(
                f.value, [m for m, _ in pairs], [s for _, s in pairs], f.updated_at, history
            )
    if not changed:
        return None
    return KnowledgeDocument(document.name, fields, document.cursor, utcnow())


async def forget_memories(store: GraphStore, user: UserRef, deleted: Sequence[str]) -> None:
    """Remove deleted memories from the user's knowledge documents (DeleteMemory, and any
    deletion of episodes): values that came only from them go with them."""
    gone = set(deleted)
    if not gone:
        return
    for _ in range(_FORGET_ATTEMPTS):
        documents = await store.knowledge.documents(user)
        writes = [
            (doc, d.cursor) for d in documents.values() if (doc := without(d, gone)) is not None
        ]
        # Compare-and-set on the cursors: a concurrent update makes us read again.
        if not writes or await store.knowledge.put_documents(user, writes):
            return
    raise StoreUnavailableError("knowledge documents kept changing; try the delete again")


async def forget_missing(store: GraphStore, user: UserRef) -> None:
    """`forget_memories` for every memory the user's documents cite that the user no longer
    has: for deletions that do not list what they removed (the retention job)."""
    documents = await store.knowledge.documents(user)
    cited = {
        m
        for d in documents.values()
        for f in d.fields.values()
        for m in [*f.memory_ids, *(i for h in f.history for i in (*h.memory_ids, *h.changed_by))]
    }
    if not cited:
        return
    found = await store.memories.get_many(user, sorted(cited))
    await forget_memories(store, user, [m for m in cited if m not in found])
