"""Compiled kernels on CuPy (``device="gpu"``) against the CPU.

Skipped cleanly when CuPy or a GPU is absent (``tests/plan/test_devices.py`` runs the same code
path on a strict stand-in for CuPy everywhere).
"""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.backends.arrays import cupy_available

from .test_devices import CLOSED, FLOAT32_BOUND, _case

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a GPU"),
]


@pytest.mark.parametrize("name", CLOSED)
def test_gpu_kernels_equal_cpu_kernels(name):
    """float64 on the GPU: the same closed forms, rounded by other libraries (CUDA's arccos,
    erf): agreement to 1e-10 of the largest entry; float32 within its stated accuracy."""
    kfn, X, Y = _case(name)
    ref = kfn(Y, X)
    out = kfn(Y, X, device="gpu")
    out32 = kfn(Y, X, device="gpu", dtype="float32")
    for g in ref:
        assert type(out[g]) is np.ndarray and out32[g].dtype == np.float32
        scale = np.abs(ref[g]).max()
        assert np.max(np.abs(out[g] - ref[g])) <= 1e-10 * scale
        assert np.max(np.abs(out32[g] - ref[g])) <= FLOAT32_BOUND * scale


def test_gpu_tiles_and_kernels_kept_on_the_device():
    import cupy

    from programs import mlp

    X = np.random.default_rng(0).standard_normal((300, 16))
    kfn = tp.compile(mlp.build(X[:2], depth=3))
    ref = kfn(X)
    whole = kfn(X, device="gpu", on_device=True)
    tiled = kfn(X, device="gpu", batch_size=128)
    for g in ref:
        assert isinstance(whole[g], cupy.ndarray)
        scale = np.abs(ref[g]).max()
        assert np.max(np.abs(cupy.asnumpy(whole[g]) - ref[g])) <= 1e-10 * scale
        assert np.max(np.abs(tiled[g] - ref[g])) <= 1e-10 * scale
