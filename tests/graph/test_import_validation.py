"""Bad imports write nothing: the CLI reports bad lines by number before sending anything, the
server checks the whole stream (and reports `nodes[i]` / `edges[j]`, which the CLI turns into
line numbers) before it writes anything, and ExportGraph / ImportGraph reject bad requests with
INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from persona import AsyncPersonaClient, InvalidArgumentError, PersonaError
from persona.v1 import graph_pb2 as gpb
from persona.v1 import memory_service_pb2_grpc
from persona_server.app import App, start
from persona_server.cli.main import main
from persona_server.domain.models import UserRef
from tests.graph.conftest import StartServer
from tests.graph.handmade import EXPECTED
from tests.graph.servers import ThreadServer
from tests.transport.transport_settings import KEY_A, make_settings

HEADER = {"record": "header", "format": "persona.graph", "version": 1, "user_id": "u1"}


def write(path: Path, records: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def import_file(
    capsys: pytest.CaptureFixture[str], server: ThreadServer, path: Path
) -> tuple[int, str, str]:
    code = main(
        [
            "import",
            "--user",
            "u1",
            "--file",
            str(path),
            "--target",
            server.target,
            "--api-key",
            KEY_A,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def nothing_written(server: ThreadServer) -> bool:
    user = UserRef(tenant="tenant-a", user_id="u1")
    return server.run(server.app.store.changes.latest_seq(user)) == 0 and not server.run(
        server.app.store.users.exists(user)
    )


def records() -> list[dict[str, Any]]:
    return copy.deepcopy([HEADER, *EXPECTED])


def line_of(recs: list[dict[str, Any]], **match: Any) -> int:
    """1-based line number of the first record with these fields."""
    return next(
        i for i, r in enumerate(recs, start=1) if all(r.get(k) == v for k, v in match.items())
    )


def test_lines_that_do_not_parse_are_reported_by_number_and_nothing_is_sent(
    start_server: StartServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = start_server()
    recs: list[Any] = records()
    recs[2] = "{not json"
    recs[4]["type"] = "memory"  # not a type
    recs[6]["recorded_at"] = "yesterday"
    del recs[20]["to"]
    code, _, err = import_file(capsys, server, write(tmp_path / "bad.jsonl", recs))
    assert code == 2
    assert "line 3: not valid JSON" in err
    assert "line 5: type: 'memory' is not one of" in err
    assert "line 7: recorded_at: 'yesterday' does not match" in err
    assert "line 21: the line: 'to' is a required property" in err
    assert "4 bad line(s)" in err and "nothing was imported" in err
    assert nothing_written(server)


def test_a_file_must_start_with_a_known_header(
    start_server: StartServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = start_server()
    code, _, err = import_file(capsys, server, write(tmp_path / "a.jsonl", EXPECTED))
    assert code == 2 and "line 1: the first line must be the header" in err
    newer = [{**HEADER, "version": 2}, *EXPECTED]
    code, _, err = import_file(capsys, server, write(tmp_path / "b.jsonl", newer))
    assert code == 2 and "line 1: not a persona.graph file of version 1" in err
    assert nothing_written(server)


def _edge(
    recs: list[dict[str, Any]], kind: str, source: str, target: str | None = None
) -> dict[str, Any]:
    return next(
        r
        for r in recs
        if r.get("record") == "edge"
        and r["type"] == kind
        and r["from"] == source
        and (target is None or r["to"] == target)
    )


def _dangling(recs: list[dict[str, Any]]) -> dict[str, Any]:
    edge = _edge(recs, "MENTIONS", "ep_02", "en_sam")
    edge["to"] = "en_nobody"
    return edge


def _chain(recs: list[dict[str, Any]]) -> dict[str, Any]:
    edge = _edge(recs, "NEXT", "ep_01")
    edge["to"] = "ep_03"
    return edge


def _no_provenance(recs: list[dict[str, Any]]) -> dict[str, Any]:
    goal = recs[line_of(recs, id="go_marathon") - 1]
    recs.remove(_edge(recs, "DERIVED_FROM", "go_marathon"))
    return goal


def _subject(recs: list[dict[str, Any]]) -> dict[str, Any]:
    edge = _edge(recs, "SUBJECT", "fa_sister")
    edge["to"] = "en_sam"
    return edge


def _prefix(recs: list[dict[str, Any]]) -> dict[str, Any]:
    node = recs[line_of(recs, id="ps_window") - 1]
    node["id"] = "go_window"
    for r in recs:
        if r.get("from") == "ps_window":
            r["from"] = "go_window"
    return node


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (_dangling, "to_id", "names 'en_nobody', which is no node of the stream"),
        (_chain, "to_id", "breaks the chain: the next episode in event time is 'ep_02'"),
        (_no_provenance, "", "go_marathon is a derived memory without a DERIVED_FROM edge"),
        (_subject, "to_id", "must be the fact's subject_id ('en_ana')"),
        (_prefix, "id", "must start with the prefix of a psyche"),
    ],
    ids=["dangling-edge", "chain", "no-provenance", "subject", "prefix"],
)
def test_graph_errors_name_the_line_and_nothing_is_written(
    start_server: StartServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    edit: Any,
    field: str,
    expected: str,
) -> None:
    server = start_server()
    recs = records()
    bad = edit(recs)
    code, _, err = import_file(capsys, server, write(tmp_path / "g.jsonl", recs))
    assert code == 1, err
    assert "INVALID_ARGUMENT" in err and "nothing was imported" in err
    # The server names nodes[i] / edges[j] of the stream; the CLI turns that into the line.
    kind = "nodes" if bad["record"] == "node" else "edges"
    index = [r for r in recs if r["record"] == bad["record"]].index(bad)
    path = f"{kind}[{index}]" + (f".{field}" if field else "")
    assert f"line {recs.index(bad) + 1} ({path}): {expected}" in err, err
    assert nothing_written(server)


def test_a_conflicting_memory_is_already_exists_and_nothing_is_written(
    start_server: StartServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = start_server()
    recs = records()
    path = write(tmp_path / "u1.jsonl", recs)
    assert import_file(capsys, server, path)[0] == 0
    user = UserRef(tenant="tenant-a", user_id="u1")
    seq = server.run(server.app.store.changes.latest_seq(user))
    recs[line_of(recs, id="fa_age") - 1]["text"] = "Ana is 35"
    code, _, err = import_file(capsys, server, write(tmp_path / "changed.jsonl", recs))
    assert code == 1
    assert "ALREADY_EXISTS" in err and "nodes[10]: fa_age exists with another type or text" in err
    assert f"conflicting lines: {line_of(recs, id='fa_age')}" in err
    # Another episode with a source id the user already has.
    other = {**EXPECTED[2], "id": "ep_99", "episode": {**EXPECTED[2]["episode"], "source_id": "m1"}}
    code, _, err = import_file(capsys, server, write(tmp_path / "other.jsonl", [HEADER, other]))
    assert code == 1
    assert "source id 'm1' belongs to episode ep_01" in err and "conflicting lines: 2" in err
    assert server.run(server.app.store.changes.latest_seq(user)) == seq


# --- the RPCs themselves ----------------------------------------------------------------------


@pytest.fixture
async def app(tmp_path: Path, embedder: Any) -> AsyncIterator[App]:
    running = await start(make_settings(tmp_path / "data"), embedder=embedder)
    try:
        yield running
    finally:
        await running.stop(grace_s=0)


async def _violations(call: Any) -> list[str]:
    with pytest.raises(InvalidArgumentError) as info:
        await call
    return [v.field for v in info.value.field_violations]


async def test_export_graph_rejects_bad_requests(app: App) -> None:
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:

        async def drain(user_id: str, chunk_size: int = 0) -> None:
            async for _ in client.export_graph(user_id, chunk_size=chunk_size):
                pass

        assert await _violations(drain("")) == ["user_id"]
        assert await _violations(drain("u1", chunk_size=1001)) == ["chunk_size"]
        assert await _violations(drain("x" * 129, chunk_size=-1)) == ["user_id", "chunk_size"]


def _node(**changes: Any) -> Any:
    from persona_server.cli.graph_file import node_message

    return node_message({**EXPECTED[0], **changes})


async def test_import_graph_rejects_bad_nodes_and_edges_and_writes_nothing(app: App) -> None:
    user = UserRef(tenant="tenant-a", user_id="u1")
    good = _node()
    with_provenance = _node()
    with_provenance.provenance.episode_ids.append("ep_01")
    no_detail = _node()
    no_detail.ClearField("episode")
    no_recorded = _node(id="ep_09")
    no_recorded.ClearField("recorded_at")
    bad_state = _node(id="ep_10")
    bad_state.episode.extraction.state = 0
    cases: list[tuple[list[Any], list[str]]] = [
        ([with_provenance], ["nodes[0].provenance"]),
        ([no_detail], ["nodes[0].episode"]),
        ([good, no_recorded], ["nodes[1].recorded_at"]),
        ([bad_state], ["nodes[0].episode.extraction.state"]),
        ([_node(id="ps_01")], ["nodes[0].id"]),
        (
            [good, gpb.GraphEdge(type=0, from_id="ep_01", to_id="ep_01")],
            ["edges[0].type", "edges[0].to_id"],
        ),
        ([good, _node()], ["nodes[1].id"]),  # a repeated id
    ]
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        for records_, fields in cases:
            assert await _violations(client.import_graph("u1", records_)) == fields
        assert await _violations(client.import_graph("", [good])) == ["user_id"]
        # Later messages may not switch users; nodes are counted across messages.
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
        stub = memory_service_pb2_grpc.MemoryServiceStub(channel)

        async def requests() -> AsyncIterator[gpb.ImportGraphRequest]:
            yield gpb.ImportGraphRequest(
                user_id="u1",
                nodes=[
                    _node(id=f"ep_a{i}", episode={**EXPECTED[0]["episode"], "source_id": f"s{i}"})
                    for i in range(500)
                ],
            )
            yield gpb.ImportGraphRequest(user_id="u2", nodes=[_node(id="ps_x")] * 100)

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ImportGraph(requests(), metadata=(("x-api-key", KEY_A),))
        await channel.close()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "user_id" in (info.value.details() or "") and "nodes[500].id" in (
            info.value.details() or ""
        )
    assert await app.store.changes.latest_seq(user) == 0
    assert not await app.store.users.exists(user)


async def test_an_empty_import_is_fine_and_an_import_needs_a_user(app: App) -> None:
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        response = await client.import_graph("u1", [])
        assert (response.nodes_created, response.nodes_unchanged, response.edges) == (0, 0, 0)
        with pytest.raises(PersonaError):
            await client.import_graph("u1", [object()])  # type: ignore[list-item]
