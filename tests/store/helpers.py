"""Builders for the store tests: episodes, derived memories and seeded random unit vectors."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from persona_server.domain.ids import new_id
from persona_server.domain.models import (
    Entity,
    Episode,
    Fact,
    Goal,
    MemoryType,
    Psyche,
    UserRef,
)
from persona_server.ports.graph_store import EpisodeWriteResult, GraphStore

DIM = 32
MODEL = "test-embedder-v1"
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)

_rng = np.random.default_rng(1234)


def new_user(user_id: str = "alice") -> UserRef:
    return UserRef(tenant=f"t-{uuid.uuid4().hex[:12]}", user_id=user_id)


def unit(seed: int | None = None, dim: int = DIM) -> npt.NDArray[np.float32]:
    rng = _rng if seed is None else np.random.default_rng(seed)
    v = rng.standard_normal(dim).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def units(n: int, dim: int = DIM) -> npt.NDArray[np.float32]:
    return np.stack([unit(dim=dim) for _ in range(n)]) if n else np.zeros((0, dim), np.float32)


def near(v: npt.NDArray[np.float32], noise: float = 0.05) -> npt.NDArray[np.float32]:
    w = v + noise * unit()
    out: npt.NDArray[np.float32] = (w / np.linalg.norm(w)).astype(np.float32)
    return out.reshape(1, -1)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def episode(source_id: str, text: str, at: datetime | None = None, **kw: Any) -> Episode:
    return Episode(
        id=new_id(MemoryType.EPISODE),
        source_id=source_id,
        text=text,
        occurred_at=at or T0,
        recorded_at=kw.pop("recorded_at", datetime.now(UTC)),
        **kw,
    )


def psyche(text: str, key: str = "", **kw: Any) -> Psyche:
    return Psyche(id=new_id(MemoryType.PSYCHE), text=text, key=key, recorded_at=T0, **kw)


def goal(text: str, key: str = "", **kw: Any) -> Goal:
    return Goal(id=new_id(MemoryType.GOAL), text=text, key=key, recorded_at=T0, **kw)


def entity(name: str, aliases: Sequence[str] = (), **kw: Any) -> Entity:
    return Entity(
        id=new_id(MemoryType.ENTITY),
        name=name,
        text=kw.pop("text", name),
        aliases=list(aliases),
        recorded_at=T0,
        **kw,
    )


def fact(subject: Entity, predicate: str, obj: Entity | None = None, **kw: Any) -> Fact:
    return Fact(
        id=new_id(MemoryType.FACT),
        subject_id=subject.id,
        predicate=predicate,
        object_id=obj.id if obj else "",
        text=kw.pop("text", f"{subject.name} {predicate} {obj.name if obj else ''}".strip()),
        recorded_at=T0,
        **kw,
    )


async def put(
    store: GraphStore,
    user: UserRef,
    episodes: Sequence[Episode],
    *,
    replace: bool = False,
    vectors: npt.NDArray[np.float32] | None = None,
) -> list[EpisodeWriteResult]:
    vecs = units(len(episodes)) if vectors is None else vectors
    return await store.episodes.put_batch(user, episodes, vecs, replace=replace)


def by_id(memories: Sequence[Any], vectors: npt.NDArray[np.float32]) -> dict[str, Any]:
    """`DerivedWrite.vectors` for memories given with one vector row each, in order."""
    return {m.id: vectors[i] for i, m in enumerate(memories)}
