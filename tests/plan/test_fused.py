"""Fused closed-form kernels (:mod:`tensorprog.plan.fused`): the NumPy engine, the numba
kernel and the generic closed forms give one kernel to rounding on every architecture."""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.kernels.ntk import evaluate_term
from tensorprog.kernels.terms import readout_term
from tensorprog.plan import fused
from tensorprog.plan.pairs import PairExecutor
from tests.plan.test_compile import PAIR_LOCAL, _inputs


ENGINES = ("numpy", "numba") if fused.numba_kernel() is not None else ("numpy",)


def _kernels(kfn, X, Y, engine, monkeypatch):
    with monkeypatch.context() as m:
        if engine == "generic":
            m.setattr(PairExecutor, "fused", False)
        else:
            m.setattr(fused, "ENGINE", engine)
        return kfn(X), kfn(Y, X)


@pytest.mark.parametrize("name", sorted(set(PAIR_LOCAL) - {"gru"}))
def test_fused_numpy_and_generic_closed_forms_agree(name, monkeypatch):
    build, shape = PAIR_LOCAL[name]
    X, Y = _inputs(shape, 5, 3), _inputs(shape, 3, 4)
    p = build(X)
    kfn = tp.compile(p)
    ref = _kernels(kfn, X, Y, "generic", monkeypatch)
    K = evaluate_term(readout_term(p), tp.limit(p))       # the limit evaluated on the program
    T = sum(tp.ntk_contributions(p).values())
    for engine in ENGINES:
        out = _kernels(kfn, X, Y, engine, monkeypatch)
        for a, b in zip(out, ref):
            for key in ("nngp", "ntk"):
                np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out[0]["nngp"], K, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out[0]["ntk"], T, rtol=1e-12, atol=1e-14)


def _pair_batch(rng, n):
    """Variances and a covariance of n pairs, with exact zeros and perfect correlations."""
    a, b = rng.uniform(0.1, 3, (n, 1, 1, 1)), rng.uniform(0.1, 3, (1, n, 1, 1))
    a[0], b[0, 1] = 0.0, 0.0                              # zero variances
    c = rng.uniform(-1, 1, (n, n, 1, 1)) * np.sqrt(a * b)
    c[2, 2] = np.sqrt(a[2] * b[0, 2])                     # ρ = 1
    c[3, 3] = -np.sqrt(a[3] * b[0, 3])                    # ρ = −1
    return a, c, b


@pytest.mark.parametrize("kind,powers", [(fused.ORTHANT, [(0, 0)]), (fused.ORTHANT, [(1, 1)]),
                                         (fused.ORTHANT, [(2, 1), (0, 3)]),
                                         (fused.ERF_ERF, []), (fused.STEP_ERF, [])])
def test_pair_kernel_matches_generic_formulas(kind, powers):
    from tensorprog.expectations.closed_forms import erf_erf, orthant_moment, step_erf
    from tensorprog.expectations.arraymath import NUMERIC as m

    S11, S12, S22 = _pair_batch(np.random.default_rng(0), 6)
    if kind == fused.ORTHANT:
        table = np.array([[w, a, b, t, p, q] for a, b in powers
                          for w, t, p, q in fused._j_monomials(a, b)])
        rho = m.if_zero(S11 * S22, 0.0, S12 / m.safe(m.sqrt_prod(S11, S22)))
        ref = sum(orthant_moment(a, b, np.sqrt(S11), np.sqrt(S22), rho, m) for a, b in powers)
    else:
        table = np.zeros((0, 6))
        ref = (erf_erf if kind == fused.ERF_ERF else step_erf)(S11, S12, S22, m)
    shape = (6, 6, 1, 1)
    for engine in ENGINES:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fused, "ENGINE", engine)
            out = fused.pair_kernel(kind, S11, S12, S22, table, shape)
        np.testing.assert_allclose(out, np.broadcast_to(ref, shape), rtol=1e-12, atol=1e-15)


def test_gaussian_form_of_two_atoms():
    """det(I − 2ΣA)^{−1/2} against the dense determinant; NaN where it is infinite."""
    S11, S12, S22 = _pair_batch(np.random.default_rng(1), 5)
    A = [[-1.0, 0.25], [0.25, -0.5]]
    Sigma = np.empty((5, 5, 1, 1, 2, 2))
    Sigma[..., 0, 0], Sigma[..., 0, 1], Sigma[..., 1, 0], Sigma[..., 1, 1] = \
        np.broadcast_arrays(S11, S12, S12, S22)
    ref = np.linalg.det(np.eye(2) - 2 * Sigma @ np.array(A)) ** -0.5
    M = np.eye(2) - 2 * Sigma @ np.diag([0.2, 0.2])
    finite = np.linalg.eigvals(M).real.min(axis=-1) > 0
    assert 0 < finite.sum() < finite.size
    for engine in ENGINES:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fused, "ENGINE", engine)
            np.testing.assert_allclose(fused.gaussian_form2(S11, S12, S22, A), ref, rtol=1e-12)
            out = fused.gaussian_form2(S11, S12, S22, [[0.2, 0.0], [0.0, 0.2]])
        np.testing.assert_array_equal(np.isnan(out), ~finite)
    assert fused.gaussian_form2(S11, 0.0, S22, A) is None
