"""The Monte-Carlo tier of the limit: joint draws of whole atom families (limit/sampling.py).

Estimates are checked against closed forms through their reported standard errors: a z-score
per kernel entry, with thresholds for a t-distribution with REPLICAS − 1 = 15 degrees of
freedom (P(|t| > 7) ≈ 5e-6 per entry), and a calibration check that the errors are not
inflated either (the RMS z-score of unbiased estimates is ≈ 1.07)."""
import numpy as np
import pytest
import sympy as sp

import tensorprog as tp
from tensorprog.errors import ExpectationError
from tensorprog.expectations import expect
from tensorprog.expectations.engine import NeedsMonteCarlo
from tensorprog.limit.atoms import Base, LeafTable
from tensorprog.limit.sampling import JointSampler

from programs import attention, autoencoder, cnn, hypernet, layernorm, resnet, rnn

from ..conftest import build_mlp
from ..kernels.reference import mlp_kernels


@pytest.fixture(scope="module")
def mlp40():
    X = np.random.default_rng(5).standard_normal((40, 3))
    p = build_mlp(X, depth=2, wvar=2.0, bvar=0.1, phi=tp.erf)
    return X, p


def zscores(estimate, exact, err):
    iu = np.triu_indices(len(exact))
    return (estimate - exact)[iu] / err[iu]


def test_joint_estimate_matches_the_closed_form_within_its_standard_error(mlp40):
    X, p = mlp40
    exact = mlp_kernels(X, 2, 2.0, 0.1, "erf")[0]
    lim = tp.limit(p, tier="montecarlo")
    K = 2.0 * lim.cov(p.readout.node) + 0.1
    sampler = lim._joint
    ea = lim.z[p.readout.node]
    _, err = sampler.pair(ea, 40, ea, 40)
    z = zscores(K, exact, 2.0 * err)
    assert np.abs(z).max() < 7
    assert 0.5 < np.sqrt(np.mean(z ** 2)) < 2.0
    assert lim.tiers_used == {"montecarlo"} and lim.max_error == pytest.approx(err.max())
    # the same test rejects a kernel off by 1%
    assert np.abs(zscores(K, 1.01 * exact, 2.0 * err)).max() > 7
    # a Gram of joint draws: positive semidefinite whatever the noise
    assert np.linalg.eigvalsh(K - 0.1)[0] > -1e-12


def test_joint_means_of_a_family(mlp40):
    """Single expectations (MOMENTs, means) use the same draws."""
    _, p = mlp40
    lim = tp.limit(p, tier="montecarlo")
    h = p.readout.node
    auto = tp.limit(p)
    mean, err = lim._joint.single(lim.z[h] ** 2, 40)
    np.testing.assert_allclose(np.diag(auto.cov(h)), np.diag(lim.cov(h)), atol=7 * err.max())
    assert np.abs((mean - np.diag(auto.cov(h))) / err).max() < 7


def test_auto_tier_samples_only_what_quadrature_cannot_do():
    """An MLP stays exact; a GRU over two steps (eight atoms per input pair) is sampled."""
    from programs.gru import build

    X = np.random.default_rng(1).standard_normal((3, 2, 2))
    mlp = tp.limit(build_mlp(X.reshape(3, 4)))
    mlp.cov(mlp.program.readout.node)
    assert "montecarlo" not in mlp.tiers_used
    gru = tp.limit(build(X))
    gru.cov(gru.program.readout.node)
    assert {"quadrature", "montecarlo"} <= gru.tiers_used and 0 < gru.max_error < 1e-3


def test_engine_defers_high_dimensional_factors_when_asked():
    u, v, w, x = sp.symbols("u v w x", real=True)
    C = np.eye(4) + 0.3
    expr = sp.tanh(u) * sp.tanh(v) * sp.tanh(w) * sp.tanh(x + u)
    with pytest.raises(NeedsMonteCarlo):
        expect(expr, (u, v, w, x), C, montecarlo=False)
    assert expect(expr, (u, v, w, x), C).tier == "montecarlo"
    # three linear forms: quadrature, nothing deferred
    low = expect(sp.tanh(u + v) * sp.tanh(w) * sp.tanh(x), (u, v, w, x), C, montecarlo=False)
    assert low.tier == "quadrature"


def test_too_large_a_family_is_a_resource_error(monkeypatch):
    from tensorprog.limit import sampling

    table = LeafTable()
    a = table.add_base(Base("a", "init", 3, "Z^{a}", "init", "a"))
    sampler = JointSampler(table, lambda s, t: np.eye(3))
    monkeypatch.setattr(sampling, "MAX_GROUP_DIMENSION", 2)
    with pytest.raises(tp.ResourceError, match=r"3 jointly Gaussian coordinates.*fewer inputs"):
        sampler.single(table.natural(a, 3) ** 2, 3)


def test_badly_indefinite_joint_covariance_is_an_error():
    """Estimated blocks may be indefinite by their noise (projected); far beyond it is a bug
    upstream and is reported, naming the atoms."""
    table = LeafTable()
    a = table.add_base(Base("a", "init", 2, "Z^{a}", "init", "a"))
    b = table.add_base(Base("b", "init", 2, "Z^{b}", "init", "b"))
    blocks = {("a", "a"): np.eye(2), ("b", "b"): np.eye(2), ("a", "b"): 2.0 * np.eye(2)}
    sampler = JointSampler(table, lambda s, t: blocks[(s.key, t.key)])
    expr = table.natural(a, 2) * table.natural(b, 2)
    with pytest.raises(ExpectationError, match=r"Z\^\{a\}, Z\^\{b\}.*not positive semidefinite"):
        sampler.single(expr, 2)
    blocks[("a", "b")] = (1 + 1e-4) * np.eye(2)  # within estimation noise: projected
    value, err = sampler.single(expr, 2)
    np.testing.assert_allclose(value, 1.0, atol=7 * err.max() + 1e-3)


ARCHITECTURES = {
    "resnet": lambda r: resnet.build(r.standard_normal((5, 3)), blocks=2, wvar=2.0, bvar=0.1),
    "cnn": lambda r: cnn.build(r.standard_normal((3, 4, 2)), depth=1, filter_size=3,
                               padding="zero", readout="flatten", wvar=2.0, bvar=0.1),
    "rnn": lambda r: rnn.build(r.standard_normal((4, 3, 2))),
    "layernorm": lambda r: layernorm.build(r.standard_normal((4, 3))),
    "attention": lambda r: attention.build(r.standard_normal((3, 3, 2))),
    "autoencoder": lambda r: autoencoder.build(r.standard_normal((4, 3))),
    "hypernet": lambda r: hypernet.build(r.standard_normal((4, 3)), r.standard_normal((4, 2)),
                                         2, 2),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_sampled_agrees_with_its_exact_limit(name):
    """The whole derivation by joint sampling (tier="montecarlo": families of positions and
    tokens, MOMENTs, ZDOT terms, generated matrices) against the exact/quadrature one.  The
    readout covariance carries the noise of every sampled expectation upstream, so it is
    compared with the largest standard error of the derivation (max_error), not its own."""
    p = ARCHITECTURES[name](np.random.default_rng(0))
    exact = tp.limit(p).cov(p.readout.node)
    lim = tp.limit(p, tier="montecarlo")
    sampled = lim.cov(p.readout.node)
    assert lim.tiers_used == {"montecarlo"} and lim.max_error > 0
    assert np.abs(sampled - exact).max() < 7 * lim.max_error
