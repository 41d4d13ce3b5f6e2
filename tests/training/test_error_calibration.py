"""The Monte-Carlo tier's error bars are calibrated on the training limit.

In the kernel regime every expectation of the unrolled program has a closed form.  The limit is
evaluated with ``tier="montecarlo"`` (every expectation sampled by joint draws) and each sampled
expectation is compared with the closed form (or adaptive quadrature) of the *same* expectation:
the same atoms and the same covariances, themselves sampled upstream.  Expectations whose
reference would itself need sampling are left out.  ``z = (estimate − exact) / error`` with
``error`` the standard error the evaluator reports for that entry (``cov_error``, the
``max_error`` bookkeeping).  With R replicas the z-scores follow Student's t with R − 1 degrees
of freedom; their RMS and maximum must be what that distribution gives for the number of
entries, and a deliberately wrong exact value must fail the same check.
"""
import numpy as np
import pytest
from scipy import stats

import tensorprog as tp
from tensorprog.limit.sampling import REPLICAS
from tensorprog.training.evaluation import TrainingLimit

from ..conftest import build_mlp

TRAIN, Y = [0, 1, 2, 3], np.array([1.0, -0.5, 0.3, 0.8])


class PairedLimit(TrainingLimit):
    """The training limit sampled, recording every sampled expectation with its reported
    standard error and the closed form of the same expectation on the same inputs."""

    def __init__(self, program):
        self.records = []
        super().__init__(program, tier="montecarlo")

    def _paired(self, compute):
        outer = self.tier  # an upstream covariance may be computed inside either call
        self.tier = "auto"
        exact = compute()
        exact_error = np.broadcast_to(self._last_error, np.shape(exact))
        self.tier = "montecarlo"
        value = compute()  # last, so that the evaluator keeps the sampled error
        error = np.broadcast_to(self._last_error, np.shape(value))
        self.tier = outer
        self.records.append((value, error, exact, exact_error))
        return value

    def expect_single(self, expr, m):
        return self._paired(lambda: super(PairedLimit, self).expect_single(expr, m))

    def _expect_singles(self, exprs, m):  # one by one, to keep each expectation's error
        return [self.expect_single(e, m) for e in exprs]

    def expect_pair(self, ea, ma, eb, mb):
        return self._paired(lambda: super(PairedLimit, self).expect_pair(ea, ma, eb, mb))


def sampled_limit(steps=1):
    X = np.random.default_rng(3).standard_normal((7, 3))
    p = build_mlp(X, depth=1, wvar=1.5, bvar=0.1, phi=tp.relu)
    run = tp.train(p, Y, train=TRAIN, steps=steps, lr=0.5, parametrization=tp.yaida(0.5))
    return PairedLimit(run.unrolled.program)


def z_scores(records, shift=0.0):
    """z of every sampled entry (exact values moved by ``shift`` reported errors)."""
    zs = []
    for record in records:
        value, error, exact, exact_error = (np.asarray(a, dtype=float) for a in record)
        if np.any(exact_error > 1e-3 * error):
            continue  # the reference itself needed sampling: not an exact case
        if value.ndim == 2 and value.shape[0] == value.shape[1] and np.all(value == value.T):
            upper = np.triu_indices(len(value))  # a kernel: each pair once
            value, error, exact = value[upper], error[upper], exact[upper]
        sampled = error > 0
        # entries without sampling error are deterministic: the estimate is the exact value
        np.testing.assert_allclose(value[~sampled], exact[~sampled], rtol=1e-12, atol=1e-12)
        zs.append(((value - exact - shift * error)[sampled] / error[sampled]).ravel())
    return np.concatenate(zs)


def calibrated(z) -> bool:
    """RMS and max |z| within what Student's t with R − 1 degrees of freedom gives for
    ``len(z)`` entries (RMS: the t variance ± 4 standard errors of a mean of z²; max: the
    two-sided 1e-3 quantile after a Bonferroni correction)."""
    df, n = REPLICAS - 1, len(z)
    var = df / (df - 2)
    sd = np.sqrt(3 * df ** 2 / ((df - 2) * (df - 4)) - var ** 2) / np.sqrt(n)
    top = stats.t.ppf(1 - 1e-3 / (2 * n), df)
    ms = np.mean(z ** 2)
    return bool(var - 4 * sd < ms < var + 4 * sd and np.max(np.abs(z)) < top)


@pytest.fixture(scope="module")
def records():
    return sampled_limit().records


def test_sampled_expectations_have_calibrated_error_bars(records):
    z = z_scores(records)
    assert len(z) > 100
    assert calibrated(z), (len(z), np.sqrt(np.mean(z ** 2)), np.max(np.abs(z)))


@pytest.mark.parametrize("shift", [1.0, -1.0])
def test_a_wrong_exact_value_is_rejected(records, shift):
    assert not calibrated(z_scores(records, shift=shift))
