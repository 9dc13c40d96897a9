"""`persona knowledge put|list|delete|get` against the real (offline) server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from persona.v1 import knowledge_pb2 as kpb
from persona_server.cli.commands_knowledge import knowledge_json
from persona_server.cli.main import main

KEY = "e2e-key"  # tests/sdk/real_server.py's API key


def _run(capsys: pytest.CaptureFixture[str], server: Any, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--target", server.target, "--api-key", KEY])
    out, err = capsys.readouterr()
    return code, out, err


def test_knowledge_commands(
    real_server: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    schema = tmp_path / "profile.json"
    schema.write_text('{"type": "object", "properties": {"city": {"type": "string"}}}')
    code, out, _ = _run(
        capsys, real_server, "knowledge", "put", "--name", "cli_profile", "--schema", str(schema)
    )
    assert (code, out) == (0, "cli_profile: registered\n")
    code, out, _ = _run(capsys, real_server, "knowledge", "list", "--json")
    listed = {s["name"]: s for s in json.loads(out)["knowledge_schemas"]}
    assert listed["cli_profile"]["json_schema"]["properties"] == {"city": {"type": "string"}}
    code, out, _ = _run(capsys, real_server, "knowledge", "list")
    assert "cli_profile  (city)" in out
    code, _, err = _run(
        capsys, real_server, "knowledge", "get", "--user", "cli-k", "--name", "cli_profile"
    )
    assert code == 1 and err.startswith("FAILED_PRECONDITION: GetKnowledge needs an LLM")
    code, out, _ = _run(capsys, real_server, "knowledge", "delete", "--name", "cli_profile")
    assert code == 0 and out.startswith("cli_profile: deleted")
    code, _, err = _run(capsys, real_server, "knowledge", "delete", "--name", "cli_profile")
    assert code == 1 and err.startswith("NOT_FOUND: ")


def test_bad_schema_is_refused_naming_the_field(
    real_server: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "string"}')
    code, _, err = _run(
        capsys, real_server, "knowledge", "put", "--name", "cli_bad", "--schema", str(schema)
    )
    assert code == 1 and "json_schema" in err


def test_knowledge_json_shows_fields_provenance_and_history() -> None:
    response = kpb.GetKnowledgeResponse(
        document_json='{"city": "Paris"}',
        fields={
            "city": kpb.KnowledgeField(
                memory_ids=["ep_2"],
                source_ids=["s2"],
                history=[
                    kpb.KnowledgeFieldChange(
                        previous_value_json='"Lyon"',
                        memory_ids=["ep_1"],
                        changed_by_memory_ids=["ep_2"],
                    )
                ],
            )
        },
        pending_items=1,
    )
    out = knowledge_json(response)
    assert out["document"] == {"city": "Paris"}
    assert out["fields"]["city"]["history"][0]["previous_value"] == "Lyon"
    assert out["pending_items"] == 1
