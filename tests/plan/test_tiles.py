"""Tiled compiled kernels: the same numbers as the whole kernel, each off-diagonal tile of a
symmetric kernel computed once, and the same tiles on a Dask cluster."""
import numpy as np
import pytest

import tensorprog as tp
from programs import cnn, mlp
from tensorprog.plan.tiles import auto_batch_size, tiles
from tests.helpers import unit_rows


@pytest.fixture(scope="module")
def kfn():
    return tp.compile(mlp.build(unit_rows((2, 5)), depth=3))


def test_tiles_cover_the_kernel_once():
    sym = tiles(10, None, 4)
    assert len(sym) == 6 and sum(s for *_, s in sym) == 3
    assert len(tiles(10, 7, 4)) == 6


def test_tiled_kernels_equal_whole_kernels(kfn):
    X, Y = unit_rows((23, 5), 1), unit_rows((9, 5), 2)
    calls = []
    whole, tiled = kfn(X), kfn(X, batch_size=5, progress=lambda *a: calls.append(a))
    assert len(calls) == 15  # 5 row blocks: 5 diagonal tiles and 10 above the diagonal
    for key in whole:
        np.testing.assert_allclose(tiled[key], whole[key], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(tiled[key], tiled[key].T)
    cross, cross_tiled = kfn(Y, X, get="ntk"), kfn(Y, X, get="ntk", batch_size=4)
    np.testing.assert_allclose(cross_tiled, cross, rtol=0, atol=1e-12)
    with pytest.raises(tp.ProgramError, match="batch_size"):
        kfn(X, batch_size=0)


def test_tiled_cnn_kernel():
    build = lambda X: cnn.build(X, depth=2)
    X = unit_rows((7, 4, 2), 3)
    kfn = tp.compile(build(X[:2]))
    np.testing.assert_allclose(kfn(X, batch_size=3, get="ntk"), kfn(X, get="ntk"),
                               rtol=0, atol=1e-12)


def test_threads_do_not_change_the_kernel(kfn):
    """Tiles on a pool of threads: the same numbers, bit for bit, as one tile after another
    (results are assembled in tile order; each tile's arithmetic is its own)."""
    X, Y = unit_rows((17, 5), 5), unit_rows((6, 5), 6)
    for args in ((X,), (Y, X)):
        one = kfn(*args, batch_size=4, threads=1)
        three = kfn(*args, batch_size=4, threads=3)
        for key in one:
            np.testing.assert_array_equal(three[key], one[key])
    with pytest.raises(tp.ProgramError, match="threads"):
        kfn(X, batch_size=4, threads=0)


def test_automatic_batch_size():
    assert auto_batch_size(100, 50, 50, budget=10**9) == 50
    b = auto_batch_size(100, 10**5, 10**5, budget=8 * 100 * 400)
    assert b == 20


def test_dask_local_cluster_is_bit_identical(kfn):
    distributed = pytest.importorskip("dask.distributed")
    X = unit_rows((12, 5), 4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = kfn(X, batch_size=5, client=client)
    local = kfn(X, batch_size=5)
    for key in local:
        np.testing.assert_array_equal(remote[key], local[key])
