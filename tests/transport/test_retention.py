"""The retention policy through a real server: what a client can still see after a pass
(nothing of the expired episodes, through any RPC), and its settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from persona import AsyncPersonaClient, Item
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from persona_server.config import Settings
from persona_server.domain.tenancy import TenantLimits
from persona_server.transport.keys import ApiKeyConfigError, KeyRing
from tests.transport.transport_settings import KEY_A, KEY_B, make_settings

OLD = "Zanzibar trip with my cousin Marguerite"
NEW = "I love hiking with my friend Sam in Sintra"
LONG_AGO = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def app(tmp_path: Path, embedder: LocalOnnxEmbedder) -> AsyncIterator[App]:
    keys = tmp_path / "keys.txt"
    keys.write_text("tenant tenant-b retention_days=0\n")  # tenant-b keeps everything
    settings = make_settings(tmp_path / "data", retention_days=30, api_keys_file=keys)
    running = await start(settings, embedder=embedder)
    try:
        yield running
    finally:
        await running.stop(grace_s=0)


async def _everything(client: AsyncPersonaClient, user_id: str) -> str:
    """Every way a client can read the user back, as one string."""
    listed = [m async for m in client.iter_memories(user_id, include_invalidated=True)]
    recalled = [await client.recall(user_id, q, max_results=20) for q in ("Zanzibar", "cousin")]
    exported = [chunk async for chunk in client.export_graph(user_id)]
    return "\n".join(str(x) for x in (*listed, *recalled, *exported))


async def test_a_pass_leaves_no_trace_of_expired_episodes(app: App) -> None:
    port = app.port
    async with (
        AsyncPersonaClient(f"127.0.0.1:{port}", api_key=KEY_A) as a,
        AsyncPersonaClient(f"127.0.0.1:{port}", api_key=KEY_B) as b,
    ):
        recent = datetime.now(UTC) - timedelta(days=1)
        await a.ingest(
            "u1",
            [
                Item(OLD, source_id="old", occurred_at=LONG_AGO),
                Item(NEW, source_id="new", occurred_at=recent),
            ],
        )
        await b.ingest("u1", [Item(OLD, source_id="old", occurred_at=LONG_AGO)])
        assert "Marguerite" in await _everything(a, "u1")
        stream = a.stream_context("u1", heartbeat_seconds=1)
        snapshot = await asyncio.wait_for(stream.__aiter__().__anext__(), 10)
        await stream.aclose()

        assert app.retention is not None
        await app.retention.run_once()

        seen = await _everything(a, "u1")
        assert "Zanzibar" not in seen and "Marguerite" not in seen
        assert "Sintra" in seen  # the recent episode stays
        # A client resuming from before the pass is told what went, not what it said.
        resumed = a.stream_context("u1", resume_token=snapshot.resume_token, heartbeat_seconds=1)
        try:
            event = await asyncio.wait_for(resumed.__aiter__().__anext__(), 10)
            assert "Zanzibar" not in str(event) and "Marguerite" not in str(event)
        finally:
            await resumed.aclose()
        # tenant-b's override keeps its copy of the same text
        assert "Marguerite" in await _everything(b, "u1")


def test_retention_settings_are_checked_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert make_settings(tmp_path).tenant_limits.retention_days == 0  # unset: keep forever
    assert make_settings(tmp_path, retention_days=7).tenant_limits.retention_days == 7
    with pytest.raises(ValidationError, match="retention_days"):
        make_settings(tmp_path, retention_days=-1)
    monkeypatch.setenv("PERSONA_RETENTION_DAYS", "ninety")
    with pytest.raises(ValidationError, match="retention_days"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("PERSONA_RETENTION_DAYS", "90")
    assert Settings(_env_file=None).retention_days == 90  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="retention_interval_s"):
        make_settings(tmp_path, retention_interval_s=0)
    with pytest.raises(ValidationError, match="retention_batch"):
        make_settings(tmp_path, retention_batch=0)


def test_key_file_sets_retention_per_tenant(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("tenant acme retention_days=30\ntenant keeper retention_days=0\n")
    ring = KeyRing.from_settings("", path)
    defaults = TenantLimits(retention_days=365)
    assert ring.limits_for("acme", defaults).retention_days == 30
    assert ring.limits_for("keeper", defaults).retention_days == 0
    assert ring.limits_for("other", defaults).retention_days == 365
    for bad in ("-3", "ninety", "1.5", ""):
        path.write_text(f"tenant acme retention_days={bad}\n")
        with pytest.raises(ApiKeyConfigError, match="retention_days must be a non-negative"):
            KeyRing.from_settings("", path)


def test_persona_serve_reports_a_bad_policy_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_server import app as app_module
    from persona_server.cli.main import main

    # serve() sets process-wide logging, tracing and metrics up: not in the test process.
    for name in ("configure_logging", "configure_tracing", "configure_metrics"):
        monkeypatch.setattr(app_module, name, lambda *_args: None)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("PERSONA_RETENTION_DAYS", "-5")
    assert main(["serve", "--data-dir", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.startswith("INVALID_ARGUMENT: retention_days:")

    monkeypatch.delenv("PERSONA_RETENTION_DAYS")
    keys = tmp_path / "keys.txt"
    keys.write_text("tenant acme retention_days=ninety\n")
    monkeypatch.setenv("PERSONA_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("PERSONA_LISTEN", "127.0.0.1:0")
    assert main(["serve", "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"INVALID_ARGUMENT: {keys}:1: retention_days must be a non-negative")
    assert "Traceback" not in err
