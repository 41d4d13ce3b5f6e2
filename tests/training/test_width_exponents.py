"""Finite width against the limit across Yaida's family: the width exponent of the feature
movement after one step, −(1−s)/2 for the RMS movement √(‖x₁ − x₀‖²/n) (the per-coordinate
size of the update, Yaida §III); the NTK limit started from a network's own initial outputs
(TP IIb App. D.1.1) against the kernel prediction and as the per-draw reference of validate;
muP on an MLP with two hidden matrices.  Fixed seeds; tolerances from standard errors."""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.backends.stats import loglog_fit
from tensorprog.errors import TrainingError

from ..conftest import build_mlp
from .test_parametrization import snippet

WIDTHS = [256, 1024, 4096]


@pytest.mark.parametrize("s", [0.0, 0.5, 1.0])
def test_feature_movement_width_exponent_is_minus_half_of_one_minus_s(s):
    run = tp.train(snippet(), [1.0], train=[0], steps=1, lr=1.0, parametrization=tp.yaida(s))
    means, ses = [], []
    for n in WIDTHS:
        rms = np.sqrt(run.feature_change("x1", width=n, seeds=256, seed=7).samples[:, 1, 0])
        means.append(rms.mean())
        ses.append(rms.std(ddof=1) / np.sqrt(rms.size))
    fit = loglog_fit(WIDTHS, means, ses)
    assert fit.stderr < 0.035                        # resolves the ±0.07 of the study
    assert abs(fit.slope + (1 - s) / 2) < 4 * fit.stderr


def test_ntk_limit_given_initial_outputs_is_kernel_descent_from_them():
    """f_t = mean_t + (I + J_t) f_0 is tp.predict's one-network kernel descent from f_0."""
    X = np.array([[0.7, -1.1, 0.4], [0.2, 0.9, -0.5], [1.0, 0.3, 0.2]])
    p = tp.Program("one-layer")
    p.output(tp.erf(p.embed(X, var=1.5, bias_var=0.1)), var=1.0, bias_var=0.1)
    y, steps = np.array([1.0, -0.5]), [0, 1, 2, 3]
    run = tp.train(p, y, train=[0, 1], steps=3, lr=0.5)
    f0 = np.array([[0.3, -0.2, 0.7], [-1.1, 0.4, 0.05]])
    got = run.mean_given(f0)
    assert got.shape == (2, 4, 3)
    Th = tp.ntk(p)
    for g, f in zip(got, f0):
        tr, te = tp.predict.gradient_descent_mse(
            Th[:2, :2], y, steps=steps, lr=0.5, fx_train_0=f[:2], fx_test_0=f[2:],
            ntk_test_train=Th[2:, :2])
        np.testing.assert_allclose(g[:, :2], tr, rtol=0, atol=1e-10)
        np.testing.assert_allclose(g[:, 2:], te, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(run.mean_given(np.zeros(3)), run.mean)
    half = tp.train(p, y, train=[0, 1], steps=3, lr=0.5, parametrization=tp.yaida(0.5))
    np.testing.assert_array_equal(half.mean_given(f0), np.stack([half.mean] * 2))
    with pytest.raises(TrainingError, match=r"shape \(3,\) or \(S, 3\)"):
        run.mean_given(np.zeros(2))


def test_ntk_validate_compares_each_draw_with_the_limit_from_its_own_outputs():
    run = tp.train(snippet(), [1.0], train=[0], steps=2, lr=1.0)
    report = run.validate(widths=WIDTHS, seeds=[48, 48, 24])
    assert [len(r.samples) for r in report.runs] == [48, 48, 24]
    assert report.passed
    assert abs(report.slope.slope + 0.5) < 4 * report.slope.stderr
    with pytest.raises(TrainingError, match="one per width"):
        run.validate(widths=WIDTHS, seeds=[8, 8])


def test_intermediate_s_converges_like_n_to_the_minus_quarter():
    """0 < s < 1: initial outputs n^{-s/2}, feature movement n^{-(1−s)/2}: per-draw error
    ∝ n^{-min(s, 1−s)/2}, −1/4 at s = 1/2."""
    run = tp.train(snippet(), [1.0], train=[0], steps=2, lr=1.0, parametrization=tp.yaida(0.5))
    report = run.validate(widths=WIDTHS, seeds=64)
    assert report.expected_slope == -0.25 and "(−0.25 expected)" in report.to_markdown()
    assert abs(report.slope.slope + 0.25) < 4 * report.slope.stderr
    assert report.slope.slope + 0.5 > 4 * report.slope.stderr     # not n^{-1/2}


def test_mup_mlp_features_move_by_order_one_and_finite_widths_converge():
    """Two hidden matrices, tanh, muP, one step: ‖x₁ − x₀‖²/n of the middle hidden vector is
    Θ(1) in the limit and at width 1024; the per-draw error falls like n^{-1/2}."""
    X = np.random.default_rng(1).standard_normal((2, 3))
    p = build_mlp(X, depth=2, wvar=1.5, bvar=0.1, phi=tp.tanh, bias=False)
    run = tp.train(p, [1.0], train=[0], steps=1, lr=1.0, parametrization=tp.mup())
    lim = run.feature_change("x2")
    assert lim[0].max() == 0 and lim[1, 0] > 0.1 and lim[1, 1] > 0.01   # train, test input
    report = run.validate(widths=[256, 512, 1024], seeds=32, seed=3, record=["x2"])
    fin = report.runs[-1].movement("x2")[:, 1]
    se = fin.std(axis=0, ddof=1) / np.sqrt(len(fin))
    assert np.all(np.abs(fin.mean(axis=0) - lim[1]) < 4 * np.sqrt(se ** 2 + run.limit_error ** 2))
    assert report.passed
    assert report.slope.stderr < 0.1
    assert abs(report.slope.slope + 0.5) < 4 * report.slope.stderr
    with pytest.raises(TrainingError, match="was not recorded"):
        report.runs[0].movement("x1")
    with pytest.raises(TrainingError, match="not a vector"):
        run.simulate(64, seeds=2, record=["W1"])
