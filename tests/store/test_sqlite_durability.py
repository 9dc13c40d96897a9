"""Every acknowledged write survives kill -9 of the process, and no batch is half written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import Episode, MemoryType, UserRef
from persona_server.ports.graph_store import MemoryFilter

WRITER = Path(__file__).with_name("durability_writer.py")
USER = UserRef(tenant="durability", user_id="writer")


def run_and_kill(db: Path, prefix: str, kill_after: int) -> set[str]:
    """Start the writer, SIGKILL it after `kill_after` acks; return every acknowledged id."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db), prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    acked: set[str] = set()
    acks = 0
    try:
        for line in proc.stdout:
            if line.startswith("ACK "):
                acked.update(line.split()[1:])
                acks += 1
                if acks == kill_after:
                    # Straight after an ack the writer is already inside the next batch.
                    proc.send_signal(signal.SIGKILL)
                    break
        # Acks printed before the kill but not read yet are acknowledged writes too.
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in rest.splitlines():
        if line.startswith("ACK "):
            acked.update(line.split()[1:])
    assert proc.returncode == -signal.SIGKILL, err
    return acked


async def stored_source_ids(db: Path) -> set[str]:
    store = SqliteGraphStore(db)
    await store.open(embedding_model="durability-test", dimension=32)
    try:
        found: set[str] = set()
        cursor = ""
        flt = MemoryFilter(types=frozenset({MemoryType.EPISODE}))
        while True:
            page = await store.memories.list_page(USER, filter=flt, limit=500, cursor=cursor)
            found.update(m.source_id for m in page.memories if isinstance(m, Episode))
            if not page.next_cursor:
                return found
            cursor = page.next_cursor
    finally:
        await store.close()


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "durable.db"
    acked_total: set[str] = set()
    for round_, kill_after in enumerate((5, 23, 41)):
        acked = run_and_kill(db, f"r{round_}", kill_after)
        assert len(acked) >= kill_after * 10
        acked_total |= acked
        stored = await stored_source_ids(db)
        missing = acked_total - stored
        assert not missing, f"acknowledged but lost after kill -9: {sorted(missing)[:5]}"
        # atomic batches: a batch is there completely or not at all
        batches: dict[str, int] = {}
        for sid in stored:
            batch = sid.rsplit("-", 1)[0]
            batches[batch] = batches.get(batch, 0) + 1
        assert set(batches.values()) == {10}
