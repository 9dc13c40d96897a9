"""The process-wide BLAS thread limit (persona_server.blas, PERSONA_BLAS_THREADS)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from persona_server.blas import configure_blas
from persona_server.config import Settings


def _blas_threads(controller: ThreadpoolController) -> list[int]:
    return [int(i["num_threads"]) for i in controller.info() if i["user_api"] == "blas"]


def test_limit_applies_to_the_process_and_zero_leaves_the_default() -> None:
    np.ones((2, 2)) @ np.ones(2)  # numpy's BLAS is loaded
    controller = ThreadpoolController()
    before = _blas_threads(controller)
    assert before, "numpy's BLAS is visible to threadpoolctl"
    try:
        configure_blas(0)
        assert _blas_threads(ThreadpoolController()) == before
        configure_blas(1)
        assert _blas_threads(ThreadpoolController()) == [1] * len(before)
    finally:
        controller.limit(limits=max(before), user_api="blas")


def test_setting_defaults_to_one_and_refuses_negatives(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).blas_threads == 1
    monkeypatch.setenv("PERSONA_BLAS_THREADS", "-1")
    with pytest.raises(ValueError, match="blas_threads"):
        Settings(_env_file=None)
