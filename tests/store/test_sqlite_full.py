"""The embedded store on a full disk: RESOURCE_EXHAUSTED (STORE_FULL), nothing half written, no
corruption, and recovery without a restart once there is room again.

Two ways to fill it, both real SQLite failures (SQLITE_FULL), not a mock:
- `page_limit`: the store's own connection gets `PRAGMA max_page_count` at its current size, so
  the next page SQLite needs is refused (works everywhere);
- `tmpfs`: the data directory is a 4 MiB tmpfs that the test mounts and fills with a ballast
  file (needs the privilege to mount; skipped where it is missing).
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from persona import AsyncPersonaClient, Item, ResourceExhaustedError
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.adapters.stores.sqlite.store import SqliteGraphStore
from persona_server.app import App, start
from tests.transport.transport_settings import KEY_A, make_settings


@dataclass
class Disk:
    data_dir: Path
    fill: object  # (app) -> awaitable: make the next write fail with SQLITE_FULL
    free: object  # (app) -> awaitable: make room again


@contextlib.contextmanager
def _tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _db(app: App) -> SqliteGraphStore:
    assert isinstance(app.store, SqliteGraphStore)
    return app.store


@pytest.fixture(params=["page_limit", "tmpfs"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    if request.param == "page_limit":

        async def limit(app: App) -> None:
            def run(conn: sqlite3.Connection) -> None:
                (pages,) = conn.execute("PRAGMA page_count").fetchone()
                conn.execute(f"PRAGMA max_page_count = {pages}")

            await _db(app)._ctx.db.write(run)

        async def unlimit(app: App) -> None:
            await _db(app)._ctx.db.write(
                lambda conn: conn.execute("PRAGMA max_page_count = 4294967294")
            )

        yield Disk(tmp_path / "data", limit, unlimit)
        return
    with _tmpfs(tmp_path) as mount:
        ballast = mount / "ballast"

        async def fill(_app: App) -> None:
            # Everything the disk has left, then the writes need more.
            with ballast.open("wb") as out, contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()

        async def free(_app: App) -> None:
            ballast.unlink()

        yield Disk(mount / "data", fill, free)


@pytest.fixture
async def app(disk: Disk, embedder: LocalOnnxEmbedder) -> AsyncIterator[App]:
    running = await start(make_settings(disk.data_dir), embedder=embedder)
    try:
        yield running
    finally:
        await running.stop(grace_s=0)


async def test_full_disk_refuses_writes_clearly_and_recovers_without_restart(
    app: App, disk: Disk
) -> None:
    text = "a note long enough to need new pages " * 30
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        await client.ingest("u1", [Item(f"{i} {text}", source_id=f"ok-{i}") for i in range(5)])
        before = sorted([m.id async for m in client.iter_memories("u1")])

        await disk.fill(app)  # type: ignore[operator]
        for attempt in range(3):
            with pytest.raises(ResourceExhaustedError) as err:
                items = [Item(f"{i} {text}", source_id=f"full-{attempt}-{i}") for i in range(5)]
                await client.ingest("u1", items)
            assert err.value.reason == "STORE_FULL"
            assert err.value.retry_delay is not None
        # Reads still work, and nothing of the refused batches was written.
        assert sorted([m.id async for m in client.iter_memories("u1")]) == before
        assert (await client.recall("u1", "a note", max_results=3)).results

        await disk.free(app)  # type: ignore[operator]
        await client.ingest("u1", [Item(f"after {text}", source_id="after")])
        after = {m.episode.source_id async for m in client.iter_memories("u1") if m.episode}
        assert {f"ok-{i}" for i in range(5)} | {"after"} <= after
        assert not any(s.startswith("full-") for s in after)

    def integrity(conn: sqlite3.Connection) -> str:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    assert await _db(app)._ctx.db.read(integrity) == "ok"
