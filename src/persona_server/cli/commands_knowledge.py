"""`persona knowledge put|list|delete|get`: the tenant's knowledge schemas and users' documents."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from persona.v1 import knowledge_pb2 as kpb
from persona_server.cli import output
from persona_server.cli.connect import client_options, open_client
from persona_server.cli.errors import UsageError


def register(commands: Any) -> None:
    tenant = client_options(user=False)
    per_user = client_options()
    group = commands.add_parser(
        "knowledge",
        help="knowledge schemas and the documents Persona keeps per user",
        description="Register JSON Schemas for your tenant; Persona keeps, per user, a document "
        "valid against each, updated by the LLM as items are ingested.",
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("put", parents=[tenant], help="register or replace a schema")
    p.add_argument("--name", required=True, metavar="NAME", help="^[a-z][a-z0-9_]{0,63}$")
    p.add_argument("--schema", required=True, metavar="FILE.json", help="JSON Schema (object)")
    p.set_defaults(handler=run_put)
    p = actions.add_parser("list", parents=[tenant], help="the tenant's schemas")
    p.set_defaults(handler=run_list)
    p = actions.add_parser("delete", parents=[tenant], help="delete a schema and its documents")
    p.add_argument("--name", required=True, metavar="NAME")
    p.set_defaults(handler=run_delete)
    p = actions.add_parser("get", parents=[per_user], help="a user's document of a schema")
    p.add_argument("--name", required=True, metavar="NAME")
    p.set_defaults(handler=run_get)


def _schema_json(s: kpb.KnowledgeSchema) -> dict[str, Any]:
    return {
        "name": s.name,
        "json_schema": json.loads(s.json_schema),
        "created_at": output.timestamp(s, "created_at"),
        "updated_at": output.timestamp(s, "updated_at"),
    }


def run_put(args: argparse.Namespace) -> int:
    try:
        # Sent as written: the server validates the schema and says what is wrong with it.
        schema = Path(args.schema).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"INVALID_ARGUMENT: --schema: {reason}: {args.schema}") from None
    with open_client(args) as client:
        response = client.put_knowledge_schema(args.name, schema)
    if args.json:
        out = {**_schema_json(response.knowledge_schema), "created": response.created}
        print(output.dumps(out))
    else:
        verb = "registered" if response.created else "replaced (or unchanged)"
        print(f"{response.knowledge_schema.name}: {verb}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    schemas: list[kpb.KnowledgeSchema] = []
    with open_client(args) as client:
        token = ""
        while True:
            page = client.list_knowledge_schemas(page_size=100, page_token=token)
            schemas += page.knowledge_schemas
            token = page.next_page_token
            if not token:
                break
    if args.json:
        print(output.dumps({"knowledge_schemas": [_schema_json(s) for s in schemas]}))
    else:
        for s in schemas:
            fields = ", ".join(json.loads(s.json_schema).get("properties", {}))
            print(f"{s.name}  ({fields})  updated {output.timestamp(s, 'updated_at')}")
        if not schemas:
            print("no knowledge schemas")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        response = client.delete_knowledge_schema(args.name)
    if args.json:
        print(output.dumps({"deleted_documents": response.deleted_documents}))
    else:
        print(f"{args.name}: deleted with {response.deleted_documents} user document(s)")
    return 0


def knowledge_json(response: kpb.GetKnowledgeResponse) -> dict[str, Any]:
    return {
        "document": json.loads(response.document_json),
        "fields": {
            name: {
                "memory_ids": list(f.memory_ids),
                "source_ids": list(f.source_ids),
                "updated_at": output.timestamp(f, "updated_at"),
                "history": [
                    {
                        "previous_value": json.loads(h.previous_value_json),
                        "changed_at": output.timestamp(h, "changed_at"),
                        "memory_ids": list(h.memory_ids),
                        "changed_by_memory_ids": list(h.changed_by_memory_ids),
                    }
                    for h in f.history
                ],
            }
            for name, f in sorted(response.fields.items())
        },
        "updated_at": output.timestamp(response, "updated_at"),
        "pending_items": response.pending_items,
    }


def run_get(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        response = client.get_knowledge(args.user, args.name)
    if args.json:
        print(output.dumps(knowledge_json(response)))
        return 0
    document = json.loads(response.document_json)
    for name, value in document.items():
        f = response.fields[name]
        sources = ", ".join(f.source_ids)
        changes = f" ({len(f.history)} earlier value(s))" if f.history else ""
        print(f"{name}: {json.dumps(value, ensure_ascii=False)}  from {sources}{changes}")
    if not document:
        print("(empty document)")
    if response.pending_items:
        print(f"{response.pending_items} item(s) not taken in yet")
    return 0
