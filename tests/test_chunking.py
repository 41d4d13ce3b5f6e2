"""Memory chunking (tensorprog/chunking.py) and its users: chunk sizes follow the byte budget,
and results do not depend on the chunking."""
import numpy as np

from tensorprog.chunking import chunk_bounds, chunk_size
from tensorprog.backends.hypernet import HypernetSimulation, simulate_hypernet
from tensorprog.backends.simulate import Simulation


def test_chunk_size_follows_the_budget():
    assert chunk_size(10, 300, 1000) == 3
    assert chunk_size(10, 300, 100) == 1            # at least one item
    assert chunk_size(2, 1, 1e9) == 2               # at most all items
    assert chunk_size(5, 0, 3) == 3                 # a free item counts as one byte
    assert chunk_bounds(0, 4) == []
    assert chunk_bounds(8, 4) == [(0, 4), (4, 8)]


def test_hypernetwork_simulation_is_a_simulation_independent_of_chunks():
    rng = np.random.default_rng(0)
    X, Z = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    for sampler in ("explicit", "conditional"):
        one = simulate_hypernet(X, Z, 6, 5, 3, 3, seeds=5, seed=2, sampler=sampler, chunk=1)
        auto = simulate_hypernet(X, Z, 6, 5, 3, 3, seeds=5, seed=2, sampler=sampler)
        assert isinstance(auto, HypernetSimulation) and isinstance(auto, Simulation)
        assert (one.chunk, auto.chunk) == (1, 5)
        np.testing.assert_array_equal(one.ntk_samples, auto.ntk_samples)
        np.testing.assert_array_equal(one.nngp_samples, auto.nngp_samples)
        np.testing.assert_array_equal(auto.ntk, auto.ntk_samples.mean(axis=0))
        assert auto.width == 6 and auto.net.m == 5 and "hypernetwork" in repr(auto)
