"""NTK parametrization = kernel gradient descent (TP IIb Thm 5.3): the unrolled program's limit
against tensorprog.predict with the program's own NTK and NNGP; s ∈ (0, 1) and the standard
parametrization as kernel gradient descent from zero outputs."""
import numpy as np
import pytest

import tensorprog as tp

from ..conftest import build_mlp

TRAIN, TEST = [0, 1, 2, 3], [4, 5]
Y = np.array([1.0, -0.5, 0.3, 0.8])
LR, STEPS = 0.5, 3


def inputs():
    return np.random.default_rng(0).standard_normal((6, 3))


def ensemble(p, get_ntk=None, lr=LR, train=TRAIN, test=TEST, y=Y):
    K, Th = tp.nngp(p), (tp.ntk(p) if get_ntk is None else get_ntk(p))
    tr, te = np.ix_(train, train), np.ix_(test, train)
    return tp.predict.gradient_descent_mse_ensemble(
        Th[tr], K[tr], y, steps=np.arange(STEPS + 1), lr=lr, ntk_test_train=Th[te],
        nngp_test_train=K[te], nngp_test_test=K[np.ix_(test, test)])


def assert_kernel_descent(run, p, train=TRAIN, test=TEST, y=Y):
    """The run's limit mean and covariance are kernel gradient descent with ``p``'s NTK and
    NNGP (to 1e-8), and it learns (``train``, ``test``, ``y``: the run's split and targets)."""
    ens = ensemble(p, train=train, test=test, y=y)
    mean, cov = run.mean, run.cov
    assert mean.shape == (STEPS + 1, 6) and cov.shape == (STEPS + 1, 6, 6)
    np.testing.assert_allclose(mean[:, train], ens.mean_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(mean[:, test], ens.mean_test, rtol=0, atol=1e-8)
    np.testing.assert_allclose(cov[:, train][:, :, train], ens.cov_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(cov[:, test][:, :, test], ens.cov_test, rtol=0, atol=1e-8)
    np.testing.assert_allclose(cov[:, test][:, :, train],
                               cov[:, train][:, :, test].transpose(0, 2, 1), rtol=0, atol=1e-12)
    assert np.abs(mean[-1, train] - y).max() < np.abs(y).max()  # it learns


@pytest.mark.parametrize("depth", [0, 1, pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("phi", [tp.relu, tp.erf], ids=["relu", "erf"])
def test_ntk_parametrization_is_kernel_gradient_descent(phi, depth):
    """MLPs with 0, 1 and 2 hidden matrices (2, 3 and 4 trained layers)."""
    p = build_mlp(inputs(), depth=depth, wvar=1.5, bvar=0.1, phi=phi)
    assert_kernel_descent(tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR), p)


def test_intermediate_s_is_kernel_descent_from_zero_outputs():
    """0 < s < 1: the same kernel, deterministic outputs starting at 0 (Yaida §III)."""
    p = build_mlp(inputs(), depth=1, wvar=1.5, bvar=0.1, phi=tp.erf)
    run = tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR, parametrization=tp.yaida(0.5))
    ens = ensemble(p)
    np.testing.assert_allclose(run.mean[:, TRAIN], ens.mean_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(run.mean[:, TEST], ens.mean_test, rtol=0, atol=1e-8)
    assert np.all(run.cov == 0)


def test_ntk_finite_width_mean_and_covariance():
    """Seed mean within 4 standard errors, seed covariance near the limit's."""
    X = inputs()[:3]
    p = tp.Program("one-layer")
    p.output(tp.erf(p.embed(X, var=1.5, bias_var=0.1)), var=1.0, bias_var=0.1)
    run = tp.train(p, [1.0, -0.5], train=[0, 1], steps=2, lr=0.5)
    sim = run.simulate(2048, seeds=400)
    z = np.abs(sim.mean - run.mean) / sim.stderr
    assert z.max() < 4
    assert np.abs(sim.cov - run.cov).max() < 0.15 * np.abs(run.cov).max()


def test_sgd_batches_and_cross_entropy_follow_the_kernel_recursion():
    """s = 1/2, minibatches and the binary cross-entropy: the limit is the kernel recursion
    f_{t+1} = f_t − (η/|B_t|) Θ[:, B_t] ℓ'(f_t[B_t], y) from f_0 = 0."""
    p = build_mlp(inputs(), depth=1, wvar=1.5, bvar=0.1, phi=tp.erf)
    labels = np.array([1.0, 0.0, 1.0, 0.0])
    batches = [[0, 1], [2, 3], [0, 2]]
    run = tp.train(p, labels, train=TRAIN, lr=LR, loss="bce", batches=batches,
                   parametrization=tp.yaida(0.5))
    Th = tp.ntk(p)
    f = np.zeros(6)
    expected = [f]
    for B in batches:
        grad = 1 / (1 + np.exp(-f[B])) - labels[B]
        f = f - LR / len(B) * Th[:, B] @ grad
        expected.append(f)
    np.testing.assert_allclose(run.mean, np.array(expected), rtol=0, atol=1e-8)
