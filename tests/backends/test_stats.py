"""Statistics of convergence (tensorprog/backends/stats.py) on synthetic data with known answers:
the weighted log-log slope and its standard error, and the error statistics of seed samples."""
import math

import numpy as np
import pytest

from tensorprog.backends.stats import error_stats, loglog_fit

WIDTHS = np.array([64, 128, 256, 512, 1024])
X = np.log(WIDTHS)
SXX = np.sum((X - X.mean()) ** 2)


def test_exact_power_law():
    fit = loglog_fit(WIDTHS, 3.0 * WIDTHS ** -0.5)
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(3.0), abs=1e-12)
    assert fit.stderr == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(fit.predict([100, 1000]), 3.0 * np.array([100, 1000]) ** -0.5)


def test_weighted_slope_error_is_the_error_bars_when_the_points_agree_with_them():
    """Equal relative standard errors σ: the slope's standard error is σ/√Sxx (least squares),
    not scaled down when χ²/dof < 1."""
    sigma = 0.05
    wiggle = np.array([0.01, -0.01, 0.0, 0.01, -0.01])  # far inside the error bars
    errors = 2.0 * WIDTHS ** -0.5 * np.exp(wiggle)
    fit = loglog_fit(WIDTHS, errors, sigma * errors)
    assert fit.chi2_dof < 1
    assert fit.stderr == pytest.approx(sigma / math.sqrt(SXX), rel=1e-12)
    assert fit.points == 5


def test_slope_error_grows_when_the_points_scatter_more_than_their_error_bars():
    sigma = 0.01
    wiggle = np.array([0.1, -0.1, 0.0, 0.1, -0.1])
    errors = WIDTHS ** -0.5 * np.exp(wiggle)
    fit = loglog_fit(WIDTHS, errors, sigma * errors)
    # ordinary least squares on the same log errors: the same slope, χ² = RSS/σ²/dof
    beta = np.polyfit(X, np.log(errors), 1)
    rss = np.sum((np.log(errors) - np.polyval(beta, X)) ** 2)
    assert fit.slope == pytest.approx(beta[0], rel=1e-12)
    assert fit.chi2_dof == pytest.approx(rss / sigma**2 / 3, rel=1e-10)
    assert fit.stderr == pytest.approx(sigma / math.sqrt(SXX) * math.sqrt(fit.chi2_dof), rel=1e-10)
    unweighted = loglog_fit(WIDTHS, errors)
    assert unweighted.stderr == pytest.approx(math.sqrt(rss / 3 / SXX), rel=1e-10)


def test_unusable_points_are_left_out():
    errors = WIDTHS ** -1.0
    errors[1] = 0.0
    errors[3] = np.nan
    fit = loglog_fit(WIDTHS, errors)
    assert fit.points == 3 and fit.slope == pytest.approx(-1.0, abs=1e-12)
    assert math.isnan(loglog_fit(WIDTHS[:1], errors[:1]).slope)


def test_error_stats_on_known_samples():
    """Two seeds around a 2×2 limit: every statistic by hand."""
    limit = np.array([[2.0, 0.0], [0.0, 2.0]])
    d1 = np.array([[0.2, 0.1], [0.1, -0.2]])
    d2 = np.array([[0.0, -0.1], [-0.1, 0.2]])
    s = error_stats(np.stack([limit + d1, limit + d2]), limit)
    scale = np.linalg.norm(limit)
    per = [np.linalg.norm(d1) / scale, np.linalg.norm(d2) / scale]
    assert s.relative
    assert s.draw_error == pytest.approx(np.mean(per), rel=1e-14)
    assert s.draw_error_stderr == pytest.approx(np.std(per, ddof=1) / math.sqrt(2), rel=1e-12)
    mean_dev = (d1 + d2) / 2
    assert s.mean_error == pytest.approx(np.linalg.norm(mean_dev) / scale, rel=1e-14)
    var = np.var(np.stack([d1, d2]), axis=0, ddof=1)
    assert s.noise_floor == pytest.approx(math.sqrt(var.sum() / 2) / scale, rel=1e-12)
    z = np.abs(mean_dev) / np.sqrt(var / 2)
    assert s.max_z == pytest.approx(z.max(), rel=1e-12)
    assert s.regime == "noise"


def test_error_stats_absolute_against_a_zero_limit_and_bias_regime():
    rng = np.random.default_rng(0)
    samples = 0.3 + 0.01 * rng.standard_normal((400, 3))
    s = error_stats(samples, np.zeros(3))
    assert not s.relative
    assert s.mean_error == pytest.approx(np.linalg.norm(samples.mean(0)), rel=1e-14)
    assert s.regime == "bias" and s.max_z > 100
