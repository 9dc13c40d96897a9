"""Reading a user's graph back through the SDK in the LLM tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from persona import AsyncPersonaClient
from persona.v1 import memory_pb2 as pb

OCCURRED = datetime(2023, 5, 8, 12, 0, tzinfo=UTC)  # a Monday


async def all_memories(
    client: AsyncPersonaClient, user: str, *, include_invalidated: bool = False
) -> list[pb.Memory]:
    return [m async for m in client.iter_memories(user, include_invalidated=include_invalidated)]


def of_type(memories: list[pb.Memory], memory_type: int) -> list[pb.Memory]:
    return [m for m in memories if m.type == memory_type]


def day(ts: object) -> str:
    assert hasattr(ts, "ToDatetime")
    return str(ts.ToDatetime(tzinfo=UTC).date().isoformat())


async def wait_episode(
    client: AsyncPersonaClient,
    user: str,
    episode_id: str,
    until: Callable[[pb.ExtractionStatus], bool],
    within_s: float = 15.0,
) -> pb.ExtractionStatus:
    deadline = time.monotonic() + within_s
    while True:
        status = (await client.get_memory(user, episode_id)).memory.episode.extraction
        if until(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"episode {episode_id} never reached the state: {status}")
        await asyncio.sleep(0.05)


def is_done(status: pb.ExtractionStatus) -> bool:
    return status.state == pb.EXTRACTION_STATE_DONE
