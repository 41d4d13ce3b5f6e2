"""Kernel predictions (tensorprog.predict) against direct dense implementations (solve, expm,
step-by-step loops), high-precision references on ill-conditioned and singular kernels, and a
Monte Carlo over initialisations of a linear model whose kernels are known exactly."""
import warnings

import mpmath as mp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

import tensorprog as tp
from tensorprog.errors import LearningRateWarning, PredictionError

from .conftest import build_mlp

P = tp.predict
M, N = 6, 3          # training and test points of the synthetic kernels
TIMES = np.array([0.0, 0.3, 2.0, 11.0])


def joint_kernels(seed=0, m=M, n=N, width=40):
    """Jointly PSD (m + n)-point NTK and NNGP from random features; well conditioned on the
    first m points.  Returns the blocks and the feature matrices."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m + n, width))
    B = rng.standard_normal((m + n, width))
    Th, K = A @ A.T / width, B @ B.T / width + 0.2
    tr, te = slice(0, m), slice(m, m + n)
    return dict(ntk_tt=Th[tr, tr], ntk_xt=Th[te, tr], nngp_tt=K[tr, tr], nngp_xt=K[te, tr],
                nngp_xx=K[te, te], ntk_full=Th, nngp_full=K)


@pytest.fixture
def kern():
    return joint_kernels()


@pytest.fixture
def targets():
    rng = np.random.default_rng(1)
    return rng.standard_normal(M), rng.standard_normal(M), rng.standard_normal(N)


def flow_by_expm(Th_full, m, y, f0, t, lr):
    """Outputs on all points at time t of df/dt = −(η/m) Θ(·, X)(f(X) − y), by expm of the
    augmented linear system (no inverse of Θ)."""
    n_all = len(Th_full)
    A = np.zeros((n_all + 1, n_all + 1))
    A[:n_all, :m] = -lr / m * Th_full[:, :m]
    A[:n_all, -1] = lr / m * Th_full[:, :m] @ y
    state = np.append(f0, 1.0)
    return (scipy.linalg.expm(A * t) @ state)[:n_all]


def gd_loop(Th_full, m, y, f0, steps, lr):
    """Explicit gradient-descent loop f ← f − (η/m) Θ(·, X)(f(X) − y) on all points."""
    f = f0.copy()
    out = [f.copy()]
    for _ in range(steps):
        f = f - lr / m * Th_full[:, :m] @ (f[:m] - y)
        out.append(f.copy())
    return np.array(out)


# --- Bayesian inference ----------------------------------------------------------------------

@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_gp_inference_matches_solve(kern, targets, noise):
    y = np.stack([targets[0], targets[1]], axis=1)          # two output columns
    Kr = kern["nngp_tt"] + noise * np.eye(M)
    mean_ref = kern["nngp_xt"] @ np.linalg.solve(Kr, y)
    cov_ref = kern["nngp_xx"] - kern["nngp_xt"] @ np.linalg.solve(Kr, kern["nngp_xt"].T)
    post = P.gp_inference(kern["nngp_tt"], y, kern["nngp_xt"], kern["nngp_xx"], diag_reg=noise)
    np.testing.assert_allclose(post.mean, mean_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(post.cov, cov_ref, rtol=0, atol=1e-10)
    diag = P.gp_inference(kern["nngp_tt"], y, kern["nngp_xt"], np.diag(kern["nngp_xx"]),
                          diag_reg=noise)
    np.testing.assert_allclose(diag.cov, np.diag(cov_ref), rtol=0, atol=1e-10)
    assert P.gp_inference(kern["nngp_tt"], y[:, 0], kern["nngp_xt"]).cov is None


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_log_marginal_likelihood_matches_scipy(kern, targets, noise):
    Kr = kern["nngp_tt"] + noise * np.eye(M)
    one = scipy.stats.multivariate_normal(np.zeros(M), Kr).logpdf
    got = P.log_marginal_likelihood(kern["nngp_tt"], targets[0], diag_reg=noise)
    assert abs(got - one(targets[0])) < 1e-10
    both = P.log_marginal_likelihood(kern["nngp_tt"], np.stack(targets[:2], 1), diag_reg=noise)
    assert abs(both - one(targets[0]) - one(targets[1])) < 1e-10


# --- gradient descent from given initial outputs ---------------------------------------------

@pytest.mark.parametrize("lr", [1.0, 0.7])
def test_gradient_flow_matches_expm(kern, targets, lr):
    y, f0, fx0 = targets
    tr, te = P.gradient_descent_mse(kern["ntk_tt"], y, TIMES, lr=lr, fx_train_0=f0,
                                    fx_test_0=fx0, ntk_test_train=kern["ntk_xt"])
    assert tr.shape == (len(TIMES), M) and te.shape == (len(TIMES), N)
    for i, t in enumerate(TIMES):
        ref = flow_by_expm(kern["ntk_full"], M, y, np.concatenate([f0, fx0]), t, lr)
        np.testing.assert_allclose(tr[i], ref[:M], rtol=0, atol=1e-10)
        np.testing.assert_allclose(te[i], ref[M:], rtol=0, atol=1e-10)


@pytest.mark.parametrize("frac", [0.3, 0.95])
def test_gradient_descent_steps_match_loop(kern, targets, frac):
    y, f0, fx0 = targets
    lr = frac * P.max_learning_rate(kern["ntk_tt"])
    steps = np.array([0, 1, 2, 5, 17])
    tr, te = P.gradient_descent_mse(kern["ntk_tt"], y, steps=steps, lr=lr, fx_train_0=f0,
                                    fx_test_0=fx0, ntk_test_train=kern["ntk_xt"])
    ref = gd_loop(kern["ntk_full"], M, y, np.concatenate([f0, fx0]), 17, lr)[steps]
    np.testing.assert_allclose(tr, ref[:, :M], rtol=0, atol=1e-10)
    np.testing.assert_allclose(te, ref[:, M:], rtol=0, atol=1e-10)


def test_gradient_descent_in_catapult_band_warns_and_matches_loop(kern, targets):
    y, f0, fx0 = targets
    lr = 1.5 * P.max_learning_rate(kern["ntk_tt"])          # 3m/λ_max
    with pytest.warns(LearningRateWarning, match="2m/λ_max"):
        tr, te = P.gradient_descent_mse(kern["ntk_tt"], y, steps=[0, 3, 6], lr=lr,
                                        fx_train_0=f0, fx_test_0=fx0,
                                        ntk_test_train=kern["ntk_xt"])
    ref = gd_loop(kern["ntk_full"], M, y, np.concatenate([f0, fx0]), 6, lr)[[0, 3, 6]]
    scale = np.abs(ref).max()
    np.testing.assert_allclose(tr, ref[:, :M], rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(te, ref[:, M:], rtol=0, atol=1e-10 * scale)


def test_output_columns_train_independently_and_test_blocks_are_optional(kern, targets):
    """Several output columns give the columns' separate predictions; without the test×test
    block the ensemble still gives every mean (its test covariance is then None)."""
    y, f0, fx0 = targets
    Y, F0 = np.stack([y, f0], 1), np.stack([f0, y], 1)
    tr, te = P.gradient_descent_mse(kern["ntk_tt"], Y, [0.5, 3.0], fx_train_0=F0,
                                    fx_test_0=0.0, ntk_test_train=kern["ntk_xt"])
    assert tr.shape == (2, M, 2) and te.shape == (2, N, 2)
    for c in range(2):
        tr_c, te_c = P.gradient_descent_mse(kern["ntk_tt"], Y[:, c], [0.5, 3.0],
                                            fx_train_0=F0[:, c], ntk_test_train=kern["ntk_xt"])
        np.testing.assert_allclose(tr[..., c], tr_c, rtol=0, atol=1e-14)
        np.testing.assert_allclose(te[..., c], te_c, rtol=0, atol=1e-14)
    ens = P.gradient_descent_mse_ensemble(kern["ntk_tt"], kern["nngp_tt"], Y, 2.0,
                                          ntk_test_train=kern["ntk_xt"],
                                          nngp_test_train=kern["nngp_xt"])
    full = P.gradient_descent_mse_ensemble(kern["ntk_tt"], kern["nngp_tt"], y, 2.0,
                                           ntk_test_train=kern["ntk_xt"],
                                           nngp_test_train=kern["nngp_xt"],
                                           nngp_test_test=kern["nngp_xx"])
    assert ens.cov_test is None and ens.mean_test.shape == (N, 2)
    np.testing.assert_allclose(ens.mean_test[:, 0], full.mean_test, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ens.cov_train, full.cov_train, rtol=0, atol=1e-14)


def test_time_zero_gives_initial_outputs(kern, targets):
    y, f0, fx0 = targets
    for kw in ({"t": 0.0}, {"steps": 0}):
        tr, te = P.gradient_descent_mse(kern["ntk_tt"], y, fx_train_0=f0, fx_test_0=fx0,
                                        ntk_test_train=kern["ntk_xt"], **kw)
        np.testing.assert_array_equal(tr, f0)
        np.testing.assert_array_equal(te, fx0)
    ens = P.gradient_descent_mse_ensemble(kern["ntk_tt"], kern["nngp_tt"], y, 0.0,
                                          ntk_test_train=kern["ntk_xt"],
                                          nngp_test_train=kern["nngp_xt"],
                                          nngp_test_test=kern["nngp_xx"])
    np.testing.assert_array_equal(ens.mean_train, 0.0)
    np.testing.assert_array_equal(ens.mean_test, 0.0)
    np.testing.assert_allclose(ens.cov_train, kern["nngp_tt"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(ens.cov_test, kern["nngp_xx"], rtol=0, atol=1e-14)


def test_infinite_time_is_kernel_regression(kern, targets):
    y, f0, fx0 = targets
    Th, Tx = kern["ntk_tt"], kern["ntk_xt"]
    ref_test = fx0 - Tx @ np.linalg.solve(Th, f0 - y)
    tr, te = P.gradient_descent_mse(Th, y, np.inf, fx_train_0=f0, fx_test_0=fx0,
                                    ntk_test_train=Tx)
    np.testing.assert_allclose(tr, y, rtol=0, atol=1e-10)
    np.testing.assert_allclose(te, ref_test, rtol=0, atol=1e-10)
    # a long finite time converges to it: the slowest mode decays like e^{-λ_min t/m}
    lam_min = np.linalg.eigvalsh(Th)[0]
    t_long = 40 * M / lam_min
    _, te_long = P.gradient_descent_mse(Th, y, t_long, fx_train_0=f0, fx_test_0=fx0,
                                        ntk_test_train=Tx)
    np.testing.assert_allclose(te_long, ref_test, rtol=0, atol=1e-12)


def test_small_learning_rate_steps_approach_flow(kern, targets):
    """k steps of size η approach the flow at t = k: the error is O(η) at fixed ηk."""
    y, f0, fx0 = targets
    errors = []
    for lr in (0.1, 0.05, 0.025):
        k = int(round(2.0 / lr))
        _, gd = P.gradient_descent_mse(kern["ntk_tt"], y, steps=k, lr=lr, fx_train_0=f0,
                                       fx_test_0=fx0, ntk_test_train=kern["ntk_xt"])
        _, fl = P.gradient_descent_mse(kern["ntk_tt"], y, k, lr=lr, fx_train_0=f0,
                                       fx_test_0=fx0, ntk_test_train=kern["ntk_xt"])
        errors.append(np.abs(gd - fl).max())
    assert errors[-1] < 5e-3
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 2.0, rtol=0.1)


# --- the ensemble over initialisations -------------------------------------------------------

def ensemble_dense(Th_full, K_full, m, y, G):
    """Mean and covariance on all points of f_t = f_0 − Θ(·, X) Θ⁻¹ (I − G)(f_0(X) − y),
    f_0 ~ N(0, K), with G the training-residual propagator (expm or matrix power)."""
    Tmat = Th_full[:, :m] @ np.linalg.solve(Th_full[:m, :m], np.eye(m) - G)
    B = np.eye(len(K_full))
    B[:, :m] -= Tmat
    return Tmat @ y, B @ K_full @ B.T


@pytest.mark.parametrize("get", ["ntk", "nngp"])
@pytest.mark.parametrize("kind", ["flow", "steps"])
@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_ensemble_matches_dense(kern, targets, get, kind, noise):
    """Against expm / matrix powers and solve; ``diag_reg`` is ε on both training diagonals."""
    y = targets[0]
    reg = np.diag(np.r_[np.full(M, noise), np.zeros(N)])
    Th_full = (kern["ntk_full"] if get == "ntk" else kern["nngp_full"]) + reg
    K_full = kern["nngp_full"] + reg
    lr = 0.8 * P.max_learning_rate(Th_full[:M, :M])
    times = [0, 1, 4, 9]
    when = {"t": times} if kind == "flow" else {"steps": times}
    ens = P.gradient_descent_mse_ensemble(
        kern["ntk_tt"] if get == "ntk" else None, kern["nngp_tt"], y, **when, lr=lr,
        ntk_test_train=kern["ntk_xt"] if get == "ntk" else None,
        nngp_test_train=kern["nngp_xt"], nngp_test_test=kern["nngp_xx"], get=get,
        diag_reg=noise)
    diag = P.gradient_descent_mse_ensemble(
        kern["ntk_tt"], kern["nngp_tt"], y, **when, lr=lr, ntk_test_train=kern["ntk_xt"],
        nngp_test_train=kern["nngp_xt"], nngp_test_test=np.diag(kern["nngp_xx"]), get=get,
        diag_reg=noise)
    for i, k in enumerate(times):
        A = lr / M * Th_full[:M, :M]
        G = (scipy.linalg.expm(-A * k) if kind == "flow"
             else np.linalg.matrix_power(np.eye(M) - A, k))
        mean, cov = ensemble_dense(Th_full, K_full, M, y, G)
        np.testing.assert_allclose(ens.mean_train[i], mean[:M], rtol=0, atol=1e-10)
        np.testing.assert_allclose(ens.mean_test[i], mean[M:], rtol=0, atol=1e-10)
        np.testing.assert_allclose(ens.cov_train[i], cov[:M, :M], rtol=0, atol=1e-10)
        np.testing.assert_allclose(ens.cov_test[i], cov[M:, M:], rtol=0, atol=1e-10)
        np.testing.assert_allclose(diag.cov_test[i], np.diag(cov[M:, M:]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_nngp_ensemble_at_infinity_is_gp_posterior(kern, targets, noise):
    y = targets[0]
    ens = P.gradient_descent_mse_ensemble(None, kern["nngp_tt"], y, np.inf,
                                          nngp_test_train=kern["nngp_xt"],
                                          nngp_test_test=kern["nngp_xx"], get="nngp",
                                          diag_reg=noise)
    post = P.gp_inference(kern["nngp_tt"], y, kern["nngp_xt"], kern["nngp_xx"], diag_reg=noise)
    np.testing.assert_allclose(ens.mean_test, post.mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ens.cov_test, post.cov, rtol=0, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("get", ["ntk", "nngp"])
def test_ensemble_against_monte_carlo_of_a_linear_model(get):
    """The linear model f(ξ; θ) = φ(ξ)·θ with θ_0 ~ N(0, C) has NNGP K = ΦCΦᵀ; trained by
    gradient descent it has NTK Θ = ΦΦᵀ (get="ntk"), or K with the preconditioned update
    θ ← θ − ηC∇L, the readout-only dynamics (get="nngp").  Empirical mean and covariance
    over 4000 initialisations agree with the ensemble prediction within their standard
    errors (|z| < 4.5 for every entry)."""
    rng = np.random.default_rng(7)
    width, seeds, steps = 12, 4000, [0, 1, 3]
    Phi = rng.standard_normal((M + N, width)) / np.sqrt(width)
    L = rng.standard_normal((width, width)) / np.sqrt(width)
    C = L @ L.T + 0.1 * np.eye(width)
    K, Th = Phi @ C @ Phi.T, Phi @ Phi.T
    pre = np.eye(width) if get == "ntk" else C
    dyn = Th if get == "ntk" else K
    y = rng.standard_normal(M)
    lr = 0.9 * P.max_learning_rate(dyn[:M, :M])
    theta = np.linalg.cholesky(C) @ rng.standard_normal((width, seeds))
    samples = []
    for k in range(max(steps) + 1):
        f = Phi @ theta                                            # (M + N, seeds)
        samples.append(f)
        theta = theta - lr / M * pre @ Phi[:M].T @ (f[:M] - y[:, None])
    ens = P.gradient_descent_mse_ensemble(Th[:M, :M], K[:M, :M], y, steps=steps, lr=lr,
                                          ntk_test_train=Th[M:, :M], nngp_test_train=K[M:, :M],
                                          nngp_test_test=K[M:, M:], get=get)
    for i, k in enumerate(steps):
        f = samples[k]
        mean = np.concatenate([ens.mean_train[i], ens.mean_test[i]])
        cov = scipy.linalg.block_diag(ens.cov_train[i], ens.cov_test[i])
        emp_mean = f.mean(axis=1)
        emp_cov = np.cov(f)
        z_mean = (emp_mean - mean) / np.sqrt(np.diag(cov) / seeds + 1e-300)
        assert np.abs(z_mean[np.diag(cov) > 1e-12]).max() < 4.5, (k, z_mean)
        blocks = [(slice(0, M), slice(0, M)), (slice(M, M + N), slice(M, M + N))]
        for rows, cols in blocks:
            S = cov[rows, cols]
            se = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S ** 2) / seeds)
            z = (emp_cov[rows, cols] - S) / np.maximum(se, 1e-300)
            assert np.abs(z[se > 1e-12]).max() < 4.5, (k, z)


# --- ill-conditioned and singular kernels ----------------------------------------------------

def rbf(a, b, ell):
    return np.exp(-(a[:, None] - b[None, :]) ** 2 / (2 * ell ** 2))


def _mp(a):
    return mp.matrix(np.atleast_2d(a).tolist())


def _np(a):
    return np.array(a.tolist(), dtype=float)


def test_ill_conditioned_kernel_matches_high_precision():
    """An RBF kernel on 12 points with condition number 1.2e12: every prediction is finite and
    agrees with a 50-digit evaluation of the closed forms on the same floating-point kernel to
    1e-7 (means) and 1e-8 (covariances; the kernel's scale is 1) — as close as a dense LU
    solve gets (1e-8 and 2e-9 here), far inside the κε = 3e-4 worst case."""
    X, x = np.linspace(0, 1, 12), np.array([0.33, 0.71, 1.2])
    K, Kx, Kxx = rbf(X, X, 0.35), rbf(x, X, 0.35), rbf(x, x, 0.35)
    assert 1e12 < np.linalg.cond(K) < 1e13
    y, m = np.sin(3 * X), len(X)
    with mp.workdps(50):
        Km, Kxm, ym = _mp(K), _mp(Kx), _mp(y).T
        Ki = mp.inverse(Km)
        post = P.gp_inference(K, y, Kx, Kxx)
        np.testing.assert_allclose(post.mean, _np(Kxm * Ki * ym).ravel(), rtol=0, atol=1e-7)
        np.testing.assert_allclose(post.cov, _np(_mp(Kxx) - Kxm * Ki * Kxm.T), rtol=0, atol=1e-8)
        for t in (1.0, 1e4, 1e9, np.inf):
            E = mp.zeros(m, m) if np.isinf(t) else mp.expm(-Km * mp.mpf(t / m))
            ref_test = _np(Kxm * Ki * (ym - E * ym)).ravel()
            tr, te = P.gradient_descent_mse(K, y, t, ntk_test_train=Kx)
            np.testing.assert_allclose(tr, _np(ym - E * ym).ravel(), rtol=0, atol=1e-12)
            np.testing.assert_allclose(te, ref_test, rtol=0, atol=1e-7)
            T = Kxm * Ki * (mp.eye(m) - E)
            ens = P.gradient_descent_mse_ensemble(K, K, y, t, ntk_test_train=Kx,
                                                  nngp_test_train=Kx, nngp_test_test=Kxx)
            ref_cov = _np(_mp(Kxx) - T * Kxm.T - Kxm * T.T + T * Km * T.T)
            np.testing.assert_allclose(ens.cov_test, ref_cov, rtol=0, atol=1e-8)
            np.testing.assert_allclose(ens.cov_train, _np(E * Km * E), rtol=0, atol=1e-12)
        lml = P.log_marginal_likelihood(K, y)
        ref = -0.5 * (ym.T * Ki * ym)[0] - 0.5 * mp.log(mp.det(Km)) - m / 2 * mp.log(2 * mp.pi)
        assert np.isfinite(lml) and abs(lml - float(ref)) < 1e-3 * abs(float(ref))


def test_repeated_inputs_stay_finite_and_exact():
    """Repeated training inputs make the kernel exactly singular.  Finite times agree with
    the expm solution (no inverse involved); t = ∞ and the GP posterior agree with the
    problem without the repeats, whose target is the mean of the repeated targets."""
    X = np.array([0.0, 0.3, 0.3, 0.8, 1.1, 1.1])
    y = np.array([0.5, -1.0, -0.6, 0.2, 1.0, 1.0])          # conflicting targets at 0.3
    x = np.array([0.3, 0.55, 1.5])
    Th = rbf(X, X, 0.5) + 0.3 * np.outer(X, X)
    Tx = rbf(x, X, 0.5) + 0.3 * np.outer(x, X)
    K, Kx, Kxx = rbf(X, X, 0.7), rbf(x, X, 0.7), rbf(x, x, 0.7)
    assert np.linalg.matrix_rank(Th) == 4
    full = np.vstack([np.hstack([Th, Tx.T]), np.hstack([Tx, np.zeros((3, 3))])])
    for t in (0.5, 7.0, 300.0):
        tr, te = P.gradient_descent_mse(Th, y, t, ntk_test_train=Tx)
        ref = flow_by_expm(full, 6, y, np.zeros(9), t, 1.0)
        np.testing.assert_allclose(tr, ref[:6], rtol=0, atol=1e-10)
        np.testing.assert_allclose(te, ref[6:], rtol=0, atol=1e-10)
    keep = [0, 1, 3, 4]
    y_unique = np.array([0.5, -0.8, 0.2, 1.0])
    tr, te = P.gradient_descent_mse(Th, y, np.inf, ntk_test_train=Tx)
    np.testing.assert_allclose(te, Tx[:, keep] @ np.linalg.solve(Th[np.ix_(keep, keep)], y_unique),
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(tr, y_unique[[0, 1, 1, 2, 3, 3]], rtol=0, atol=1e-9)
    post = P.gp_inference(K, y, Kx, Kxx)
    Ku = K[np.ix_(keep, keep)]
    np.testing.assert_allclose(post.mean, Kx[:, keep] @ np.linalg.solve(Ku, y_unique),
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(post.cov, Kxx - Kx[:, keep] @ np.linalg.solve(Ku, Kx[:, keep].T),
                               rtol=0, atol=1e-9)
    ens = P.gradient_descent_mse_ensemble(Th, K, y, [1.0, 50.0, np.inf], ntk_test_train=Tx,
                                          nngp_test_train=Kx, nngp_test_test=Kxx)
    assert all(np.all(np.isfinite(a)) for a in (ens.mean_train, ens.cov_train, ens.mean_test,
                                                 ens.cov_test))
    with pytest.raises(PredictionError, match="singular"):
        P.log_marginal_likelihood(K, y)
    assert np.isfinite(P.log_marginal_likelihood(K, y, diag_reg=1e-3))


# --- programs --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp_predictor():
    X = np.random.default_rng(3).standard_normal((6, 4))
    X[5] = X[1]                                   # a repeated input: training point 1 again
    p = build_mlp(X, depth=2, wvar=1.5, bvar=0.1, phi=tp.erf)
    y = np.array([0.4, -0.7, 1.1, 0.2])
    return p, y, P.from_program(p, y, train=[0, 1, 2, 5], lr=1.0)


def test_program_predictions_use_the_program_kernels(mlp_predictor):
    p, y, pred = mlp_predictor
    Th, K = tp.ntk(p), tp.nngp(p)
    tr = [0, 1, 2, 5]
    ens = pred.ensemble(steps=[0, 1, 3])
    ref = P.gradient_descent_mse_ensemble(Th[np.ix_(tr, tr)], K[np.ix_(tr, tr)], y,
                                          steps=[0, 1, 3], ntk_test_train=Th[:, tr],
                                          nngp_test_train=K[:, tr], nngp_test_test=K)
    np.testing.assert_allclose(ens.mean_test, ref.mean_test, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ens.cov_test, ref.cov_test, rtol=0, atol=1e-14)
    assert ens.mean_test.shape == (3, 6) and ens.cov_test.shape == (3, 6, 6)
    # the default test set is every input, so the training rows reappear there
    np.testing.assert_allclose(ens.mean_test[:, tr], ens.mean_train, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ens.cov_test[np.ix_([0, 1, 2], tr, tr)], ens.cov_train, rtol=0,
                               atol=1e-10)
    lam_max = np.linalg.eigvalsh(Th[np.ix_(tr, tr)])[-1]
    assert pred.max_learning_rate() == pytest.approx(2 * 4 / lam_max)


def test_program_with_repeated_input_trains_to_the_mean_target(mlp_predictor):
    p, y, pred = mlp_predictor
    tr, te = pred.gradient_descent(np.inf)
    mean_target = (y[1] + y[3]) / 2                  # inputs 1 and 5 coincide
    np.testing.assert_allclose(tr[[1, 3]], mean_target, rtol=0, atol=1e-8)
    np.testing.assert_allclose(te[[1, 5]], mean_target, rtol=0, atol=1e-8)
    post = pred.gp_inference()
    assert np.all(np.isfinite(post.mean)) and np.all(np.isfinite(post.cov))
    assert np.abs(np.diag(post.cov)[[0, 1, 2, 5]]).max() < 1e-9   # no variance left there
    split = P.from_program(p, y[[0, 1, 2]], train=[0, 1, 2], test=[3, 4])
    assert split.ensemble(t=[0.0, 2.0]).mean_test.shape == (2, 2)
    assert np.isfinite(split.log_marginal_likelihood())


# --- bad input -------------------------------------------------------------------------------

def test_bad_input_gets_named_errors(kern, targets, mlp_predictor):
    y = targets[0]
    Th = kern["ntk_tt"]
    gd = P.gradient_descent_mse
    with pytest.raises(PredictionError, match="one target"):
        gd(Th, y[:-1], 1.0)
    with pytest.raises(PredictionError, match="square"):
        gd(Th[:, :-1], y, 1.0)
    asym = Th.copy()
    asym[0, 1] += 1e-3
    with pytest.raises(PredictionError, match="not symmetric"):
        gd(asym, y, 1.0)
    with pytest.raises(PredictionError, match="not positive semidefinite"):
        gd(Th - 2 * np.linalg.eigvalsh(Th)[-1] * np.eye(M), y, 1.0)
    with pytest.raises(PredictionError, match="NaN or infinity"):
        gd(np.where(np.eye(M) > 0, np.nan, Th), y, 1.0)
    for lr in (np.nan, np.inf, -1.0, 0.0, "fast"):
        with pytest.raises(PredictionError, match="learning rate"):
            gd(Th, y, steps=2, lr=lr)
    with pytest.raises(PredictionError, match="≥ 0"):
        gd(Th, y, -1.0)
    with pytest.raises(PredictionError, match="whole numbers"):
        gd(Th, y, steps=1.5)
    with pytest.raises(PredictionError, match="exactly one"):
        gd(Th, y, 1.0, steps=2)
    with pytest.raises(PredictionError, match=r"\(n_test, 6\)"):
        gd(Th, y, 1.0, ntk_test_train=kern["ntk_xt"][:, :-1])
    with pytest.raises(PredictionError, match="fx_train_0"):
        gd(Th, y, 1.0, fx_train_0=np.zeros(M + 1))
    with pytest.raises(PredictionError, match="diag_reg"):
        gd(Th, y, 1.0, diag_reg=-1.0)
    ens = P.gradient_descent_mse_ensemble
    with pytest.raises(PredictionError, match="get must be"):
        ens(Th, kern["nngp_tt"], y, 1.0, get="both")
    with pytest.raises(PredictionError, match="ntk_test_train"):
        ens(Th, kern["nngp_tt"], y, 1.0, nngp_test_train=kern["nngp_xt"])
    with pytest.raises(PredictionError, match="nngp_test_test"):
        ens(Th, kern["nngp_tt"], y, 1.0, ntk_test_train=kern["ntk_xt"],
            nngp_test_train=kern["nngp_xt"], nngp_test_test=np.ones(N + 1))
    p, yp, _ = mlp_predictor
    with pytest.raises(PredictionError, match="out of range.*6 inputs"):
        P.from_program(p, yp, train=[0, 1, 2, 6])
    with pytest.raises(PredictionError, match="out of range"):
        P.from_program(p, yp, train=[0, 1, 2, -1])
    with pytest.raises(PredictionError, match="one target"):
        P.from_program(p, yp, train=[0, 1, 2])
    with pytest.raises(PredictionError, match="Program"):
        P.from_program(Th, yp, train=[0, 1, 2, 3])


def test_learning_rate_thresholds(kern, targets):
    y = targets[0]
    Th = kern["ntk_tt"]
    limit = P.max_learning_rate(Th)
    assert limit == pytest.approx(2 * M / np.linalg.eigvalsh(Th)[-1], rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.check_learning_rate(0.99 * limit, Th) == limit
        P.gradient_descent_mse(Th, y, 1e3, lr=10 * limit)          # flow: lr only sets time
    with pytest.warns(LearningRateWarning, match=f"2m/λ_max = {limit:.6g}") as rec:
        P.check_learning_rate(1.5 * limit, Th, strict=True)        # catapult band: a warning
    assert "catapult" in str(rec[0].message)
    with pytest.warns(LearningRateWarning, match=f"4m/λ_max = {2 * limit:.6g}"):
        P.check_learning_rate(2.5 * limit, Th)
    with pytest.raises(PredictionError, match=f"4m/λ_max = {2 * limit:.6g}"):
        P.gradient_descent_mse(Th, y, steps=3, lr=2.5 * limit, strict=True)
    with pytest.raises(PredictionError, match="4m/λ_max"):
        P.gradient_descent_mse_ensemble(Th, kern["nngp_tt"], y, steps=3, lr=2.5 * limit,
                                        strict=True)
    # the threshold is where the top mode stops decaying
    _, lam_top = np.linalg.eigh(Th)
    v = lam_top[:, -1]
    for frac, grows in ((0.98, False), (1.02, True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LearningRateWarning)
            tr, _ = P.gradient_descent_mse(Th, v, steps=[0, 400], lr=frac * limit)
        assert (np.linalg.norm(tr[1] - v) > np.linalg.norm(tr[0] - v)) == grows
    with pytest.warns(LearningRateWarning), pytest.raises(PredictionError, match="diverges"):
        P.gradient_descent_mse(Th, y, steps=5000, lr=3 * limit)
