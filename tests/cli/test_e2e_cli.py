"""The `persona` command against the real server: in-process for client commands, and
`persona serve` itself as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import persona
from persona_server.adapters.embedders.local_onnx import MODEL_ID
from persona_server.cli.main import main

KEY = "e2e-key"  # tests/sdk/real_server.py's API key


def _run(capsys: pytest.CaptureFixture[str], server: Any, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--target", server.target, "--api-key", KEY])
    out, err = capsys.readouterr()
    return code, out, err


def _eventually(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_profile_json_and_text(real_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for n, text in enumerate(["I love hiking.", "I moved to Lisbon.", "I want to learn Greek."]):
        code, _, err = _run(
            capsys,
            real_server,
            "ingest",
            "--user",
            "cli-profile",
            "--text",
            text,
            "--source-id",
            f"p{n}",
            "--occurred-at",
            now,
        )
        assert (code, err) == (0, "")
    code, out, err = _run(capsys, real_server, "profile", "--user", "cli-profile", "--json")
    assert (code, err) == (0, "")
    profile = json.loads(out)
    assert [p["text"] for p in profile["psyche"]] and "hik" in profile["psyche"][0]["text"]
    assert 0 < profile["psyche"][0]["strength"] <= 1
    assert profile["goals"][0]["status"] == "active"
    lisbon = next(e for e in profile["entities"] if e["name"] == "Lisbon")
    assert lisbon["relation"] == "moved_to"
    assert profile["counts"]["episodes"] == 3
    assert "Lisbon" in profile["context_block"]
    code, out, err = _run(capsys, real_server, "profile", "--user", "cli-profile")
    assert (code, err) == (0, "")
    assert out.strip() == profile["context_block"]
    code, out, err = _run(
        capsys, real_server, "profile", "--user", "cli-profile", "--max-items", "0"
    )
    assert code == 0
    code, out, err = _run(
        capsys, real_server, "profile", "--user", "cli-profile", "--max-items", "500"
    )
    assert code == 1 and "max_items" in err


def test_recall_include_dormant(real_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """An old preference, faded once the user has spoken since, is hidden from `recall` and
    shown with --include-dormant."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    items = [("I love sailing.", "2019-03-01T10:00:00Z"), ("We met the plumber.", now)]
    for n, (text, at) in enumerate(items):
        code, _, err = _run(
            capsys,
            real_server,
            "ingest",
            "--user",
            "cli-dormant",
            "--text",
            text,
            "--source-id",
            f"d{n}",
            "--occurred-at",
            at,
        )
        assert (code, err) == (0, "")
    recall = ["recall", "--user", "cli-dormant", "--query", "sailing", "--type", "psyche"]
    code, out, err = _run(capsys, real_server, *recall, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["results"] == []
    code, out, err = _run(capsys, real_server, *recall, "--json", "--include-dormant")
    assert (code, err) == (0, "")
    (result,) = json.loads(out)["results"]
    assert "sailing" in result["text"] and result["strength"] < 0.05


def test_ingest_file_then_recall_json(
    real_server: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    items = tmp_path / "chat.jsonl"
    items.write_text(
        '{"text": "Caroline: I went to a LGBTQ support group yesterday", "source_id": "D1:3",'
        ' "occurred_at": "2023-05-08T13:56:00", "speaker": "Caroline"}\n'
        "\n"
        '{"text": "Melanie: I painted a sunrise last week", "source_id": "D1:4",'
        ' "occurred_at": "2023-05-08T13:57:00Z", "metadata": {"session": "1"}}\n'
    )
    code, out, err = _run(
        capsys, real_server, "ingest", "--user", "cli-u1", "--file", str(items), "--json"
    )
    assert (code, err) == (0, "")
    ids = json.loads(out)["ids"]
    assert len(ids) == 2 and all(i.startswith("ep_") for i in ids)

    code, out, err = _run(
        capsys, real_server, "recall", "--user", "cli-u1", "--query", "support group", "--json"
    )
    assert (code, err) == (0, "")
    results = json.loads(out)["results"]
    keys = ["id", "type", "text", "score", "strength", "source_ids", "occurred_at"]
    # "joined" only on a passage: the memories Recall returns with the one that leads it.
    assert all(list(r) in (keys, [*keys, "joined"]) for r in results)
    hit = next(r for r in results if r["source_ids"] == ["D1:3"])
    assert hit["type"] == "episode"
    assert hit["occurred_at"] == "2023-05-08T13:56:00Z"
    assert isinstance(hit["score"], float)

    code, out, _ = _run(
        capsys,
        real_server,
        "recall",
        "--user",
        "cli-u1",
        "--query",
        "painting",
        "--json",
        "--explain",
    )
    assert code == 0
    assert all("channels" in r for r in json.loads(out)["results"])


def test_server_validation_comes_back_as_status_lines(
    real_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, real_server, "recall", "--user", "cli-u1", "--query", "q", "--k", "0"
    )
    assert code == 1 and out == ""
    first, second = err.splitlines()[:2]
    assert first.startswith("INVALID_ARGUMENT: max_results must be between 1 and 100")
    assert second.startswith("  max_results: ")

    # A far-future date parses locally, so it goes to the server, which refuses it.
    code, _, err = _run(
        capsys,
        real_server,
        "ingest",
        "--user",
        "cli-u1",
        "--text",
        "from the future",
        "--occurred-at",
        "2999-01-01",
    )
    assert code == 1
    assert err.startswith("INVALID_ARGUMENT: items[0].occurred_at")


def test_ask_without_llm(
    real_server: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object"}')
    code, _, err = _run(
        capsys,
        real_server,
        "ask",
        "--user",
        "cli-u1",
        "--question",
        "what did Melanie paint?",
        "--schema",
        str(schema),
    )
    assert code == 1
    assert err.startswith("FAILED_PRECONDITION: AskStructured needs an LLM")


def test_manage_commands(real_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, real_server, "ingest", "--user", "cli-u2", "--text", "hello", "--json"
    )
    (memory_id,) = json.loads(out)["ids"]
    code, out, _ = _run(capsys, real_server, "get", "--user", "cli-u2", "--id", memory_id, "--json")
    assert code == 0 and json.loads(out)["memory"]["text"] == "hello"
    code, out, _ = _run(capsys, real_server, "list", "--user", "cli-u2", "--all", "--json")
    assert memory_id in [m["id"] for m in json.loads(out)["memories"]]
    code, out, _ = _run(capsys, real_server, "delete", "--user", "cli-u2", "--id", memory_id)
    assert code == 0 and out.startswith(f"deleted {memory_id}")
    code, _, err = _run(capsys, real_server, "get", "--user", "cli-u2", "--id", memory_id)
    assert code == 1 and err.startswith("NOT_FOUND: ")
    code, out, _ = _run(capsys, real_server, "delete-user", "--user", "cli-u2", "--yes", "--json")
    assert code == 0 and json.loads(out)["user_id"] == "cli-u2"


def test_stream_until_ctrl_c(real_server: Any) -> None:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "persona_server.cli.main", "stream", "--json"),
            *("--target", real_server.target, "--api-key", KEY, "--user", "cli-u1"),
            *("--heartbeat", "1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["kind"] == "snapshot" and first["resume_token"]
        assert _eventually(lambda: real_server.stream_subscribers() >= 1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert _eventually(lambda: real_server.stream_subscribers() == 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_persona_serve_runs_until_sigterm(tmp_path: Path) -> None:
    target = f"127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "persona_server.cli.main", "serve"),
            *("--listen", target, "--data-dir", str(tmp_path / "data")),
        ],
        cwd=tmp_path,  # no stray .env
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with persona.PersonaClient(target, retry=persona.NO_RETRY) as client:

            def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"persona serve exited: {process.communicate()[1]}")
                try:
                    client.recall("serve-user", "anything", timeout=2)
                except persona.UnavailableError:
                    return False
                return True

            assert _eventually(ready, timeout=90)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    # The default server runs the local model's fused graph, under the packaged model id.
    ready = [entry for entry in map(_json_or_none, err.splitlines()) if entry is not None]
    ready = [entry for entry in ready if entry.get("message") == "persona ready"]
    assert len(ready) == 1, err
    assert ready[0]["embedding_graph"] == "fused"
    assert ready[0]["embedding_model"] == MODEL_ID


def _json_or_none(line: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
