"""A user's vectors as one matrix with an array per filterable attribute, and cosine search over
it: a filter is a few vectorised comparisons rather than a loop over rows. Both stores keep
their per-user caches of these (sqlite/vectors.py, neo4j/vectors.py).

Search is exact below `REDUCED_MIN_ROWS` rows. Above, reading the whole float32 matrix for
every query is what search costs (memory bound: 154 MB at 100k x 384), so a first pass scores
every row in a projection onto the matrix's top `REDUCED_DIMENSION` principal directions (a
third of the bytes), and only the best `rescored(k)` rows are scored again exactly from the full
vectors: the scores returned are exact cosines, and a row is missed only if the projection
ranks it below that depth (measured in BENCHMARKS.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from persona_server.adapters.stores.values import TYPE_CODES, to_us
from persona_server.ports.graph_store import MemoryFilter

UserKey = tuple[str, str]
_MetaKey = tuple[tuple[str, str], ...]

# Stand-ins for NULL times, chosen so that plain comparisons already give the filter semantics
# of filters.py: an unset valid_from is "since always", an unset invalid_at "never".
NONE_LOW = np.iinfo(np.int64).min
NONE_HIGH = np.iinfo(np.int64).max
_MIN_CAPACITY = 256
REDUCED_MIN_ROWS = 20_000
REDUCED_DIMENSION = 128
# Vectors whose top directions hold less than this share of their energy (squared length) are
# searched exactly: for them the first pass would miss too many of the best rows. MiniLM's keep
# 0.98 in 128 of 384 dimensions, and then the two-pass top 60 matched the exact one in every
# query measured; isotropic noise keeps 0.64 and matched 0.6 (BENCHMARKS.md).
REDUCED_MIN_ENERGY = 0.95
# The projection is fitted on at most this many rows (evenly spread), and fitted again when the
# matrix has doubled since: a one-off cost of a few hundred milliseconds at 100k rows.
_FIT_SAMPLE = 20_000


def rescored(k: int) -> int:
    """How many first-pass candidates are scored again exactly for the best k."""
    return max(10 * k, 500)


@dataclass(frozen=True)
class VectorRow:
    """The cached state of one memory; `vector` None updates attributes only."""

    memory_id: str
    memory_type: str
    recorded_at: int
    occurred_at: int | None
    valid_from: int | None
    invalid_at: int | None
    metadata: str  # canonical JSON, see values.dump_metadata
    vector: npt.NDArray[np.float32] | None

    @classmethod
    def from_fields(
        cls, fields: Mapping[str, Any], vector: npt.NDArray[np.float32] | None
    ) -> VectorRow:
        """From a memory's stored fields (values.memory_fields, or a row read back)."""
        return cls(
            memory_id=fields["id"],
            memory_type=fields["type"],
            recorded_at=fields["recorded_at"],
            occurred_at=fields["occurred_at"],
            valid_from=fields["valid_from"],
            invalid_at=fields["invalid_at"],
            metadata=fields["metadata"],
            vector=vector,
        )


@dataclass(frozen=True)
class Change:
    upserts: Sequence[VectorRow] = ()
    removals: Sequence[str] = ()
    reset: bool = False


