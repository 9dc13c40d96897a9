"""The knowledge-schema RPCs through the SDK against a real (offline) server."""

from __future__ import annotations

import json

import pytest

from persona import (
    AsyncPersonaClient,
    FailedPreconditionError,
    InvalidArgumentError,
    Item,
    NotFoundError,
)

PROFILE = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "pets": {"type": "array"}},
}


async def test_put_list_delete(client: AsyncPersonaClient) -> None:
    first = await client.put_knowledge_schema("profile", PROFILE)
    assert first.created
    assert json.loads(first.knowledge_schema.json_schema) == PROFILE
    again = await client.put_knowledge_schema("profile", json.dumps(PROFILE))
    assert not again.created
    await client.put_knowledge_schema("alpha", {"type": "object", "properties": {"a": {}}})
    listed = await client.list_knowledge_schemas()
    assert [s.name for s in listed.knowledge_schemas] == ["alpha", "profile"]
    page = await client.list_knowledge_schemas(page_size=1)
    assert [s.name for s in page.knowledge_schemas] == ["alpha"]
    rest = await client.list_knowledge_schemas(page_size=1, page_token=page.next_page_token)
    assert [s.name for s in rest.knowledge_schemas] == ["profile"]
    assert rest.next_page_token == ""
    assert (await client.delete_knowledge_schema("alpha")).deleted_documents == 0
    with pytest.raises(NotFoundError) as err:
        await client.delete_knowledge_schema("alpha")
    assert err.value.reason == "KNOWLEDGE_SCHEMA_NOT_FOUND"


@pytest.mark.parametrize(
    ("name", "schema", "field"),
    [
        ("Bad-Name", PROFILE, "name"),
        ("", PROFILE, "name"),
        ("x" * 65, PROFILE, "name"),
        ("ok", '{"type": "object"', "json_schema"),
        ("ok", {"type": "string"}, "json_schema"),
        ("ok", {"type": "object"}, "json_schema"),
        ("ok", {"type": "object", "properties": {"a": {"$ref": "http://x/y"}}}, "json_schema"),
        ("ok", {"type": "object", "properties": {"a": {"type": 7}}}, "json_schema"),
    ],
)
async def test_bad_input_names_the_field_and_writes_nothing(
    client: AsyncPersonaClient, name: str, schema: object, field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        await client.put_knowledge_schema(name, schema)  # type: ignore[arg-type]
    assert [v.field for v in err.value.field_violations] == [field]
    assert list((await client.list_knowledge_schemas()).knowledge_schemas) == []


async def test_other_tenants_schemas_are_invisible(
    client: AsyncPersonaClient, client_b: AsyncPersonaClient
) -> None:
    await client.put_knowledge_schema("profile", PROFILE)
    assert list((await client_b.list_knowledge_schemas()).knowledge_schemas) == []
    with pytest.raises(NotFoundError):
        await client_b.delete_knowledge_schema("profile")
    with pytest.raises(NotFoundError):
        await client_b.get_knowledge("u1", "profile")
    assert len((await client.list_knowledge_schemas()).knowledge_schemas) == 1


async def test_get_knowledge_offline_says_how_to_configure_an_llm(
    client: AsyncPersonaClient,
) -> None:
    await client.put_knowledge_schema("profile", PROFILE)
    await client.ingest("u1", [Item("I live in Lisbon", source_id="a")])
    with pytest.raises(FailedPreconditionError) as err:
        await client.get_knowledge("u1", "profile")
    assert err.value.reason == "LLM_NOT_CONFIGURED"
    assert "PERSONA_LLM_MODEL" in err.value.message
    with pytest.raises(NotFoundError):
        await client.get_knowledge("u1", "unknown")
    with pytest.raises(InvalidArgumentError) as bad:
        await client.get_knowledge("", "Bad")
    assert {v.field for v in bad.value.field_violations} == {"user_id", "name"}
