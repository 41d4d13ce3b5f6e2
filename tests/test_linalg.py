"""PSD factorisations (tensorprog/linalg.py): factors reproduce their covariance on its rank,
negative eigenvalues raise or are tolerated as estimation noise, batches and projections."""
import numpy as np
import pytest

from tensorprog.errors import ExpectationError, NotPositiveSemidefinite
from tensorprog.linalg import eigen_sqrt, is_not_psd, nearest_psd, psd_factor, whiten


def low_rank(m, r, seed=0):
    A = np.random.default_rng(seed).standard_normal((m, r))
    return A @ A.T


def test_psd_factor_reproduces_a_low_rank_covariance():
    C = low_rank(6, 3)
    G = psd_factor(C, 1e-12)
    assert G.shape == (6, 3)
    np.testing.assert_allclose(G @ G.T, C, atol=1e-12)


def test_psd_factor_floor_and_symmetrize():
    C = 1e-14 * low_rank(4, 4)            # every eigenvalue below 1e-12 · max(largest, 1)
    assert psd_factor(C, 1e-12, floor=1.0).shape == (4, 0)
    assert psd_factor(C, 1e-12).shape == (4, 4)
    A = low_rank(4, 2)
    skew = A + 1e-9 * np.triu(np.ones((4, 4)), 1)
    G = psd_factor(skew, 1e-12, symmetrize=True)
    np.testing.assert_allclose(G @ G.T, (skew + skew.T) / 2, atol=1e-12)
    assert psd_factor(np.zeros((0, 0)), 1e-12).shape == (0, 0)


def test_negative_eigenvalues_raise_or_count_as_noise():
    C = np.diag([1.0, -0.005])
    G = psd_factor(C, 1e-13, rtol_negative=1e-2)              # estimation noise: dropped
    np.testing.assert_allclose(G @ G.T, np.diag([1.0, 0.0]))
    with pytest.raises(NotPositiveSemidefinite, match="atoms a, b"):
        psd_factor(np.diag([1.0, -0.05]), 1e-13, rtol_negative=1e-2,
                   describe=lambda low, top: f"atoms a, b: {low} against {top}")
    with pytest.raises(ExpectationError, match="not positive semidefinite"):
        psd_factor(np.diag([1.0, -0.05]), 1e-13, rtol_negative=1e-2)
    assert is_not_psd(np.array([-1.0, -0.5]), 1e-2)
    assert not is_not_psd(np.array([0.0, 0.0]), 1e-2)


def test_whiten_batches_to_the_largest_rank():
    S = np.stack([low_rank(3, 1, 1), low_rank(3, 2, 2)])
    G, r = whiten(S)
    assert r == 2 and G.shape == (2, 3, 2)
    np.testing.assert_allclose(G @ np.swapaxes(G, -1, -2), S, atol=1e-12)
    with pytest.raises(NotPositiveSemidefinite):
        whiten(np.diag([1.0, -1e-3])[None])


def test_eigen_sqrt_and_its_pseudo_inverse():
    C = np.stack([low_rank(4, 2, 3), low_rank(4, 4, 4)])
    U, sq, isq = eigen_sqrt(C)
    np.testing.assert_allclose((U * sq[:, None, :] ** 2) @ np.swapaxes(U, -1, -2), C, atol=1e-12)
    assert np.sum(sq[0] > 0) == 2
    np.testing.assert_array_equal(sq * isq > 0.5, sq > 0)
    np.testing.assert_allclose((sq * isq)[sq > 0], 1.0)


def test_nearest_psd_clips_negative_eigenvalues_only():
    C = low_rank(3, 3, 5)
    np.testing.assert_allclose(nearest_psd(C), C, atol=1e-12)
    V = np.linalg.qr(np.random.default_rng(6).standard_normal((3, 3)))[0]
    B = V @ np.diag([-0.1, 0.5, 2.0]) @ V.T
    np.testing.assert_allclose(nearest_psd(B[None])[0], V @ np.diag([0.0, 0.5, 2.0]) @ V.T,
                               atol=1e-12)
