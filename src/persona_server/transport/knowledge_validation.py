"""Validation of the knowledge RPCs: protos in, checked values out, or INVALID_ARGUMENT."""

from __future__ import annotations

from persona.v1 import knowledge_pb2 as kpb
from persona_server.domain.knowledge import NAME_PATTERN, NAME_RULE
from persona_server.domain.models import UserRef
from persona_server.services import json_schemas
from persona_server.services.knowledge import PutSchema, document_fields
from persona_server.transport.validation import Violations, check_range, user_ref

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50


def check_name(v: Violations, name: str) -> None:
    if not name:
        v.add("name", "name is required")
    elif not NAME_PATTERN.fullmatch(name):
        v.add("name", f"name {NAME_RULE}, got {name[:80]!r}")


def put_schema(tenant: str, req: kpb.PutKnowledgeSchemaRequest) -> PutSchema:
    v = Violations()
    check_name(v, req.name)
    try:
        document_fields(json_schemas.parse(req.json_schema))
    except json_schemas.SchemaProblem as problem:
        v.add("json_schema", f"json_schema {problem}")
    v.raise_if_any()
    return PutSchema(tenant=tenant, name=req.name, json_schema=req.json_schema)


def list_schemas(req: kpb.ListKnowledgeSchemasRequest) -> tuple[str, int]:
    """(the name to list after, page size)."""
    v = Violations()
    check_range(v, "page_size", req.page_size, 0, MAX_PAGE_SIZE)
    # The token is the last name of the previous page: anything else is not a token we issued.
    if req.page_token and not NAME_PATTERN.fullmatch(req.page_token):
        v.add("page_token", "page_token is not a token this server issued")
    v.raise_if_any()
    return req.page_token, req.page_size or DEFAULT_PAGE_SIZE


def schema_name(req: kpb.DeleteKnowledgeSchemaRequest) -> str:
    v = Violations()
    check_name(v, req.name)
    v.raise_if_any()
    return req.name


def get_knowledge(tenant: str, req: kpb.GetKnowledgeRequest) -> tuple[UserRef, str]:
    v = Violations()
    user = user_ref(tenant, v, req.user_id)
    check_name(v, req.name)
    v.raise_if_any()
    return user, req.name
