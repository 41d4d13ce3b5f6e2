"""Gradient flow and gradient descent on the MSE in the NTK limit: one network from its initial
outputs, and the mean and covariance over initialisations (TP IIb Thm 5.3; Les Houches
Eqs. 85–90)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PredictionError
from .checks import (cross_kernel, diag_reg_value, initial_outputs, learning_rate,
                     nngp_test_block, targets, time_points, train_kernel)
from .rates import warn_or_raise
from .spectrum import Spectrum, shaped


@dataclass(frozen=True)
class Ensemble:
    """Mean and covariance over initialisations of the trained infinite network.

    ``mean_train`` ``(m,)``, ``cov_train`` ``(m, m)``; ``mean_test`` ``(n,)`` and ``cov_test``
    ``(n, n)`` or ``(n,)`` when test kernels were given (else None).  A time array ``t`` (or
    ``steps``) adds a leading axis; several output columns a trailing one on the means.
    """

    mean_train: np.ndarray
    cov_train: np.ndarray | None
    mean_test: np.ndarray | None
    cov_test: np.ndarray | None


def gradient_descent_mse(ntk_train_train, y_train, t=None, *, steps=None, lr: float = 1.0,
                         fx_train_0=0.0, fx_test_0=0.0, ntk_test_train=None,
                         diag_reg: float = 0.0, strict: bool = False):
    """Outputs of the infinite-width network trained on the MSE from given initial outputs.

    Gradient flow for time ``t`` or gradient descent for ``steps`` steps of size ``lr`` (see
    :mod:`tensorprog.predict`): ``f_t(X) = f_0(X) − H_t (f_0(X) − y)`` on the training points and
    ``f_t(x) = f_0(x) − Θ(x, X) Φ_t (f_0(X) − y)`` on the test points (Les Houches Eqs. 88–89;
    TP IIb Thm 5.3 for the steps).

    Parameters
    ----------
    ntk_train_train : (m, m) array, Θ on the training points.
    y_train : (m,) or (m, c) targets.
    t : gradient-flow time ≥ 0 (``np.inf`` for the end of training), scalar or 1-D array.
    steps : number(s) of gradient-descent steps (whole numbers ≥ 0) instead of ``t``.
    lr : learning rate η > 0.
    fx_train_0, fx_test_0 : initial outputs (scalars broadcast); 0 gives kernel regression.
    ntk_test_train : optional (n, m) array, Θ between test and training points.
    diag_reg : float ≥ 0 added to the diagonal of Θ on the training points.
    strict : with ``steps``, raise instead of warning when ``lr > 4m/λ_max``.

    Returns
    -------
    (fx_train_t, fx_test_t) : (m,) / (n,) arrays (a trailing axis for several output columns,
        a leading one for an array of times); ``fx_test_t`` is None without ``ntk_test_train``.

    Raises
    ------
    PredictionError : mismatched shapes, non-finite values, a kernel that is not symmetric PSD,
        a negative time, a bad learning rate; with ``strict``, ``lr > 4m/λ_max``.

    Warns
    -----
    LearningRateWarning : with ``steps``, ``lr > 2m/λ_max`` (:func:`check_learning_rate`).

    Example
    -------
    >>> Th = np.array([[2.0, 0.5], [0.5, 1.0]])
    >>> fx_train, _ = gradient_descent_mse(Th, [1.0, -1.0], t=np.inf)
    >>> fx_train                                  # the targets are fitted at the end of training
    array([ 1., -1.])
    """
    where = "gradient_descent_mse"
    kind, times, scalar = time_points(t, steps, where)
    lr = learning_rate(lr, where)
    Th = train_kernel(ntk_train_train, "ntk_train_train", where)
    m = len(Th)
    y = targets(y_train, m, where)
    spec = Spectrum.of(Th, "ntk_train_train", where, diag_reg_value(diag_reg, where))
    if kind == "steps":
        warn_or_raise(lr, spec, strict, where)
    h, phi = spec.factors(kind, times, lr)
    f0 = initial_outputs(fx_train_0, y.shape, "fx_train_0", where)
    r0 = (f0 - y).reshape(m, -1)
    train = f0.reshape(m, -1) - spec.vectors @ spec.coefficients(h, r0)
    test = None
    if ntk_test_train is not None:
        C = cross_kernel(ntk_test_train, m, "ntk_test_train", where)
        fx0 = initial_outputs(fx_test_0, (len(C),) + y.shape[1:], "fx_test_0", where)
        test = shaped(fx0.reshape(len(C), -1) - (C @ spec.vectors) @ spec.coefficients(phi, r0),
                       scalar, y.shape[1:])
    return shaped(train, scalar, y.shape[1:]), test


def gradient_descent_mse_ensemble(ntk_train_train, nngp_train_train, y_train, t=None, *,
                                  steps=None, lr: float = 1.0, ntk_test_train=None,
                                  nngp_test_train=None, nngp_test_test=None, get: str = "ntk",
                                  diag_reg: float = 0.0, strict: bool = False) -> Ensemble:
    """Mean and covariance over initialisations ``f_0 ~ GP(0, K)`` of the outputs of the
    infinite-width network trained on the MSE (Les Houches Eq. 90 at finite time).

    ``get="ntk"``: every parameter trained, dynamics kernel Θ.  ``get="nngp"``: only the readout
    trained, dynamics kernel K (the NTK arguments are then not used); at ``t = ∞`` this is the
    GP posterior of :func:`gp_inference`.  With ``T_t = Θ(x, X) Φ_t`` and ``H_t`` of
    :mod:`tensorprog.predict`: ``mean(x) = T_t y``, ``cov = K(x, x) − T_t K(X, x) − K(x, X) T_tᵀ +
    T_t K(X, X) T_tᵀ``; on the training points ``mean = H_t y``, ``cov = (I − H_t) K (I − H_t)``.
    ``diag_reg = ε`` is added to the diagonals of both training kernels, i.e. the initial
    outputs on the training points carry extra noise of variance ε, which makes the NNGP variant
    at ``t = ∞`` the posterior with noise ε.

    Parameters
    ----------
    ntk_train_train : (m, m) array, Θ on the training points (None with ``get="nngp"``).
    nngp_train_train : (m, m) array, K on the training points.
    y_train : (m,) or (m, c) targets.
    t : gradient-flow time ≥ 0 (``np.inf`` allowed), scalar or 1-D array.
    steps : gradient-descent steps instead of ``t``.
    lr : learning rate η > 0.
    ntk_test_train : (n, m) array, Θ between test and training points (``get="ntk"``).
    nngp_test_train : (n, m) array, K between test and training points.
    nngp_test_test : optional (n, n) array or its diagonal (n,), for ``cov_test``.
    get : ``"ntk"`` or ``"nngp"``.
    diag_reg : float ≥ 0, see above.
    strict : with ``steps``, raise instead of warning when ``lr > 4m/λ_max``.

    Returns
    -------
    Ensemble : ``mean_train``, ``cov_train``, ``mean_test``, ``cov_test`` (the test ones None
        without the test kernels; a leading time axis for an array of times).

    Raises
    ------
    PredictionError : as :func:`gradient_descent_mse`; an unknown ``get``; missing test kernels
        of the chosen variant.

    Warns
    -----
    LearningRateWarning : with ``steps``, ``lr > 2m/λ_max`` of the dynamics kernel.

    Example
    -------
    >>> K = np.array([[1.0, 0.5], [0.5, 1.0]]); Th = 2 * K
    >>> ens = gradient_descent_mse_ensemble(Th, K, [1.0, -1.0], t=np.inf)
    >>> ens.mean_train, np.abs(ens.cov_train).max() < 1e-15   # fitted, no spread left
    (array([ 1., -1.]), True)
    """
    where = "gradient_descent_mse_ensemble"
    if get not in ("ntk", "nngp"):
        raise PredictionError(f"{where}: get must be 'ntk' or 'nngp', got {get!r}")
    kind, times, scalar = time_points(t, steps, where)
    lr = learning_rate(lr, where)
    eps = diag_reg_value(diag_reg, where)
    K = train_kernel(nngp_train_train, "nngp_train_train", where)
    m = len(K)
    y = targets(y_train, m, where)
    if get == "ntk":
        if ntk_train_train is None:
            raise PredictionError(f"{where}: get='ntk' needs ntk_train_train; pass the NTK, or "
                                  "get='nngp' to train the readout only")
        Th = train_kernel(ntk_train_train, "ntk_train_train", where)
        if Th.shape != K.shape:
            raise PredictionError(f"{where}: ntk_train_train is {Th.shape} but "
                                  f"nngp_train_train is {K.shape}; pass both on the same points")
    else:
        Th = K
    spec = Spectrum.of(Th, f"{get}_train_train", where, eps)
    if kind == "steps":
        warn_or_raise(lr, spec, strict, where)
    h, phi = spec.factors(kind, times, lr)
    Y = y.reshape(m, -1)
    Kreg = K + eps * np.eye(m)
    mean_train = spec.vectors @ spec.coefficients(h, Y)
    G = spec.matrix(1.0 - h)
    cov_train = G @ Kreg @ G
    mean_test = cov_test = None
    if nngp_test_train is not None or ntk_test_train is not None:
        Kx = cross_kernel(nngp_test_train, m, "nngp_test_train", where)
        Thx = Kx if get == "nngp" else cross_kernel(ntk_test_train, m, "ntk_test_train", where)
        if len(Thx) != len(Kx):
            raise PredictionError(f"{where}: ntk_test_train has {len(Thx)} rows but "
                                  f"nngp_test_train has {len(Kx)}; pass both on the same points")
        T = np.einsum("nj,tj,kj->tnk", Thx @ spec.vectors, phi, spec.vectors, optimize=True)
        mean_test = shaped(T @ Y, scalar, y.shape[1:])
        if nngp_test_test is not None:
            Kxx = nngp_test_block(nngp_test_test, len(Kx), where)
            TK = T @ Kreg
            if Kxx.ndim == 1:
                cov_test = Kxx - np.sum(T * (2 * Kx - TK), axis=2)
            else:
                cross = T @ Kx.T
                cov_test = Kxx - cross - cross.swapaxes(1, 2) + TK @ T.swapaxes(1, 2)
                cov_test = (cov_test + cov_test.swapaxes(1, 2)) / 2
            cov_test = cov_test[0] if scalar else cov_test
    return Ensemble(shaped(mean_train, scalar, y.shape[1:]), cov_train[0] if scalar else cov_train,
                    mean_test, cov_test)

