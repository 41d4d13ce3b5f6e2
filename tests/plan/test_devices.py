"""Compiled kernels in float32, and on a device through the array module: the GPU code path run
on a strict stand-in for CuPy (``strict_device``: NumPy arithmetic behind CuPy's wall against
implicit host conversion), so that CI without a GPU runs every line of it."""
from functools import lru_cache

import numpy as np
import pytest

import tensorprog as tp
from programs import hypernet, mlp
from tensorprog.backends.arrays import cupy_available
from tensorprog.plan import devices
from tensorprog.plan.tiles import auto_batch_size
from tests.helpers import unit_rows

from . import strict_device as sd
from .test_compile import PAIR_LOCAL, _inputs

#: Pair-local architectures but the GRU, whose gates fall to quadrature and Monte Carlo (host
#: NumPy in float64 on every device and precision, and seconds per call).
CLOSED = sorted(set(PAIR_LOCAL) - {"gru"})
#: Stated accuracy of float32 kernels: max |K₃₂ − K₆₄| / max |K₆₄| (docs/performance.md).
FLOAT32_BOUND = 5e-6


@pytest.fixture
def gpu(monkeypatch):
    """``device="gpu"`` runs on the strict stand-in; its moves counted from zero."""
    monkeypatch.setattr(devices, "gpu_module", lambda: sd)
    sd.moves.update(to_device=0, to_host=0)
    return sd


@lru_cache(maxsize=None)
def _case(name, n1=4, n2=3):
    """The compiled kernel of an architecture (derived once for this module) and inputs."""
    build, shape = PAIR_LOCAL[name]
    X, Y = _inputs(shape, n1, 0), _inputs(shape, n2, 1)
    return tp.compile(build(X)), X, Y


@pytest.mark.parametrize("name", CLOSED)
def test_float32_within_its_stated_accuracy(name):
    kfn, X, Y = _case(name)
    ref, one = kfn(Y, X), kfn(Y, X, dtype="float32")
    sym, sym_ref = kfn(X, dtype=np.float32), kfn(X)
    for g in ("nngp", "ntk"):
        assert one[g].dtype == np.float32 and sym[g].dtype == np.float32
        assert np.max(np.abs(one[g] - ref[g])) <= FLOAT32_BOUND * np.abs(ref[g]).max()
        assert np.max(np.abs(sym[g] - sym_ref[g])) <= FLOAT32_BOUND * np.abs(sym_ref[g]).max()


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_float32_deep_mlp_and_its_pair_arrays(act):
    X = np.random.default_rng(4).standard_normal((40, 8))
    kfn = tp.compile(mlp.build(X[:2], depth=10, activation=act))
    ref = kfn(X)
    out, ex = kfn._template.evaluate(kfn._data(X), None, ("nngp", "ntk"),
                                     devices.device("cpu", "float32"))
    for blk in ex._covs.values():                       # every cached pair array in float32
        assert {a.dtype for a in (blk.l, blk.r, blk.x, blk.y)} == {np.dtype(np.float32)}
    for g in ref:
        assert out[g].dtype == np.float32
        assert np.max(np.abs(out[g] - ref[g])) <= FLOAT32_BOUND * np.abs(ref[g]).max()
    # float64 stays the default, and a compile-time default applies to every call
    assert ref["ntk"].dtype == np.float64
    np.testing.assert_array_equal(kfn(X, dtype="float64")["ntk"], ref["ntk"])
    k32 = tp.compile(mlp.build(X[:2], depth=10, activation=act), dtype="float32")
    np.testing.assert_array_equal(k32(X)["ntk"], out["ntk"])


def test_float32_tiles_hold_twice_the_pairs():
    cpu32 = devices.device("cpu", "float32")
    b64 = auto_batch_size(100, 10**5, 10**5, budget=8 * 100 * 400)
    b32 = auto_batch_size(100, 10**5, 10**5, budget=8 * 100 * 400, device=cpu32)
    assert (b64, b32) == (20, 28)
    X = unit_rows((9, 3), 2)
    kfn = tp.compile(mlp.build(X[:2], depth=2))
    whole, tiled = kfn(X, dtype="float32"), kfn(X, dtype="float32", batch_size=4)
    for g in whole:
        assert tiled[g].dtype == np.float32
        np.testing.assert_array_equal(tiled[g], whole[g])


