"""Knowledge schemas and documents, domain -> proto."""

from __future__ import annotations

import json

from persona.v1 import knowledge_pb2 as kpb
from persona_server.domain.knowledge import KnowledgeField, KnowledgeSchema
from persona_server.services.knowledge import KnowledgeView
from persona_server.transport.convert import timestamp


def schema(s: KnowledgeSchema) -> kpb.KnowledgeSchema:
    return kpb.KnowledgeSchema(
        name=s.name,
        json_schema=s.json_schema,
        created_at=timestamp(s.created_at),
        updated_at=timestamp(s.updated_at),
    )


def _field(f: KnowledgeField) -> kpb.KnowledgeField:
    return kpb.KnowledgeField(
        memory_ids=f.memory_ids,
        source_ids=f.source_ids,
        updated_at=timestamp(f.updated_at),
        history=[
            kpb.KnowledgeFieldChange(
                previous_value_json=json.dumps(h.previous_value, ensure_ascii=False),
                changed_at=timestamp(h.changed_at),
                memory_ids=h.memory_ids,
                changed_by_memory_ids=h.changed_by,
            )
            for h in f.history
        ],
    )


def knowledge(view: KnowledgeView) -> kpb.GetKnowledgeResponse:
    doc = view.document
    out = kpb.GetKnowledgeResponse(
        document_json=json.dumps(doc.value, ensure_ascii=False, sort_keys=True),
        fields={name: _field(f) for name, f in doc.fields.items()},
        pending_items=view.pending_items,
    )
    if doc.updated_at is not None:
        out.updated_at.CopyFrom(timestamp(doc.updated_at))
    return out
