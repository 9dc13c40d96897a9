"""The Go and TypeScript SDKs against the real server: both quickstarts, and the same small suite
in each language (clients/go/e2e, clients/typescript/e2e, and its Python half here): the same
calls give the same answers and the same errors in every SDK.

These run in `make test` on every machine (its set-up installs Go's plugins and the npm
packages); a missing `go` or `npm` fails them rather than skipping them.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persona

ROOT = Path(__file__).resolve().parents[2]
GO_SDK = ROOT / "clients" / "go"
TS_SDK = ROOT / "clients" / "typescript"
KEY = "e2e-key"  # tests/sdk/real_server.py's API key
# A cold Go build cache compiles grpc-go first (about a minute on two cores).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.sdk.real_server import running

    with running(tmp_path_factory.mktemp("persona-sdk-e2e")) as server:
        yield server


def _run(server: Any, cwd: Path, *argv: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PERSONA_TARGET": server.target,
        "PERSONA_API_KEY": key,
        "npm_config_update_notifier": "false",
    }
    env.pop("PERSONA_TLS", None)
    done = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=540, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _user_of(stdout: str) -> str:
    match = re.search(r"^user: (\S+)$", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)


def _check_quickstart(server: Any, stdout: str, update_line: str) -> None:
    assert re.search(r"^ingested: msg-1 ep_\w+ \S*CREATED$", stdout, re.MULTILINE), stdout
    # The episode leads a result, or comes with the fact drawn from it (a passage).
    pattern = r'^(recalled: [\d.]+|  with:) \S*EPISODE "I moved to Lisbon in March"$'
    assert re.search(pattern, stdout, re.M), stdout
    assert re.search(r"^snapshot: [1-9]\d* memories$", stdout, re.MULTILINE), stdout
    assert update_line in stdout.splitlines(), stdout
    # What the quickstart wrote is really in the server, as the Python SDK sees it.
    with persona.PersonaClient(server.target, api_key=KEY) as client:
        texts = {m.text for m in client.iter_memories(_user_of(stdout))}
    assert {"I moved to Lisbon in March", "I started learning the cello"} <= texts


def test_go_quickstart(real_server: Any) -> None:
    done = _run(real_server, GO_SDK, "go", "run", "./examples/quickstart")
    _check_quickstart(
        real_server,
        done.stdout,
        'update: CHANGE_KIND_ADDED MEMORY_TYPE_EPISODE "I started learning the cello"',
    )


def test_typescript_quickstart(real_server: Any) -> None:
    done = _run(real_server, TS_SDK, "npm", "run", "--silent", "quickstart")
    _check_quickstart(
        real_server, done.stdout, 'update: ADDED EPISODE "I started learning the cello"'
    )


# The cross-language suite, case by case: its Go test, its TypeScript test (the Python half is
# below; ingest, recall and resuming streams are tests/sdk/test_e2e_server.py's).
CASES = (
    ("TestIngestThenRecall", "ingests, then recalls with provenance, and recognises a replay"),
    (
        "TestInvalidMaxResultsNamesTheField",
        "names max_results in the INVALID_ARGUMENT of an invalid max_results",
    ),
    ("TestBadKeyIsUnauthenticated", "answers UNAUTHENTICATED to a missing key"),
    ("TestBadKeyIsUnauthenticated", "answers UNAUTHENTICATED to an unknown key"),
    ("TestGetMissingMemoryIsNotFound", "answers NOT_FOUND for a memory that does not exist"),
    (
        "TestStreamContextSnapshotThenUpdateThenResume",
        "streams a snapshot, then resumes from its token with what changed meanwhile",
    ),
)


def test_go_suite(real_server: Any) -> None:
    done = _run(real_server, GO_SDK, "go", "test", "-count=1", "-tags", "e2e", "-v", "./e2e")
    passed = set(re.findall(r"^--- PASS: (\w+)", done.stdout, re.MULTILINE))
    assert passed == {go for go, _ in CASES}, done.stdout
    assert "--- SKIP" not in done.stdout


def test_typescript_suite(real_server: Any) -> None:
    done = _run(real_server, TS_SDK, "npm", "run", "--silent", "test:e2e")
    # node's spec reporter: "  \N{HEAVY CHECK MARK} <title> (12.3ms)" per passed test.
    passed = re.findall(r"^  \N{HEAVY CHECK MARK} (.+) \([\d.]+ms\)$", done.stdout, re.M)
    assert sorted(passed) == sorted(ts for _, ts in CASES), done.stdout
    counts = dict(re.findall(r"^\N{INFORMATION SOURCE} (\w+) (\d+)$", done.stdout, re.M))
    assert (counts.get("fail"), counts.get("skipped"), counts.get("todo")) == ("0", "0", "0")


# The Python half of the same suite's error cases.


def test_python_invalid_max_results_names_the_field(real_server: Any) -> None:
    with (
        persona.PersonaClient(real_server.target, api_key=KEY) as client,
        pytest.raises(persona.InvalidArgumentError) as invalid,
    ):
        client.recall("e2e-py", "q", max_results=101)
    err = invalid.value
    assert (err.code.name, err.reason, err.domain) == (
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "persona.dev",
    )
    assert [v.field for v in err.field_violations] == ["max_results"]


@pytest.mark.parametrize(
    ("key", "reason"), [(None, "API_KEY_MISSING"), ("nope", "API_KEY_INVALID")]
)
def test_python_bad_key_is_unauthenticated(real_server: Any, key: str | None, reason: str) -> None:
    with (
        persona.PersonaClient(real_server.target, api_key=key) as client,
        pytest.raises(persona.UnauthenticatedError) as denied,
    ):
        client.recall("e2e-py", "q", max_results=5)
    assert (denied.value.code.name, denied.value.reason) == ("UNAUTHENTICATED", reason)


def test_python_missing_memory_is_not_found(real_server: Any) -> None:
    with (
        persona.PersonaClient(real_server.target, api_key=KEY) as client,
        pytest.raises(persona.NotFoundError),
    ):
        client.get_memory("e2e-py", "ep_missing")
