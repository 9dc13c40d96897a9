"""`persona export` / `persona import` (ExportGraph / ImportGraph) end to end: a hand-made graph
exported exactly, on both stores; SQLite -> file -> Neo4j -> file gives the same file; a second
import changes nothing; imports are change-logged; tenants stay apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from persona import Item, PersonaClient
from persona_server.cli.graph_file import schema
from persona_server.cli.main import main
from persona_server.domain.models import ChangeKind, UserRef
from tests.graph.conftest import StartServer
from tests.graph.handmade import EXPECTED, write_handmade
from tests.graph.servers import ThreadServer
from tests.transport.transport_settings import KEY_A, KEY_B

STORES = ["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)]
HEADER = {"record": "header", "format": "persona.graph", "version": 1, "user_id": "u1"}


def cli(
    capsys: pytest.CaptureFixture[str], server: ThreadServer, *argv: str, key: str = KEY_A
) -> tuple[int, str, str]:
    code = main([*argv, "--target", server.target, "--api-key", key])
    out, err = capsys.readouterr()
    return code, out, err


def handmade(server: ThreadServer, user_id: str = "u1", tenant: str = "tenant-a") -> UserRef:
    user = UserRef(tenant=tenant, user_id=user_id)
    server.run(write_handmade(server.app.store, user, server.app.embedder.dimension))
    return user


def export_file(
    capsys: pytest.CaptureFixture[str],
    server: ThreadServer,
    path: Path,
    user: str = "u1",
    key: str = KEY_A,
) -> list[dict[str, Any]]:
    code, _, err = cli(capsys, server, "export", "--user", user, "--out", str(path), key=key)
    assert code == 0, err
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("store", STORES)
def test_export_of_a_hand_made_graph_is_exact(
    start_server: StartServer, store: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = start_server(store)
    handmade(server)
    code, out, err = cli(capsys, server, "export", "--user", "u1")
    assert code == 0, err
    lines = out.splitlines()
    assert [json.loads(line) for line in lines] == [HEADER, *EXPECTED]
    # Compact JSON, one object per line, non-ASCII kept as is.
    assert lines[0] == '{"record":"header","format":"persona.graph","version":1,"user_id":"u1"}'
    assert lines[1].startswith('{"record":"node","id":"ep_01","type":"episode","text":"I moved')
    # The documented schema accepts every line written.
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    for line in lines:
        validator.validate(json.loads(line))


@pytest.mark.neo4j
def test_sqlite_to_file_to_neo4j_to_file_gives_the_same_file(
    start_server: StartServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sqlite = start_server("sqlite")
    handmade(sqlite)
    # Plus what the offline extractor makes of real text: entities, facts, mentions, a chain.
    with PersonaClient(sqlite.target, api_key=KEY_A) as client:
        client.ingest(
            "u1",
            [
                Item(
                    "Ana moved to Madrid with her partner Luis",
                    source_id="r1",
                    occurred_at="2024-04-02T12:00:00Z",
                    speaker="Sam",
                ),
                Item(
                    "I started learning Portuguese at the Lisbon library",
                    source_id="r2",
                    occurred_at="2024-03-03T08:00:00Z",
                    speaker="Sam",
                ),
                Item(
                    "I want to visit Ana in Madrid in May",
                    source_id="r3",
                    occurred_at="2024-04-10T21:00:00Z",
                    speaker="Sam",
                ),
            ],
        )
    first = tmp_path / "from-sqlite.jsonl"
    exported = export_file(capsys, sqlite, first)
    assert len(exported) > len(EXPECTED) + 1 + 3

    neo4j = start_server("neo4j")
    code, out, err = cli(capsys, neo4j, "import", "--user", "u1", "--file", str(first))
    assert code == 0, err
    nodes = sum(1 for r in exported if r["record"] == "node")
    assert f"imported {nodes} memories into u1 (0 already there" in out

    second = tmp_path / "from-neo4j.jsonl"
    export_file(capsys, neo4j, second)
    assert second.read_bytes() == first.read_bytes()


@pytest.mark.parametrize("store", STORES)
def test_a_second_import_changes_nothing_and_imports_are_change_logged(
    start_server: StartServer, store: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = start_server(store)
    path = tmp_path / "u1.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [HEADER, *EXPECTED]) + "\n", encoding="utf-8")
    target = UserRef(tenant="tenant-a", user_id="copy")

    code, out, err = cli(capsys, server, "import", "--user", "copy", "--file", str(path), "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "nodes_created": 13,
        "nodes_unchanged": 0,
        "edges": len(EXPECTED) - 13,
    }
    changes = server.run(server.app.store.changes.since(target, 0, 1000))
    # Every imported memory is an ADDED change (streams see it), episodes first.
    assert [c.kind for c in changes] == [ChangeKind.ADDED] * 13
    assert {c.memory_id for c in changes} == {r["id"] for r in EXPECTED if r["record"] == "node"}
    seq = server.run(server.app.store.changes.latest_seq(target))

    code, out, err = cli(capsys, server, "import", "--user", "copy", "--file", str(path), "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "nodes_created": 0,
        "nodes_unchanged": 13,
        "edges": len(EXPECTED) - 13,
    }
    assert server.run(server.app.store.changes.latest_seq(target)) == seq

    again = export_file(capsys, server, tmp_path / "copy.jsonl", user="copy")
    assert again == [{**HEADER, "user_id": "copy"}, *EXPECTED]
    # The imported graph works: recall finds the imported facts and provenance.
    with PersonaClient(server.target, api_key=KEY_A) as client:
        got = client.get_memory("copy", "ps_window").memory
        assert list(got.provenance.source_ids) == ["m1", "m2"]
        # Said once in 2024, the facts are dormant by now (domain.strength): asked for.
        hits = client.recall(
            "copy", "where does Sam live", types=["fact"], max_results=5, include_dormant=True
        )
        assert "fa_lives_lisbon" in [r.memory.id for r in hits.results]
        assert "fa_lived_porto" not in [r.memory.id for r in hits.results]  # history only


def test_export_and_import_are_tenant_scoped(
    start_server: StartServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = start_server("sqlite")
    handmade(server)
    own = export_file(capsys, server, tmp_path / "a.jsonl")
    # Tenant B's u1 is another, empty user: its export holds nothing of tenant A's.
    theirs = export_file(capsys, server, tmp_path / "b.jsonl", key=KEY_B)
    assert theirs == [HEADER]
    # B imports A's file into its own u1: A's user is untouched, B gets its own copy.
    code, _, err = cli(
        capsys, server, "import", "--user", "u1", "--file", str(tmp_path / "a.jsonl"), key=KEY_B
    )
    assert code == 0, err
    assert export_file(capsys, server, tmp_path / "a2.jsonl") == own
    assert export_file(capsys, server, tmp_path / "b2.jsonl", key=KEY_B) == own
    a = server.run(server.app.store.changes.latest_seq(UserRef(tenant="tenant-a", user_id="u1")))
    b = server.run(server.app.store.changes.latest_seq(UserRef(tenant="tenant-b", user_id="u1")))
    assert a > 0 and b == 13
    # Deleting B's copy leaves A's graph whole.
    with PersonaClient(server.target, api_key=KEY_B) as client:
        assert client.delete_user("u1").deleted_memories == 13
    assert export_file(capsys, server, tmp_path / "a3.jsonl") == own
