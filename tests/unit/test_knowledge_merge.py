"""How a model's updates merge into a knowledge document (pure: no store, no model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from persona_server.domain.knowledge import FIELD_PROVENANCE_LIMIT, KnowledgeDocument
from persona_server.domain.models import Episode
from persona_server.services.knowledge_updater import merge

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SCHEMA = {"type": "object", "properties": {"city": {}, "pets": {}}}


def ep(n: int) -> Episode:
    return Episode(id=f"ep_{n}", text=f"item {n}", source_id=f"s{n}", seq=n, recorded_at=T0)


def test_set_confirm_change_and_ignore() -> None:
    doc = KnowledgeDocument("p", {})
    doc = merge(doc, SCHEMA, {"city": "Lyon", "unknown": 1}, ep(1), T0)
    assert doc.value == {"city": "Lyon"} and doc.cursor == 1 and doc.updated_at == T0
    later = T0 + timedelta(hours=1)
    doc = merge(doc, SCHEMA, {"city": "Lyon", "pets": None}, ep(2), later)
    assert doc.fields["city"].memory_ids == ["ep_1", "ep_2"]
    assert doc.updated_at == T0  # a confirmation changes no value
    doc = merge(doc, SCHEMA, {"city": "Paris"}, ep(3), later)
    city = doc.fields["city"]
    assert (city.value, city.memory_ids, city.source_ids) == ("Paris", ["ep_3"], ["s3"])
    (change,) = city.history
    assert (change.previous_value, change.memory_ids, change.changed_by) == (
        "Lyon",
        ["ep_1", "ep_2"],
        ["ep_3"],
    )
    assert doc.updated_at == later and doc.cursor == 3


def test_fields_gone_from_the_schema_are_dropped() -> None:
    doc = merge(KnowledgeDocument("p", {}), SCHEMA, {"city": "Lyon", "pets": ["Tom"]}, ep(1), T0)
    doc = merge(doc, {"properties": {"city": {}}}, {}, ep(2), T0)
    assert doc.value == {"city": "Lyon"}


def test_provenance_is_bounded() -> None:
    doc = KnowledgeDocument("p", {})
    for n in range(1, FIELD_PROVENANCE_LIMIT + 10):
        doc = merge(doc, SCHEMA, {"city": "Lyon"}, ep(n), T0)
    assert len(doc.fields["city"].memory_ids) == FIELD_PROVENANCE_LIMIT
