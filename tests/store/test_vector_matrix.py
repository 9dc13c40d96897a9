"""The two-pass vector search of a big user's matrix (vector_matrix.py): a first pass over a
projection, exact scores for the best candidates. Shrunk here (small thresholds, 16 dimensions
projected to 8) so that a test matrix of a few thousand rows takes the two-pass path."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from persona_server.adapters.stores import vector_matrix
from persona_server.adapters.stores.vector_matrix import Change, UserVectors, VectorRow
from persona_server.domain.models import MemoryType
from persona_server.ports.graph_store import MemoryFilter

DIM = 16
ROWS = 3000
K = 10


@pytest.fixture(autouse=True)
def _small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vector_matrix, "REDUCED_MIN_ROWS", 1000)
    monkeypatch.setattr(vector_matrix, "REDUCED_DIMENSION", 8)


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _low_rank_rows(n: int, seed: int) -> list[npt.NDArray[np.float32]]:
    """Unit vectors in an 8-dimensional subspace: the projection loses nothing, so the two-pass
    search must return exactly what an exact search does."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((DIM, 8)))[0]
    return [_unit(basis @ rng.standard_normal(8)) for _ in range(n)]


def _row(i: int, vector: npt.NDArray[np.float32] | None, mtype: str = "episode") -> VectorRow:
    return VectorRow(f"m{i:05d}", mtype, 0, None, None, None, "{}", vector)


def _filled(vectors: list[npt.NDArray[np.float32]], types: list[str] | None = None) -> UserVectors:
    uv = UserVectors(DIM)
    kinds = types or ["episode"] * len(vectors)
    uv.apply(
        Change(upserts=[_row(i, v, t) for i, (v, t) in enumerate(zip(vectors, kinds, strict=True))])
    )
    return uv


def _exact(
    uv: UserVectors, query: npt.NDArray[np.float32], k: int, flt: MemoryFilter
) -> list[tuple[str, float]]:
    mask = uv.mask(flt)
    live = uv.n if mask is None else int(np.count_nonzero(mask))
    return uv._exact(query, k, mask, live)


def test_two_pass_search_equals_exact_search_when_the_projection_loses_nothing() -> None:
    vectors = _low_rank_rows(ROWS, seed=1)
    uv = _filled(vectors)
    flt = MemoryFilter()
    for q in _low_rank_rows(20, seed=1)[:20]:
        found = uv.search(q, K, flt)
        assert uv._basis is not None  # the two-pass path ran
        expected = _exact(uv, q, K, flt)
        assert [i for i, _ in found] == [i for i, _ in expected]
        # Scores are exact cosines, not first-pass estimates.
        for memory_id, score in found:
            assert score == pytest.approx(float(vectors[uv.pos[memory_id]] @ q), abs=1e-5)


def test_two_pass_search_applies_the_filter() -> None:
    vectors = _low_rank_rows(ROWS, seed=2)
    types = ["episode" if i % 3 else "fact" for i in range(ROWS)]
    uv = _filled(vectors, types)
    only_facts = MemoryFilter(types=frozenset({MemoryType.FACT}))
    q = vectors[1]  # an episode: the best fact is something else
    found = uv.search(q, K, only_facts)
    assert len(found) == K
    assert all(int(memory_id[1:]) % 3 == 0 for memory_id, _ in found)
    assert found == _exact(uv, q, K, only_facts)


def test_rows_written_after_the_fit_are_projected_and_removals_keep_rows_in_step() -> None:
    vectors = _low_rank_rows(ROWS + 1, seed=3)
    uv = _filled(vectors[:ROWS])
    target = vectors[ROWS]
    uv.search(target, K, MemoryFilter())
    fitted = uv._basis
    assert fitted is not None
    # A new row equal to the query must come first (it is projected on write), and after it
    # is removed the row swapped into its place must still be found by its own vector.
    uv.apply(Change(upserts=[_row(ROWS, target)]))
    assert uv.search(target, K, MemoryFilter())[0][0] == f"m{ROWS:05d}"
    uv.apply(Change(removals=[f"m{ROWS:05d}", "m00000"]))
    moved = uv.ids[0]
    assert uv.search(uv.matrix[0].copy(), K, MemoryFilter())[0][0] == moved
    assert f"m{ROWS:05d}" not in [i for i, _ in uv.search(target, K, MemoryFilter())]
    assert uv._basis is fitted  # not refitted: the matrix has not doubled


def test_the_projection_is_fitted_again_when_the_matrix_has_doubled() -> None:
    vectors = _low_rank_rows(2 * ROWS, seed=4)
    uv = _filled(vectors[:ROWS])
    uv.search(vectors[0], K, MemoryFilter())
    first = uv._basis
    uv.apply(Change(upserts=[_row(i, v) for i, v in enumerate(vectors) if i >= ROWS]))
    q = vectors[-1]
    found = uv.search(q, K, MemoryFilter())
    assert uv._basis is not first
    assert found[0][0] == f"m{2 * ROWS - 1:05d}"
    assert [i for i, _ in found] == [i for i, _ in _exact(uv, q, K, MemoryFilter())]


def test_small_or_mostly_filtered_matrices_are_searched_exactly() -> None:
    vectors = _low_rank_rows(900, seed=5)
    uv = _filled(vectors)
    uv.search(vectors[0], K, MemoryFilter())
    assert uv._basis is None  # below REDUCED_MIN_ROWS
    types = ["fact" if i < 50 else "episode" for i in range(ROWS)]
    big = _filled(_low_rank_rows(ROWS, seed=6), types)
    big.search(vectors[0], K, MemoryFilter(types=frozenset({MemoryType.FACT})))
    assert big._basis is None  # 50 rows pass: fewer than the rescoring depth


def test_vectors_the_projection_would_blur_are_searched_exactly() -> None:
    # Isotropic vectors: no 8 of 16 directions hold 95% of their energy.
    rng = np.random.default_rng(7)
    vectors = [_unit(rng.standard_normal(DIM)) for _ in range(ROWS)]
    uv = _filled(vectors)
    q = _unit(rng.standard_normal(DIM))
    assert uv.search(q, K, MemoryFilter()) == _exact(uv, q, K, MemoryFilter())
    assert uv._basis is None and uv._fitted_at == ROWS  # fitted once, not on every query
