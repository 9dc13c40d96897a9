"""Child process of test_sqlite_durability: writes batches forever, acknowledging each one.

A line "ACK <source ids>" is printed (and flushed) only after `put_batch` has returned, which is
the moment the server would answer the client.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.ids import new_id
from persona_server.domain.models import Episode, MemoryType, UserRef

DIM = 32
BATCH = 10


async def main(path: Path, prefix: str) -> None:
    store = SqliteGraphStore(path)
    await store.open(embedding_model="durability-test", dimension=DIM)
    user = UserRef(tenant="durability", user_id="writer")
    rng = np.random.default_rng(0)
    print("READY", flush=True)
    batch = 0
    while True:
        now = datetime.now(UTC)
        episodes = [
            Episode(
                id=new_id(MemoryType.EPISODE),
                source_id=f"{prefix}-{batch}-{i}",
                text=f"durable episode {prefix} {batch} {i} " + "payload " * 20,
                occurred_at=now,
                recorded_at=now,
            )
            for i in range(BATCH)
        ]
        vectors = rng.standard_normal((BATCH, DIM)).astype(np.float32)
        await store.episodes.put_batch(user, episodes, vectors, replace=False)
        print("ACK " + " ".join(e.source_id for e in episodes), flush=True)
        batch += 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