def test_union_route_computes_in_float64_and_casts():
    p = hypernet.build(unit_rows((3, 3), 0), f_depth=1, g_depth=1)
    kfn = tp.compile(p)
    assert kfn.route == "union"
    K = kfn(get="ntk", dtype="float32")
    assert K.dtype == np.float32
    np.testing.assert_array_equal(K, tp.ntk(p).astype(np.float32))


@pytest.mark.parametrize("name", CLOSED)
def test_device_path_gives_the_cpu_kernels(name, gpu):
    """The same plan through the device's array module: the same numbers, NumPy results."""
    kfn, X, Y = _case(name)
    ref = kfn(Y, X)
    out = kfn(Y, X, device="gpu")
    for g in ref:
        assert type(out[g]) is np.ndarray
        np.testing.assert_array_equal(out[g], ref[g])
    # float32: factors without a fused closed form compute on the host in float64 there
    sym, cpu = kfn(X, device="gpu", dtype="float32"), kfn(X, dtype="float32")
    for g in ref:
        assert sym[g].dtype == np.float32
        assert np.max(np.abs(sym[g] - cpu[g])) <= FLOAT32_BOUND * np.abs(cpu[g]).max()


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_device_moves_inputs_once_and_kernels_back(act, gpu):
    """An MLP's plan runs on the device end to end: its inputs go there once, the two kernels
    come back, nothing else crosses (its expectations are all fused closed forms)."""
    X = unit_rows((12, 5), 3)
    kfn = tp.compile(mlp.build(X[:2], depth=3, activation=act))
    ref = kfn(X)
    out = kfn(X, device="gpu")
    assert gpu.moves["to_host"] == 2
    moved = gpu.moves["to_device"]
    kfn(X, device="gpu", get="ntk")
    assert gpu.moves["to_host"] == 3
    # tiles: the inputs are not moved again, each tile's kernels come back
    sd.moves.update(to_device=0, to_host=0)
    tiled = kfn(X, device="gpu", batch_size=5)            # 3 row blocks, 6 tiles
    assert gpu.moves["to_host"] == 2 * 6
    assert gpu.moves["to_device"] <= 1 + 6 * (moved - 1)
    for g in ref:
        np.testing.assert_array_equal(out[g], ref[g])
        np.testing.assert_array_equal(tiled[g], ref[g])


def test_kernels_kept_on_the_device(gpu):
    X = unit_rows((7, 3), 1)
    kfn = tp.compile(mlp.build(X[:2], depth=2))
    ref = kfn(X)
    for kw in ({}, {"batch_size": 3}):
        sd.moves.update(to_device=0, to_host=0)
        out = kfn(X, device="gpu", on_device=True, **kw)
        assert gpu.moves["to_host"] == 0
        for g in ref:
            assert isinstance(out[g], sd.ndarray)
            np.testing.assert_array_equal(out[g].get(), ref[g])


def test_bad_dtype_and_device_are_clear_errors():
    X = unit_rows((3, 3), 1)
    kfn = tp.compile(mlp.build(X[:2], depth=1))
    with pytest.raises(tp.ProgramError, match="dtype must be numpy.float32 or numpy.float64"):
        kfn(X, dtype="float16")
    with pytest.raises(tp.ProgramError, match="device must be one of"):
        kfn(X, device="tpu")
    with pytest.raises(tp.ProgramError, match="device must be one of"):
        tp.compile(mlp.build(X[:2], depth=1), device="cuda")
    with pytest.raises(tp.ProgramError, match="dtype must be numpy.float32 or numpy.float64"):
        tp.compile(mlp.build(X[:2], depth=1), dtype=int)


@pytest.mark.skipif(cupy_available(), reason="CuPy and a GPU are present")
def test_gpu_without_cupy_is_a_clear_error():
    X = unit_rows((3, 3), 1)
    kfn = tp.compile(mlp.build(X[:2], depth=1))
    with pytest.raises(tp.ResourceError, match="device='gpu'"):
        kfn(X, device="gpu")