class UserVectors:
    """One user's matrix and per-row attributes; rows [0, n) are live."""

    matrix: npt.NDArray[np.float32]
    types: npt.NDArray[np.int8]
    recorded: npt.NDArray[np.int64]
    occurred: npt.NDArray[np.int64]
    valid_from: npt.NDArray[np.int64]
    invalid_at: npt.NDArray[np.int64]
    meta: npt.NDArray[np.int32]

    def __init__(self, dimension: int, capacity: int = _MIN_CAPACITY) -> None:
        self.lock = threading.Lock()
        self.dimension = dimension
        self.n = 0
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        # The first-pass projection (dimension x REDUCED_DIMENSION) once fitted, the rows it was
        # fitted at, and every live row projected (kept in step by _upsert and _remove).
        self._basis: npt.NDArray[np.float32] | None = None
        self._fitted_at = 0
        self._reduced = np.zeros((0, REDUCED_DIMENSION), dtype=np.float32)
        self._alloc(max(capacity, _MIN_CAPACITY))
        # Metadata dicts are interned: rows hold a code, and a metadata filter becomes a lookup
        # table over the (usually few) distinct dicts. The intern table only grows, so matches
        # per filter are extended incrementally.
        self._meta_codes: dict[str, int] = {}
        self._meta_dicts: list[dict[str, str]] = []
        self._meta_matches: dict[_MetaKey, tuple[int, npt.NDArray[np.bool_]]] = {}

    def _alloc(self, capacity: int) -> None:
        old_n = self.n
        matrix = np.zeros((capacity, self.dimension), dtype=np.float32)
        types = np.zeros(capacity, dtype=np.int8)
        recorded = np.zeros(capacity, dtype=np.int64)
        occurred = np.full(capacity, NONE_LOW, dtype=np.int64)
        valid_from = np.full(capacity, NONE_LOW, dtype=np.int64)
        invalid_at = np.full(capacity, NONE_HIGH, dtype=np.int64)
        meta = np.zeros(capacity, dtype=np.int32)
        if old_n:
            matrix[:old_n] = self.matrix[:old_n]
            types[:old_n] = self.types[:old_n]
            recorded[:old_n] = self.recorded[:old_n]
            occurred[:old_n] = self.occurred[:old_n]
            valid_from[:old_n] = self.valid_from[:old_n]
            invalid_at[:old_n] = self.invalid_at[:old_n]
            meta[:old_n] = self.meta[:old_n]
        self.matrix, self.types, self.recorded, self.occurred = matrix, types, recorded, occurred
        self.valid_from, self.invalid_at, self.meta = valid_from, invalid_at, meta
        if self._basis is not None:
            reduced = np.zeros((capacity, REDUCED_DIMENSION), dtype=np.float32)
            reduced[:old_n] = self._reduced[:old_n]
            self._reduced = reduced

    @property
    def nbytes(self) -> int:
        arrays: list[npt.NDArray[Any]] = [self.matrix, self.types, self.meta, self.recorded]
        arrays += [self.occurred, self.valid_from, self.invalid_at, self._reduced]
        return sum(a.nbytes for a in arrays) + 100 * len(self.ids)

    def _intern(self, metadata: str) -> int:
        code = self._meta_codes.get(metadata)
        if code is None:
            code = len(self._meta_dicts)
            self._meta_codes[metadata] = code
            self._meta_dicts.append(json.loads(metadata))
        return code

    def _set_attrs(self, i: int, row: VectorRow) -> None:
        self.types[i] = TYPE_CODES[row.memory_type]
        self.recorded[i] = row.recorded_at
        self.occurred[i] = NONE_LOW if row.occurred_at is None else row.occurred_at
        self.valid_from[i] = NONE_LOW if row.valid_from is None else row.valid_from
        self.invalid_at[i] = NONE_HIGH if row.invalid_at is None else row.invalid_at
        self.meta[i] = self._intern(row.metadata)

    def apply(self, change: Change) -> None:
        if change.reset:
            self.n = 0
            self.ids.clear()
            self.pos.clear()
        for memory_id in change.removals:
            self._remove(memory_id)
        for row in change.upserts:
            self._upsert(row)

    def _upsert(self, row: VectorRow) -> None:
        i = self.pos.get(row.memory_id)
        if i is None:
            if row.vector is None:
                return  # no vector stored for it, so it is not searchable by vector
            if self.n == len(self.matrix):
                self._alloc(2 * len(self.matrix))
            i = self.n
            self.n += 1
            self.ids.append(row.memory_id)
            self.pos[row.memory_id] = i
        if row.vector is not None:
            self.matrix[i] = row.vector
            if self._basis is not None:
                self._reduced[i] = self.matrix[i] @ self._basis
        self._set_attrs(i, row)

    def _remove(self, memory_id: str) -> None:
        i = self.pos.pop(memory_id, None)
        if i is None:
            return
        last = self.n - 1
        if i != last:
            # Swap the last row in: O(1) and the live rows stay one contiguous block.
            moved = self.ids[last]
            self.ids[i] = moved
            self.pos[moved] = i
            for arr in (
                self.matrix,
                self.types,
                self.recorded,
                self.occurred,
                self.valid_from,
                self.invalid_at,
                self.meta,
                *((self._reduced,) if self._basis is not None else ()),
            ):
                arr[i] = arr[last]
        self.ids.pop()
        self.n = last

    def _metadata_lut(self, wanted: dict[str, str]) -> npt.NDArray[np.bool_]:
        key = tuple(sorted(wanted.items()))
        checked, lut = self._meta_matches.get(key, (0, np.zeros(0, dtype=np.bool_)))
        total = len(self._meta_dicts)
        if checked < total:
            grown = np.zeros(total, dtype=np.bool_)
            grown[: len(lut)] = lut
            for code in range(checked, total):
                md = self._meta_dicts[code]
                grown[code] = all(md.get(k) == v for k, v in key)
            lut = grown
            self._meta_matches[key] = (total, lut)
        return lut

    def mask(self, flt: MemoryFilter) -> npt.NDArray[np.bool_] | None:
        """Rows passing the filter, or None when every row does."""
        n = self.n
        parts: list[npt.NDArray[np.bool_]] = []
        if flt.types:
            lut = np.zeros(len(TYPE_CODES), dtype=np.bool_)
            lut[[TYPE_CODES[t.value] for t in flt.types]] = True
            parts.append(lut[self.types[:n]])
        occurred = self.occurred[:n]
        if flt.occurred_from is not None:
            parts.append(occurred >= to_us(flt.occurred_from))
        if flt.occurred_to is not None:
            parts.append((occurred != NONE_LOW) & (occurred < to_us(flt.occurred_to)))
        if flt.metadata:
            parts.append(self._metadata_lut(dict(flt.metadata))[self.meta[:n]])
        if flt.as_of is not None:
            at = to_us(flt.as_of)
            parts.append(
                (self.recorded[:n] <= at) & (self.valid_from[:n] <= at) & (self.invalid_at[:n] > at)
            )
        elif not flt.include_invalidated:
            parts.append(self.invalid_at[:n] == NONE_HIGH)
        if not parts:
            return None
        out = parts[0]
        for part in parts[1:]:
            out &= part
        return out

    def search(
        self, query: npt.NDArray[np.float32], k: int, flt: MemoryFilter
    ) -> list[tuple[str, float]]:
        n = self.n
        if n == 0 or k <= 0:
            return []
        mask = self.mask(flt)
        live = n if mask is None else int(np.count_nonzero(mask))
        if live == 0:
            return []
        depth = rescored(k)
        if n < REDUCED_MIN_ROWS or live <= depth or self.dimension <= REDUCED_DIMENSION:
            return self._exact(query, k, mask, live)
        if not self._fitted_at or n >= 2 * self._fitted_at:
            self._fit()
        if self._basis is None:  # the projection would lose too much of these vectors
            return self._exact(query, k, mask, live)
        first = self._reduced[:n] @ (query @ self._basis)
        if mask is not None:
            first[~mask] = -np.inf
        candidates = np.argpartition(first, n - depth)[n - depth :]
        scores = self.matrix[candidates] @ query
        kk = min(k, depth)
        best = np.argpartition(scores, depth - kk)[depth - kk :]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.ids[candidates[j]], float(scores[j])) for j in best]

    def _exact(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        mask: npt.NDArray[np.bool_] | None,
        live: int,
    ) -> list[tuple[str, float]]:
        n = self.n
        scores = self.matrix[:n] @ query
        if mask is not None:
            scores[~mask] = -np.inf
        kk = min(k, live)
        top = np.argpartition(scores, n - kk)[n - kk :] if kk < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in top]

    def _fit(self) -> None:
        """Principal directions of the rows (uncentred: they approximate inner products), from
        an even sample, and every live row projected onto them."""
        n = self.n
        sample = self.matrix[: n : max(1, n // _FIT_SAMPLE)]
        values, vectors = np.linalg.eigh((sample.T @ sample).astype(np.float64))
        self._fitted_at = n
        # eigh orders eigenvalues ascending: the last columns are the top directions.
        kept = float(values[-REDUCED_DIMENSION:].sum()) / max(float(values.sum()), 1e-12)
        if kept < REDUCED_MIN_ENERGY:
            self._basis, self._reduced = None, np.zeros((0, REDUCED_DIMENSION), np.float32)
            return
        basis = np.ascontiguousarray(vectors[:, ::-1][:, :REDUCED_DIMENSION], dtype=np.float32)
        reduced = np.zeros((len(self.matrix), REDUCED_DIMENSION), dtype=np.float32)
        reduced[:n] = self.matrix[:n] @ basis
        self._basis, self._reduced = basis, reduced


def prepare_query(query: Any, dimension: int) -> npt.NDArray[np.float32]:
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape != (dimension,):
        raise ValueError(f"query vector must have {dimension} values, got {q.size}")
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm):
        raise ValueError("query vector contains NaN or infinity")
    return q / norm if norm > 0 else q
