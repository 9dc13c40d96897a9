"""Keys that change without a restart, per-tenant rate limits and quotas, and the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.rpc import error_details_pb2

from persona import AsyncPersonaClient, Item, ResourceExhaustedError, UnauthenticatedError
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from persona_server.domain.tenancy import TenantLimits
from persona_server.transport import keys as keys_module
from persona_server.transport.keys import ApiKeyConfigError, KeyRing, KeySource, hash_key
from persona_server.transport.limits import RateLimiter
from tests.transport.transport_settings import KEY_A, make_settings


def key_line(key: str, tenant: str) -> str:
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()} {tenant}\n"


def write_keys(path: Path, text: str) -> None:
    path.write_text(text)
    # Two edits within one mtime tick would look unchanged; move the clock on explicitly.
    stamp = time.time_ns() + 10_000_000 * (1 + int(path.stat().st_size))
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
async def keyed_app(tmp_path: Path, embedder: LocalOnnxEmbedder) -> AsyncIterator[App]:
    key_file = tmp_path / "keys.txt"
    write_keys(key_file, key_line("old-key", "acme"))
    settings = make_settings(
        tmp_path / "data", api_keys="", api_keys_file=key_file, api_keys_file_poll_s=0.05
    )
    app = await start(settings, embedder=embedder)
    try:
        yield app
    finally:
        await app.stop(grace_s=0)


async def eventually_authenticated(target: str, key: str, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    async with AsyncPersonaClient(target, api_key=key) as client:
        while True:
            try:
                await client.recall("u1", "anything", max_results=1)
                return
            except UnauthenticatedError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def test_rotated_key_file_takes_effect_without_a_restart(
    keyed_app: App, tmp_path: Path
) -> None:
    target = f"127.0.0.1:{keyed_app.port}"
    key_file = tmp_path / "keys.txt"
    await eventually_authenticated(target, "old-key")
    # Rotation: the new key is added, then the old one removed.
    write_keys(key_file, key_line("old-key", "acme") + key_line("new-key", "acme"))
    await eventually_authenticated(target, "new-key")
    write_keys(key_file, key_line("new-key", "acme"))
    deadline = time.monotonic() + 5
    async with AsyncPersonaClient(target, api_key="old-key") as old:
        while True:
            try:
                await old.recall("u1", "anything", max_results=1)
            except UnauthenticatedError:
                break
            assert time.monotonic() < deadline, "the removed key still works"
            await asyncio.sleep(0.05)
    # A broken edit is refused: the keys in use stay.
    write_keys(key_file, "sha256:not-a-digest acme\n")
    await asyncio.sleep(0.3)
    await eventually_authenticated(target, "new-key", within_s=0.1)
    write_keys(key_file, "# everything removed by mistake\n")
    await asyncio.sleep(0.3)
    await eventually_authenticated(target, "new-key", within_s=0.1)


def test_key_lookup_compares_every_entry_even_after_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ring = KeyRing({hash_key(f"key-{i}"): f"t{i}" for i in range(50)})
    calls = 0
    compare = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        nonlocal calls
        calls += 1
        return compare(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", counting)
    assert ring.tenant_for("key-0") == "t0"  # the first entry matches
    assert calls == 50
    calls = 0
    assert ring.tenant_for("wrong") is None
    assert calls == 50


def test_key_file_tenant_lines_override_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(
        key_line("k", "acme")
        + "tenant acme rate_limit_rps=2.5 quota_memories_per_user=10\n"
        + "# comment\n"
    )
    ring = KeyRing.from_settings("", path)
    defaults = TenantLimits(rate_limit_rps=100, quota_bytes_per_tenant=5000)
    assert ring.limits_for("acme", defaults) == TenantLimits(
        rate_limit_rps=2.5, quota_memories_per_user=10, quota_bytes_per_tenant=5000
    )
    assert ring.limits_for("other", defaults) == defaults
    for bad, problem in (
        ("tenant acme speed=3\n", "unknown setting 'speed'"),
        ("tenant acme quota_memories_per_user=-1\n", "non-negative"),
        ("tenant\n", "expected 'tenant <tenant>"),
        ("sha256:abc acme\n", "expected 'sha256:<64 hex digits>"),
    ):
        path.write_text(bad)
        with pytest.raises(ApiKeyConfigError, match=problem) as err:
            KeyRing.from_settings("", path)
        assert f"{path}:1" in str(err.value)


def test_key_source_keeps_the_old_ring_when_the_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    write_keys(path, key_line("k1", "acme"))
    source = KeySource("", path)
    assert source.ring.tenant_for("k1") == "acme"
    write_keys(path, key_line("k2", "acme"))
    assert source.reload_if_changed()
    assert source.ring.tenant_for("k2") == "acme" and source.ring.tenant_for("k1") is None
    write_keys(path, "garbage\n")
    assert not source.reload_if_changed()
    assert source.ring.tenant_for("k2") == "acme"


def test_rate_limiter_refills_at_the_rate_and_caps_at_the_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(
        lambda tenant: TenantLimits(rate_limit_rps=2, rate_limit_burst=3), clock=lambda: now[0]
    )
    assert [limiter.take("t") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("t") == pytest.approx(0.5)  # one token every half second
    now[0] = 0.5
    assert limiter.take("t") == 0
    now[0] = 100.0  # a long pause refills to the burst, not beyond
    assert [limiter.take("t") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("t") > 0
    assert limiter.take("other") == 0  # each tenant has its own bucket


async def test_rate_limited_tenant_gets_resource_exhausted_with_retry_info(
    tmp_path: Path, embedder: LocalOnnxEmbedder
) -> None:
    settings = make_settings(tmp_path / "data", rate_limit_rps=1, rate_limit_burst=2)
    app = await start(settings, embedder=embedder)
    try:
        async with (
            AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as a,
            AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key="key-tenant-b") as b,
        ):
            await a.recall("u1", "x", max_results=1)
            await a.recall("u1", "x", max_results=1)
            with pytest.raises(ResourceExhaustedError) as err:
                await a.recall("u1", "x", max_results=1)
            assert err.value.reason == "RATE_LIMITED"
            assert err.value.retry_delay is not None and 0 < err.value.retry_delay <= 1.0
            await b.recall("u1", "x", max_results=1)  # another tenant is not held back
    finally:
        await app.stop(grace_s=0)


def _quota_failure(err: ResourceExhaustedError) -> list[str]:
    subjects = []
    for detail in err.details:
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            subjects += [v.subject for v in failure.violations]
    return subjects


async def test_quota_of_memories_per_user_refuses_the_whole_batch(
    tmp_path: Path, embedder: LocalOnnxEmbedder
) -> None:
    # Offline extraction derives memories too: they count, so the quota is generous.
    settings = make_settings(tmp_path / "data", quota_memories_per_user=4)
    app = await start(settings, embedder=embedder)
    try:
        async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
            await client.ingest("u1", [Item("plain note one", source_id="1")])
            await client.ingest("u1", [Item("plain note two", source_id="2")])
            before = [m.id async for m in client.iter_memories("u1")]
            with pytest.raises(ResourceExhaustedError) as err:
                await client.ingest(
                    "u1", [Item(f"plain note {n}", source_id=str(n)) for n in range(3, 6)]
                )
            assert err.value.reason == "QUOTA_EXCEEDED"
            assert _quota_failure(err.value) == ["user:tenant-a/u1"]
            assert err.value.retry_delay is not None
            assert [m.id async for m in client.iter_memories("u1")] == before
            await client.ingest("u2", [Item("another user is not affected", source_id="x")])
    finally:
        await app.stop(grace_s=0)


async def test_quota_of_bytes_per_tenant_counts_every_user_of_the_tenant(
    tmp_path: Path, embedder: LocalOnnxEmbedder
) -> None:
    settings = make_settings(tmp_path / "data", quota_bytes_per_tenant=60)
    app = await start(settings, embedder=embedder)
    try:
        async with (
            AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as a,
            AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key="key-tenant-b") as b,
        ):
            await a.ingest("u1", [Item("x" * 25, source_id="1")])
            await a.ingest("u2", [Item("y" * 25, source_id="2")])
            with pytest.raises(ResourceExhaustedError) as err:
                await a.ingest("u3", [Item("z" * 25, source_id="3")])
            assert _quota_failure(err.value) == ["tenant:tenant-a"]
            assert [m async for m in a.iter_memories("u3")] == []
            await b.ingest("u1", [Item("w" * 25, source_id="4")])  # tenant B has its own
    finally:
        await app.stop(grace_s=0)


def _audit(caplog: pytest.LogCaptureFixture, kind: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in vars(r).items() if not k.startswith("_")}
        for r in caplog.records
        if r.name == "persona.audit" and getattr(r, "audit", None) == kind
    ]


async def test_audit_log_has_every_delete_and_every_refused_key(
    app: App, client: AsyncPersonaClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="persona.audit")
    ingested = await client.ingest("u1", [Item("a note to delete later", source_id="d1")])
    episode_id = ingested.results[0].episode_id
    await client.delete_memory("u1", episode_id)
    await client.delete_user("u1")
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key="stolen-key") as bad:
        with pytest.raises(UnauthenticatedError):
            await bad.recall("u1", "x", max_results=1)
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}") as none:
        with pytest.raises(UnauthenticatedError):
            await none.recall("u1", "x", max_results=1)

    (deleted,) = _audit(caplog, "memory_deleted")
    assert (deleted["tenant"], deleted["user_id"], deleted["memory_id"]) == (
        "tenant-a",
        "u1",
        episode_id,
    )
    (user,) = _audit(caplog, "user_deleted")
    assert (user["tenant"], user["user_id"]) == ("tenant-a", "u1")
    rejected = _audit(caplog, "api_key_rejected")
    assert [r["reason"] for r in rejected] == ["API_KEY_INVALID", "API_KEY_MISSING"]
    assert all(r["method"] == "/persona.v1.MemoryService/Recall" and r["peer"] for r in rejected)
    assert "stolen-key" not in caplog.text
