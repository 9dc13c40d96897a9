"""The Neo4j codec's vector parameters: same values, short repr (see codec.QuietFloats)."""

from __future__ import annotations

import numpy as np

from persona_server.adapters.stores.neo4j.codec import vector_params


def test_vector_params_carry_the_vector_and_print_short() -> None:
    v = np.random.default_rng(3).standard_normal(384).astype(np.float32)
    row = vector_params("ep_1", v)
    assert row["embedding"] == [float(x) for x in v]
    assert isinstance(row["embedding"], list) and isinstance(row["blob"], bytes)
    assert np.array_equal(np.frombuffer(row["blob"], dtype="<f4"), v)
    # what the driver's debug formatting of a statement's parameters costs is the repr
    assert len(repr(row)) < 100
