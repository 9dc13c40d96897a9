"""The `persona` command end to end against a scripted in-process server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from persona.v1 import memory_service_pb2 as pb
from persona_server.cli.main import main
from tests.sdk.fake_service import FakeServer, memory, rich_status


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_recall_json(fake_server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    fake_server.service.default["Recall"] = pb.RecallResponse(
        results=[pb.RecallResult(memory=memory(), score=0.75)]
    )
    code, out, err = _run(
        capsys,
        "recall",
        "--target",
        fake_server.target,
        "--api-key",
        "k1",
        "--user",
        "u1",
        "--query",
        "where does she live?",
        "--k",
        "5",
        "--type",
        "episode",
        "fact",
        "--json",
    )
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "results": [
            {
                "id": "ep_1",
                "type": "episode",
                "text": "I moved to Lisbon",
                "score": 0.75,
                "strength": 0.0,
                "source_ids": ["msg-1"],
                "occurred_at": "2023-05-08T13:56:00Z",
            }
        ]
    }
    call = fake_server.service.calls_to("Recall")[0]
    assert call.metadata["x-api-key"] == "k1"
    assert call.request.max_results == 5 and len(call.request.filter.types) == 2


def test_recall_text(fake_server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    fake_server.service.default["Recall"] = pb.RecallResponse(
        results=[pb.RecallResult(memory=memory(), score=0.75)]
    )
    code, out, _ = _run(
        capsys, "recall", "--target", fake_server.target, "--user", "u1", "--query", "q"
    )
    assert code == 0
    assert "ep_1  episode  2023-05-08T13:56:00Z  score 0.7500" in out
    assert "I moved to Lisbon" in out


def test_server_error_is_one_status_line_plus_violations(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # --k 0 is not checked locally: the server is the authority and says why.
    fake_server.service.then(
        "Recall",
        rich_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_results must be between 1 and 100",
            violations=[("max_results", "must be between 1 and 100")],
        ),
    )
    code, out, err = _run(
        capsys,
        "recall",
        "--target",
        fake_server.target,
        "--user",
        "u1",
        "--query",
        "q",
        "--k",
        "0",
    )
    assert code == 1 and out == ""
    assert err == (
        "INVALID_ARGUMENT: max_results must be between 1 and 100\n"
        "  max_results: must be between 1 and 100\n"
    )
    assert fake_server.service.calls_to("Recall")[0].request.max_results == 0


def test_no_server_is_a_short_unavailable(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys, "get", "--target", "127.0.0.1:1", "--user", "u1", "--id", "ep_1", "--timeout", "3"
    )
    assert code == 1 and out == ""
    assert err.startswith("UNAVAILABLE: ")
    assert "Traceback" not in err
    assert "is a Persona server running at 127.0.0.1:1?" in err
    assert len(err.splitlines()) <= 3


def test_ingest_text_with_flags(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_server.service.default["Ingest"] = pb.IngestResponse(
        results=[
            pb.IngestResult(episode_id="ep_7", source_id="m1", outcome=pb.INGEST_OUTCOME_CREATED)
        ]
    )
    code, out, _ = _run(
        capsys,
        "ingest",
        "--target",
        fake_server.target,
        "--user",
        "u1",
        "--text",
        "I moved to Lisbon",
        "--source-id",
        "m1",
        "--occurred-at",
        "2023-05-08T13:56:00",
        "--speaker",
        "Ana",
        "--metadata",
        "channel=sms",
        "lang=en",
        "--json",
    )
    assert code == 0
    assert json.loads(out) == {"ids": ["ep_7"]}
    item = fake_server.service.calls_to("Ingest")[0].request.items[0]
    assert item.occurred_at.ToDatetime(tzinfo=UTC) == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert (item.source_id, item.speaker) == ("m1", "Ana")
    assert dict(item.metadata) == {"channel": "sms", "lang": "en"}


def test_ingest_bad_date_is_a_local_error(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys,
        "ingest",
        "--target",
        fake_server.target,
        "--user",
        "u1",
        "--text",
        "hi",
        "--occurred-at",
        "next thursday",
    )
    assert code == 2 and out == ""
    assert err.startswith("INVALID_ARGUMENT: occurred_at: 'next thursday' is not an ISO 8601")
    assert fake_server.service.calls_to("Ingest") == []


def test_ingest_far_future_date_reaches_the_server(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_server.service.then(
        "Ingest",
        rich_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[0].occurred_at: more than one day in the future",
            violations=[("items[0].occurred_at", "more than one day in the future")],
        ),
    )
    code, _, err = _run(
        capsys,
        "ingest",
        "--target",
        fake_server.target,
        "--user",
        "u1",
        "--text",
        "hi",
        "--occurred-at",
        "2999-01-01",
    )
    assert code == 1
    assert err.startswith("INVALID_ARGUMENT: items[0].occurred_at: more than one day")
    sent = fake_server.service.calls_to("Ingest")[0].request.items[0].occurred_at
    assert sent.ToDatetime().year == 2999


def test_ingest_file_with_a_bad_line_sends_nothing(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"text": "one", "source_id": "a"}\n'
        "\n"
        '{"source_id": "b"}\n'
        '{"text": "four", "occurred_at": "soon"}\n'
    )
    code, out, err = _run(
        capsys, "ingest", "--target", fake_server.target, "--user", "u1", "--file", str(path)
    )
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == "line 3: text is required"
    assert lines[1].startswith("line 4: occurred_at: 'soon' is not an ISO 8601")
    assert lines[2] == f"INVALID_ARGUMENT: 2 bad line(s) in {path}; nothing was ingested"
    assert fake_server.service.calls_to("Ingest") == []


def _ok_ingest(request: Any) -> pb.IngestResponse:
    return pb.IngestResponse(
        results=[
            pb.IngestResult(episode_id=f"ep_{i.source_id}", source_id=i.source_id)
            for i in request.items
        ]
    )


def test_ingest_file_in_batches(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        "".join(json.dumps({"text": f"t{i}", "source_id": f"s{i}"}) + "\n" for i in range(5))
    )
    service = fake_server.service
    original = service._answer

    def answer(method: str, request: Any, context: Any) -> Any:
        if method == "Ingest":
            original(method, request, context)  # records the call (and its default: None)
        return _ok_ingest(request) if method == "Ingest" else original(method, request, context)

    service.default["Ingest"] = pb.IngestResponse()
    service._answer = answer  # type: ignore[method-assign]
    code, out, err = _run(
        capsys,
        "ingest",
        "--target",
        fake_server.target,
        "--user",
        "u1",
        "--file",
        str(path),
        "--batch-size",
        "2",
        "--json",
    )
    assert (code, err) == (0, "")
    assert json.loads(out) == {"ids": [f"ep_s{i}" for i in range(5)]}
    assert [len(c.request.items) for c in service.calls_to("Ingest")] == [2, 2, 1]


def test_ingest_server_rejection_names_file_lines(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"text": "a", "source_id": "1"}\n'
        "\n"
        '{"text": "b", "source_id": "2"}\n'
        '{"text": ""}\n'
        '{"text": "c"}\n'
        '{"text": "d"}\n'
    )
    fake_server.service.then(
        "Ingest",
        pb.IngestResponse(results=[pb.IngestResult(episode_id="ep_1"), pb.IngestResult()]),
        rich_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[0].text: must not be empty",
            violations=[("items[0].text", "must not be empty"), ("items[7].text", "odd")],
        ),
    )
    code, _, err = _run(
        capsys,
        "ingest",
        "--target",
        fake_server.target,
        "--user",
        "u1",
        "--file",
        str(path),
        "--batch-size",
        "2",
    )
    assert code == 1
    assert err.splitlines() == [
        "INVALID_ARGUMENT: items[0].text: must not be empty",
        "  line 4 (items[0].text): must not be empty",
        "  items[7].text: odd",  # not an item of that batch: left as the server said it
        "  (the batch of lines 4-5 was rejected; the 2 item(s) before it were ingested; "
        "nothing after it was sent; re-running is safe for lines that have a source_id)",
    ]
    assert len(fake_server.service.calls_to("Ingest")) == 2


def test_ask_json(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "properties": {"city": {"type": ["string", "null"]}}}')
    fake_server.service.default["AskStructured"] = pb.AskStructuredResponse(
        answer_json='{"city": "Lisbon"}',
        citations=[pb.Citation(memory_id="ep_1")],
        answered=True,
    )
    code, out, _ = _run(
        capsys,
        "ask",
        "--target",
        fake_server.target,
        "--user",
        "u1",
        "--question",
        "Where does she live?",
        "--schema",
        str(schema),
        "--json",
    )
    assert code == 0
    assert json.loads(out) == {"answer": {"city": "Lisbon"}, "citations": ["ep_1"]}
    sent = fake_server.service.calls_to("AskStructured")[0].request.json_schema
    assert sent == schema.read_text()  # sent as written


def test_ask_llm_not_configured(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text("{}")
    fake_server.service.then(
        "AskStructured",
        rich_status(
            grpc.StatusCode.FAILED_PRECONDITION,
            "no LLM configured: set PERSONA_LLM_MODEL",
            reason="LLM_NOT_CONFIGURED",
        ),
    )
    code, _, err = _run(
        capsys,
        "ask",
        "--target",
        fake_server.target,
        "--user",
        "u1",
        "--question",
        "q",
        "--schema",
        str(schema),
    )
    assert code == 1
    assert err == "FAILED_PRECONDITION: no LLM configured: set PERSONA_LLM_MODEL\n"


def test_stream_json_lines_until_timeout(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_server.service.stream_events = [
        pb.StreamContextResponse(
            resume_token="t0",
            snapshot=pb.ContextSnapshot(results=[pb.RecallResult(memory=memory(), score=1.0)]),
        )
    ]
    code, out, _ = _run(
        capsys,
        "stream",
        "--target",
        fake_server.target,
        "--user",
        "u1",
        "--json",
        "--timeout",
        "0.5",
    )
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["kind"] == "snapshot" and events[0]["resume_token"] == "t0"
    assert events[0]["memories"][0]["id"] == "ep_1"
    assert {e["kind"] for e in events[1:]} == {"heartbeat"}
    assert fake_server.service.stream_cancelled.wait(5)


def test_stream_ctrl_c_exits_zero_without_traceback(fake_server: FakeServer) -> None:
    fake_server.service.stream_events = [pb.StreamContextResponse(resume_token="t0")]
    fake_server.service.heartbeat_interval_s = 0.1
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "persona_server.cli.main", "stream"),
            *("--target", fake_server.target, "--user", "u1", "--json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the stream is running
        assert json.loads(first)["resume_token"] == "t0"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert fake_server.service.stream_cancelled.wait(5)


def test_list_all_pages(fake_server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    fake_server.service.then(
        "ListMemories",
        pb.ListMemoriesResponse(memories=[memory("ep_1")], next_page_token="p2"),
        pb.ListMemoriesResponse(memories=[memory("ep_2")]),
    )
    code, out, _ = _run(
        capsys, "list", "--target", fake_server.target, "--user", "u1", "--all", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert [m["id"] for m in data["memories"]] == ["ep_1", "ep_2"]
    assert data["next_page_token"] == ""


def test_get_not_found(fake_server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    fake_server.service.then(
        "GetMemory", rich_status(grpc.StatusCode.NOT_FOUND, "no memory ep_9 for user u1")
    )
    code, _, err = _run(
        capsys, "get", "--target", fake_server.target, "--user", "u1", "--id", "ep_9"
    )
    assert (code, err) == (1, "NOT_FOUND: no memory ep_9 for user u1\n")


def test_delete_and_delete_user(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_server.service.default["DeleteMemory"] = pb.DeleteMemoryResponse(
        deleted_ids=["ep_1", "ps_2"]
    )
    fake_server.service.default["DeleteUser"] = pb.DeleteUserResponse(deleted_memories=4)
    base = ["--target", fake_server.target, "--user", "u1"]
    assert _run(capsys, "delete", *base, "--id", "ep_1", "--json")[:2] == (
        0,
        '{"deleted_ids": ["ep_1", "ps_2"]}\n',
    )
    _, out, _ = _run(capsys, "delete", *base, "--id", "ep_1")
    assert out == "deleted ep_1 and 1 memory derived only from it\n"
    assert _run(capsys, "delete-user", *base, "--yes", "--json")[:2] == (
        0,
        '{"user_id": "u1", "deleted_memories": 4}\n',
    )


def test_delete_user_in_a_script_needs_yes(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    code, _, err = _run(capsys, "delete-user", "--target", fake_server.target, "--user", "u1")
    assert code == 2 and "--yes" in err
    assert fake_server.service.calls_to("DeleteUser") == []


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["recall", "--query", "q"])  # --user missing
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["recall", "--user", "u1", "--query", "q", "--type", "episodes"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["ingest", "--user", "u1", "--text", "t", "--metadata", "novalue"])
    assert exited.value.code == 2
    capsys.readouterr()


def test_serve_builds_settings_with_flags_over_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import types

    seen: list[Any] = []
    fake_app = types.ModuleType("persona_server.app")
    fake_app.serve = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "persona_server.app", fake_app)
    monkeypatch.setenv("PERSONA_LISTEN", "0.0.0.0:6000")
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.chdir(tmp_path)  # no stray .env

    assert main(["serve", "--data-dir", str(tmp_path / "d")]) == 0
    assert seen[0].listen == "0.0.0.0:6000"  # env where no flag
    assert seen[0].data_dir == tmp_path / "d"  # the flag over the env

    code, _, err = _run(capsys, "serve", "--listen", "nonsense")
    assert code == 2 and err.startswith("INVALID_ARGUMENT: listen:")
