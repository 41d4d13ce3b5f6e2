"""tp.validate: the finite-width programs converge to the compiler's limits (docs/theory.md §5).

For the README MLP (relu, erf), the canonical ZDOT program and a program with a MOMENT scalar
(a layernorm), over widths 32…512 with 200 seeds: the per-draw relative error falls like
n^{-1/2} (fitted slope within 0.1 of −1/2) and at the largest width the seed mean is within 4
standard errors of the limit, entry by entry.  A wrong limit (the gradient-independence answer
for the ZDOT program, or a 10% error in an NTK) is caught by the z-score check.
"""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.backends.stats import error_stats, loglog_fit

from ..conftest import build_mlp, layernorm_program

WIDTHS = (32, 64, 128, 256, 512)
SEEDS = 200


def unit_inputs(N=3, d=5, seed=0):
    X = np.random.default_rng(seed).standard_normal((N, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


C_X = np.array([[1.0, 0.3, 0.1], [0.3, 2.0, 0.5], [0.1, 0.5, 1.5]])
SIGMA_W2 = 1.5


def zdot_program():
    """y = W x, z = Wᵀ tanh(y), θ = avg(z·x) → σ_W² E[tanh'(Z^y)] E[(Z^x)²] (TP IIb §3.2)."""
    p = tp.Program("zdot")
    x = p.vector("x", C_X)
    W = p.matrix("W", var=SIGMA_W2)
    z = W.T @ tp.tanh(W @ x)
    (z * x).mean(name="theta")
    return p


def zdot_theta_by_hand():
    """σ_W² E[tanh'(u)] E[x²], u ~ N(0, σ_W² C_ii), by adaptive quadrature (independent of tp)."""
    from scipy.integrate import quad

    def d_tanh(var):
        f = lambda t: np.exp(-t * t / 2) / np.sqrt(2 * np.pi) / np.cosh(np.sqrt(var) * t) ** 2
        return quad(f, -40, 40, epsabs=1e-13, epsrel=1e-13, limit=500)[0]

    return np.array([SIGMA_W2 * d_tanh(SIGMA_W2 * c) * c for c in np.diag(C_X)])


PROGRAMS = {
    "mlp-relu": lambda: build_mlp(unit_inputs(), depth=2, wvar=2.0, bvar=0.1, phi=tp.relu),
    "mlp-erf": lambda: build_mlp(unit_inputs(), depth=2, wvar=2.0, bvar=0.1, phi=tp.erf),
    "zdot": zdot_program,
    "layernorm": lambda: layernorm_program(unit_inputs(), out_bias_var=0.05),
}
EXPECTED = {"mlp-relu": {"nngp", "ntk"}, "mlp-erf": {"nngp", "ntk"}, "zdot": {"scalar:theta"},
            "layernorm": {"nngp", "ntk", "scalar:theta"}}


@pytest.fixture(scope="module")
def reports():
    """One validation sweep per program, shared by the tests below."""
    cache = {}

    def get(name):
        if name not in cache:
            calls = []
            rep = tp.validate(PROGRAMS[name](), widths=WIDTHS, seeds=SEEDS, backend="numpy",
                              seed=1, progress=lambda *a: calls.append(a))
            cache[name] = (rep, calls)
        return cache[name]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_converges_at_rate_one_over_root_n(reports, name):
    rep, calls = reports(name)
    assert set(rep.quantities) == EXPECTED[name]
    assert [c[:2] for c in calls] == [(k + 1, len(WIDTHS)) for k in range(len(WIDTHS))]
    for q in rep.quantities:
        slope, se = rep.slopes[q]
        assert abs(slope + 0.5) < 0.1, (q, slope, se)
        assert 0 < se < 0.05, (q, se)
        last = rep.rows(q)[-1]
        assert last.width == 512 and last.stats.max_z < 4, (q, last.stats)
        errors = [r.stats.draw_error for r in rep.rows(q)]
        assert errors[-1] < errors[0] / 2.5  # 16× the width: ≈ 4× smaller error
    assert rep.passed, rep.to_markdown()


@pytest.mark.slow
def test_zdot_limit_is_not_the_gradient_independence_answer(reports):
    rep, _ = reports("zdot")
    np.testing.assert_allclose(rep.limits["scalar:theta"], zdot_theta_by_hand(), rtol=1e-8)
    assert np.all(rep.limits["scalar:theta"] > 0.3)


def test_wrong_limit_is_caught():
    """The gradient-independence answer θ = 0 fails both the z-score and the slope check."""
    p = zdot_program()
    rep = tp.validate(p, widths=(64, 128, 256), seeds=100, backend="numpy",
                      limits={"scalars": {"theta": np.zeros(3)}})
    assert not rep.passed
    failed = {c.name for c in rep.checks if not c.passed}
    assert any("standard errors" in c for c in failed)
    assert any("n^-1/2" in c for c in failed)
    assert rep.rows("scalar:theta")[-1].stats.max_z > 20
    assert not rep.rows("scalar:theta")[-1].stats.relative  # the limit 0: absolute errors
    assert "FAILED" in rep.to_markdown()


def test_ntk_off_by_ten_percent_is_caught():
    X = unit_inputs()
    p = build_mlp(X, depth=1, wvar=2.0, bvar=0.1, phi=tp.erf)
    T = tp.ntk(p)
    good = tp.validate(p, widths=(64, 128, 256), seeds=150, backend="numpy", quantities=["ntk"])
    bad = tp.validate(p, widths=(64, 128, 256), seeds=150, backend="numpy", quantities=["ntk"],
                      limits={"ntk": 1.1 * T})
    assert good.passed, good.to_markdown()
    z_bad = bad.rows("ntk")[-1].stats.max_z
    assert z_bad > 8 and not bad.passed


def test_report_outputs(tmp_path):
    p = build_mlp(unit_inputs(), depth=1, wvar=2.0, bvar=0.1, phi=tp.relu)
    rep = tp.validate(p, widths=(16, 32, 64), seeds=20, backend="numpy")
    assert isinstance(rep, tp.ValidationReport)
    md = rep.to_markdown()
    assert "| width |" in md and "nngp" in md and "ntk" in md and "slope" in md
    assert len(rep.table) == 6 and rep.table[0].as_dict()["width"] == 16
    assert set(rep.slopes) == {"nngp", "ntk"}
    assert all(c.name and c.detail for c in rep.checks)
    pytest.importorskip("matplotlib")
    out = rep.plot(str(tmp_path / "v.png"))
    assert (tmp_path / "v.png").stat().st_size > 1000 and out.endswith("v.png")


def test_bad_arguments():
    p = zdot_program()
    with pytest.raises(tp.ProgramError, match="no output"):
        tp.validate(p, widths=(8,), seeds=2, quantities=["nngp"])
    with pytest.raises(tp.ProgramError, match="unknown quantity"):
        tp.validate(p, widths=(8,), seeds=2, quantities=["bogus"])
    with pytest.raises(tp.ProgramError, match="width"):
        tp.validate(p, widths=(0, 8), seeds=2)
    with pytest.raises(tp.ProgramError, match="seeds"):
        tp.validate(p, widths=(8,), seeds=0)
    with pytest.raises(tp.ProgramError, match="not validated"):
        tp.validate(p, widths=(8,), seeds=2, limits={"scalar:thta": 1.0})
    q = tp.Program("nothing")
    q.vector("x", np.eye(2))
    with pytest.raises(tp.ProgramError, match="nothing to validate"):
        tp.validate(q, widths=(8,), seeds=2)


# ---------------------------------------------------------------------- the statistics
def test_error_stats_and_fit_on_synthetic_data():
    rng = np.random.default_rng(0)
    L = np.array([[2.0, 1.0], [1.0, 3.0]])
    widths = np.array([32, 64, 128, 256, 512, 1024])
    errs, ses = [], []
    for n in widths:
        samples = L + rng.standard_normal((4000, 2, 2)) / np.sqrt(n)
        s = error_stats(samples, L)
        errs.append(s.draw_error)
        ses.append(s.draw_error_stderr)
        assert s.max_z < 4.5 and s.regime == "noise" and s.relative
        assert s.mean_error < 3 * s.noise_floor
    fit = loglog_fit(widths, errs, ses)
    assert abs(fit.slope + 0.5) < 3 * fit.stderr + 1e-3
    exact = loglog_fit(widths, 3.0 * widths ** -1.0)
    assert abs(exact.slope + 1) < 1e-12 and exact.stderr < 1e-10
    biased = error_stats(L + 0.2 + rng.standard_normal((400, 2, 2)) * 0.01, L)
    assert biased.regime == "bias" and biased.max_z > 100
    assert np.isnan(loglog_fit([8], [0.1]).slope)
