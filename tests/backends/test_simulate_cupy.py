"""CuPy backend: the same program, the same networks (host random numbers), the same numbers.

Skipped cleanly when CuPy or a GPU is absent.
"""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.backends.arrays import cupy_available

from ..conftest import build_mlp

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a GPU"),
]


def inputs():
    X = np.random.default_rng(0).standard_normal((3, 5))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("phi", [tp.relu, tp.erf])
def test_cupy_and_numpy_agree_on_the_same_seeds(phi):
    p = build_mlp(inputs(), depth=2, wvar=2.0, bvar=0.1, phi=phi)
    a = tp.simulate(p, width=256, seeds=6, backend="numpy", seed=4)
    b = tp.simulate(p, width=256, seeds=6, backend="cupy", seed=4, rng="numpy")
    assert b.backend == "cupy"
    assert isinstance(b.ntk_samples, np.ndarray) and isinstance(b.outputs, np.ndarray)
    np.testing.assert_allclose(b.nngp_samples, a.nngp_samples, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.ntk_samples, a.ntk_samples, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.outputs, a.outputs, rtol=1e-9, atol=1e-12)
    for k in a.ntk_contributions:
        np.testing.assert_allclose(b.ntk_contributions[k], a.ntk_contributions[k],
                                   rtol=1e-9, atol=1e-12)


def test_cupy_device_rng_agrees_statistically():
    """GPU random numbers differ from NumPy's; the seed means agree within their errors."""
    p = build_mlp(inputs(), depth=1, wvar=2.0, bvar=0.1, phi=tp.relu)
    a = tp.simulate(p, width=128, seeds=400, backend="numpy", seed=1)
    b = tp.simulate(p, width=128, seeds=400, backend="cupy", seed=1, rng="device")
    z = np.abs(a.ntk - b.ntk) / np.sqrt(a.ntk_stderr**2 + b.ntk_stderr**2)
    assert z.max() < 4.5


def test_cupy_float32_and_scalars():
    import sympy as sp

    X = inputs()
    p = tp.Program("ln")
    h = p.embed(X, var=1.0, bias_var=0.1)
    x = p.matrix("W", var=2.0) @ tp.relu(h)
    th = (x * x).mean(name="theta")
    p.output(tp.nonlin(lambda a, t: sp.tanh(a / sp.sqrt(t + 1e-3)), x, scalars=[th]), var=1.0)
    a = tp.simulate(p, width=128, seeds=3, backend="numpy", seed=2)
    b = tp.simulate(p, width=128, seeds=3, backend="cupy", seed=2, rng="numpy")
    np.testing.assert_allclose(b.scalars["theta"], a.scalars["theta"], rtol=1e-9)
    c = tp.simulate(p, width=128, seeds=3, backend="cupy", seed=2, rng="numpy",
                    dtype=np.float32)
    np.testing.assert_allclose(c.ntk_samples, a.ntk_samples, rtol=1e-3)
