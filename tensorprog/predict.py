"""Kernel predictions: what an infinitely wide network trained on MSE predicts, and Bayesian
inference with its NNGP prior, from its NNGP kernel ``K`` and its NTK ``Θ``.

Conventions (one training set ``X`` of ``m`` points with targets ``y``, test points ``x``):

* Loss: ``L(θ) = (1/m) Σ_α ½ ‖f(X_α) − y_α‖²`` — the mean over the batch of ½(f − y)²
  (summed over output columns when ``y`` has several).
* Gradient descent ``θ ← θ − η ∇L``.  In the NTK limit the network is its linearisation and the
  outputs follow kernel gradient descent (TP IIb Thm 5.3, Eq. 22; Les Houches Eq. 85):
  ``f_{k+1}(x) = f_k(x) − (η/m) Θ(x, X) (f_k(X) − y)``.
* Gradient flow ``dθ/dt = −η ∇L``, so ``t`` counts steps of size ``η``:
  ``df_t(x)/dt = −(η/m) Θ(x, X) (f_t(X) − y)``.

Both are solved in the eigenbasis ``Θ = Σ_i λ_i v_i v_iᵀ`` of the training kernel
(Les Houches Eqs. 88–89)::

    f_t(X) = f_0(X) − H_t (f_0(X) − y),          H_t = Σ_i h(λ_i) v_i v_iᵀ
    f_t(x) = f_0(x) − Θ(x, X) Φ_t (f_0(X) − y),   Φ_t = Σ_i φ(λ_i) v_i v_iᵀ = Θ⁻¹ H_t

    flow:    h(λ) = 1 − e^{−ηλt/m}          φ(λ) = h(λ)/λ  → ηt/m as λ → 0
    steps:   h(λ) = 1 − (1 − ηλ/m)^k        φ(λ) = h(λ)/λ  → kη/m as λ → 0

with ``h`` from ``expm1``/``log1p`` so that ``φ`` is accurate for every ``λ ≥ 0``: no inverse
of the kernel is formed.  Eigenvalues at or below the numerical rank cutoff ``m·ε·λ_max``
(repeated inputs, rounding) get ``h = φ = 0``: their eigenvectors are annihilated by every
cross kernel of a positive semidefinite joint kernel, and at ``t = ∞`` this makes ``Φ`` the
pseudo-inverse.  Over initialisations ``f_0 ~ GP(0, K)`` the trained outputs are Gaussian
(Les Houches Eq. 90 at ``t = ∞``), with ``T_t = Θ(x, X) Φ_t``::

    mean_t(x) = T_t y
    cov_t(x, x') = K(x, x') − T_t K(X, x') − K(x, X) T_tᵀ + T_t K(X, X) T_tᵀ

which on the training points reduces to ``mean = H_t y`` and ``cov = (I − H_t) K (I − H_t)``.
The NNGP variant (``get="nngp"``: only the readout trained) uses ``K`` for ``Θ``; at ``t = ∞``
it is the GP posterior (Les Houches Eq. 32).

Gradient descent is stable while ``η < 2m/λ_max`` (:func:`max_learning_rate`, ``2/λ_max`` of
the loss Hessian ``Θ/m``); between ``2m/λ_max`` and ``4m/λ_max`` a finite-width network may
still converge by "catapulting" to a flatter region (Les Houches §3.3), which the kernel
prediction does not describe; beyond ``4m/λ_max`` it diverges.  Cross kernels ``k_test_train``
are ``(n_test, m)`` arrays; only covariances need the test×test NNGP block, full or its
diagonal.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .errors import LearningRateWarning, PredictionError

__all__ = ["gp_inference", "log_marginal_likelihood", "gradient_descent_mse",
           "gradient_descent_mse_ensemble", "max_learning_rate", "check_learning_rate",
           "from_program", "Posterior", "Ensemble", "ProgramPredictor"]

#: Relative tolerance of the symmetry check, ``max|K − Kᵀ| ≤ SYM_RTOL·max|K|``.
SYM_RTOL = 1e-10
#: Relative tolerance of the PSD check, ``λ_min ≥ −PSD_RTOL·λ_max``.
PSD_RTOL = 1e-9


@dataclass(frozen=True)
class Posterior:
    """Gaussian predictions at the test points: ``mean`` ``(n,)`` (``(n, c)`` for ``c``
    output columns) and ``cov`` — ``(n, n)``, ``(n,)`` (variances) or None — shared by the
    columns."""

    mean: np.ndarray
    cov: np.ndarray | None


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


# --- validation ------------------------------------------------------------------------------

def _array(value, name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise PredictionError(f"{where}: {name} must be an array of numbers") from None
    if not np.all(np.isfinite(arr)):
        raise PredictionError(f"{where}: {name} contains NaN or infinity; pass finite values")
    return arr


def _train_kernel(k, name: str, where: str) -> np.ndarray:
    k = _array(k, name, where)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise PredictionError(f"{where}: {name} must be a non-empty square (m, m) array, got "
                              f"shape {k.shape}")
    scale = float(np.max(np.abs(k)))
    if np.max(np.abs(k - k.T)) > SYM_RTOL * scale:
        raise PredictionError(f"{where}: {name} is not symmetric (max |k − kᵀ| = "
                              f"{np.max(np.abs(k - k.T)):.3g}); pass a kernel matrix")
    return (k + k.T) / 2


def _targets(y, m: int, where: str) -> np.ndarray:
    y = _array(y, "y_train", where)
    if y.ndim not in (1, 2) or y.shape[0] != m:
        raise PredictionError(f"{where}: y_train has shape {y.shape} for {m} training points; "
                              "pass one target (row) per training point")
    return y


def _cross(k, m: int, name: str, where: str) -> np.ndarray:
    k = _array(k, name, where)
    if k.ndim != 2 or k.shape[1] != m:
        raise PredictionError(f"{where}: {name} must be an (n_test, {m}) array of test×train "
                              f"kernel values, got shape {k.shape}")
    return k


def _test_test(k, n: int, where: str) -> np.ndarray:
    k = _array(k, "nngp_test_test", where)
    if k.shape == (n,):
        return k
    if k.shape != (n, n):
        raise PredictionError(f"{where}: nngp_test_test must be the ({n}, {n}) test×test "
                              f"kernel or its diagonal ({n},), got shape {k.shape}")
    return (k + k.T) / 2


def _initial(f0, shape: tuple, name: str, where: str) -> np.ndarray:
    f0 = _array(f0, name, where)
    try:
        return np.broadcast_to(f0, shape)
    except ValueError:
        raise PredictionError(f"{where}: {name} has shape {f0.shape}, expected {shape} (or a "
                              "scalar)") from None


def _learning_rate(lr, where: str) -> float:
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise PredictionError(f"{where}: the learning rate must be a number, got {lr!r}") from None
    if not np.isfinite(lr) or lr <= 0:
        raise PredictionError(f"{where}: the learning rate must be finite and > 0, got {lr!r}")
    return lr


def _times(t, steps, where: str) -> tuple[str, np.ndarray, bool]:
    """``("flow", t)`` or ``("steps", k)`` as a 1-D array, and whether the input was scalar."""
    if (t is None) == (steps is None):
        raise PredictionError(f"{where}: give exactly one of t (gradient-flow time) or steps "
                              "(number of gradient-descent steps)")
    kind, value = ("flow", t) if steps is None else ("steps", steps)
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise PredictionError(f"{where}: {kind} must be a number or a 1-D array of numbers") \
            from None
    if arr.ndim > 1 or np.any(np.isnan(arr)) or np.any(arr < 0):
        raise PredictionError(f"{where}: {'t' if kind == 'flow' else 'steps'} must be ≥ 0 "
                              f"(a number or a 1-D array), got {value!r}")
    if kind == "steps" and (np.any(~np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise PredictionError(f"{where}: steps must be whole numbers ≥ 0, got {value!r}; use "
                              "t for gradient flow (t = np.inf for the end of training)")
    return kind, np.atleast_1d(arr), arr.ndim == 0


# --- the spectral solution -------------------------------------------------------------------

@dataclass(frozen=True)
class _Spectrum:
    """Eigendecomposition ``k = V diag(λ) Vᵀ`` of a (regularised) PSD training kernel, λ
    clipped at 0, with the numerical rank cutoff ``m·ε·λ_max``."""

    values: np.ndarray
    vectors: np.ndarray
    cutoff: float

    @classmethod
    def of(cls, k: np.ndarray, name: str, where: str, diag_reg: float = 0.0) -> "_Spectrum":
        lam, V = np.linalg.eigh(k)
        top = max(float(np.max(np.abs(lam))), np.finfo(float).tiny)
        if lam[0] < -PSD_RTOL * top:
            raise PredictionError(f"{where}: {name} is not positive semidefinite (smallest "
                                  f"eigenvalue {lam[0]:.3g}, largest {lam[-1]:.3g}); pass a "
                                  "kernel matrix")
        lam = np.maximum(lam, 0.0) + diag_reg
        return cls(lam, V, len(lam) * np.finfo(float).eps * float(lam[-1]))

    @property
    def m(self) -> int:
        return len(self.values)

    def factors(self, kind: str, times: np.ndarray, lr: float) -> tuple[np.ndarray, np.ndarray]:
        """``(h, φ)`` of the module docstring at each time, each ``(len(times), m)``."""
        rate = lr / self.m
        lam, tt = self.values[None, :], times[:, None]
        if kind == "flow":
            finite = np.isfinite(tt)
            h = np.where(finite, -np.expm1(-rate * lam * np.where(finite, tt, 0.0)), 1.0)
        else:
            a = rate * lam
            small = a < 1
            with np.errstate(over="ignore", invalid="ignore"):
                h = np.where(small, -np.expm1(tt * np.log1p(-np.where(small, a, 0.0))),
                             1.0 - np.power(1.0 - a, tt))
            if not np.all(np.isfinite(h)):
                raise PredictionError(
                    f"gradient descent diverges: |1 − ηλ_max/m|^steps overflows (η = {lr:.6g}, "
                    f"ηλ_max/m = {a.max():.3g} > 2); use a learning rate below "
                    f"2m/λ_max = {2 * self.m / self.values[-1]:.6g}")
        positive = lam > 0
        phi = np.where(positive, h / np.where(positive, lam, 1.0), rate * tt)
        null = self.values <= self.cutoff
        return np.where(null, 0.0, h), np.where(null, 0.0, phi)

    def coefficients(self, diag: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``diag(d) Vᵀ b`` for each row ``d`` of ``diag`` ``(T, m)``, ``b`` ``(m, c)``:
        ``(T, m, c)``."""
        return diag[:, :, None] * (self.vectors.T @ b)[None]

    def matrix(self, diag: np.ndarray) -> np.ndarray:
        """``V diag(d) Vᵀ`` for each row of ``diag``: ``(T, m, m)``."""
        return np.einsum("ij,tj,kj->tik", self.vectors, diag, self.vectors, optimize=True)


def _diag_reg(diag_reg, where: str) -> float:
    try:
        value = float(diag_reg)
    except (TypeError, ValueError):
        value = np.nan
    if not np.isfinite(value) or value < 0:
        raise PredictionError(f"{where}: diag_reg must be a finite number ≥ 0, got {diag_reg!r}")
    return value


def _shaped(values: np.ndarray, scalar: bool, trailing: tuple) -> np.ndarray:
    """``(T, rows, c)`` values to ``(T, rows) + trailing``, dropping ``T`` for a scalar time."""
    out = values.reshape(values.shape[:2] + trailing)
    return out[0] if scalar else out


# --- learning rates --------------------------------------------------------------------------

def _max_lr(spec: _Spectrum) -> float:
    top = float(spec.values[-1])
    return 2 * spec.m / top if top > 0 else np.inf


def _check_lr(lr: float, spec: _Spectrum, strict: bool, where: str) -> None:
    limit = _max_lr(spec)
    if lr <= limit:
        return
    facts = (f"learning rate {lr:.6g} is above 2m/λ_max = {limit:.6g} (m = {spec.m} training "
             f"points, λ_max = {spec.values[-1]:.6g}; loss = mean over the batch of ½(f − y)²)")
    if lr > 2 * limit:
        msg = (f"{where}: {facts} and above 4m/λ_max = {2 * limit:.6g}: gradient descent "
               f"diverges, at infinite and at finite width; use a learning rate below {limit:.6g}")
        if strict:
            raise PredictionError(msg)
    else:
        msg = (f"{where}: {facts}: in the kernel limit the outputs grow like "
               f"|1 − ηλ_max/m|^steps; a wide finite network may instead 'catapult' to a "
               f"flatter region (the band 2m/λ_max < η < 4m/λ_max), which this prediction does "
               f"not describe; use a learning rate below {limit:.6g}")
    warnings.warn(msg, LearningRateWarning, stacklevel=3)


def max_learning_rate(ntk_train_train, diag_reg: float = 0.0) -> float:
    """Largest learning rate for which gradient descent on the MSE converges in the NTK limit.

    With the loss ``(1/m) Σ_α ½(f(X_α) − y_α)²`` the residual evolves by ``(I − ηΘ/m)^k``, which
    decays iff ``η < 2m/λ_max(Θ)`` (Les Houches §2.3.7 and §3.3, ``η_crit = 2/λ_max`` of the loss
    Hessian ``Θ/m``).

    Parameters
    ----------
    ntk_train_train : (m, m) array, the NTK on the training points.
    diag_reg : float, added to the diagonal of the kernel (as in the predictions).

    Returns
    -------
    float : ``2m/λ_max`` (``inf`` for a zero kernel).

    Raises
    ------
    PredictionError : the kernel is not a symmetric PSD matrix of finite numbers.

    Example
    -------
    >>> max_learning_rate(np.array([[2.0, 1.0], [1.0, 2.0]]))   # λ_max = 3, m = 2
    1.3333333333333333
    """
    where = "max_learning_rate"
    k = _train_kernel(ntk_train_train, "ntk_train_train", where)
    return _max_lr(_Spectrum.of(k, "ntk_train_train", where, _diag_reg(diag_reg, where)))


def check_learning_rate(lr, ntk_train_train, diag_reg: float = 0.0,
                        strict: bool = False) -> float:
    """Check a gradient-descent learning rate against the NTK's thresholds.

    Parameters
    ----------
    lr : learning rate η.
    ntk_train_train : (m, m) array, the NTK on the training points.
    diag_reg : float, added to the kernel's diagonal.
    strict : raise instead of warning above ``4m/λ_max``.

    Returns
    -------
    float : the threshold ``2m/λ_max`` of :func:`max_learning_rate`.

    Raises
    ------
    PredictionError : ``lr`` not finite and positive; ``lr > 4m/λ_max`` with ``strict=True``.

    Warns
    -----
    LearningRateWarning : ``lr > 2m/λ_max`` (naming the threshold): the catapult band up to
        ``4m/λ_max``, divergence beyond it.
    """
    where = "check_learning_rate"
    lr = _learning_rate(lr, where)
    k = _train_kernel(ntk_train_train, "ntk_train_train", where)
    spec = _Spectrum.of(k, "ntk_train_train", where, _diag_reg(diag_reg, where))
    _check_lr(lr, spec, strict, where)
    return _max_lr(spec)


# --- Bayesian inference ----------------------------------------------------------------------

def gp_inference(nngp_train_train, y_train, nngp_test_train, nngp_test_test=None,
                 diag_reg: float = 0.0) -> Posterior:
    """GP posterior at the test points with the NNGP prior (Les Houches Eq. 32).

    ``mean = K(x, X) (K + εI)⁻¹ y`` and ``cov = K(x, x) − K(x, X) (K + εI)⁻¹ K(X, x)``, with
    ``ε = diag_reg`` the observation-noise variance, computed in the eigenbasis of ``K + εI`` as
    ``cov = K(x, x) − A Aᵀ``, ``A = K(x, X) V Λ^{-1/2}``; a singular noise-free kernel (repeated
    inputs) uses its pseudo-inverse, the ``ε → 0`` limit.

    Parameters
    ----------
    nngp_train_train : (m, m) array, K on the training points.
    y_train : (m,) or (m, c) targets.
    nngp_test_train : (n, m) array, K between test and training points.
    nngp_test_test : optional (n, n) array or its diagonal (n,); without it ``cov`` is None.
    diag_reg : float ≥ 0, the noise variance ε.

    Returns
    -------
    Posterior : ``mean`` (n,) or (n, c); ``cov`` (n, n), (n,) or None.

    Raises
    ------
    PredictionError : shapes that do not match, non-finite values, a kernel that is not
        symmetric PSD.

    Example
    -------
    >>> K = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> post = gp_inference(K, [1.0, -1.0], K[:1], K[:1, :1])   # test point = first input
    >>> post.mean, post.cov                                     # interpolates, no variance
    (array([1.]), array([[0.]]))
    """
    where = "gp_inference"
    K = _train_kernel(nngp_train_train, "nngp_train_train", where)
    m = len(K)
    y = _targets(y_train, m, where)
    spec = _Spectrum.of(K, "nngp_train_train", where, _diag_reg(diag_reg, where))
    C = _cross(nngp_test_train, m, "nngp_test_train", where)
    keep = spec.values > spec.cutoff
    inv_sqrt = np.where(keep, 1 / np.sqrt(np.where(keep, spec.values, 1.0)), 0.0)
    A = (C @ spec.vectors) * inv_sqrt
    mean = A @ (inv_sqrt[:, None] * (spec.vectors.T @ y.reshape(m, -1)))
    cov = None
    if nngp_test_test is not None:
        Kxx = _test_test(nngp_test_test, len(C), where)
        cov = Kxx - np.sum(A * A, axis=1) if Kxx.ndim == 1 else Kxx - A @ A.T
    return Posterior(mean.reshape((len(C),) + y.shape[1:]), cov)


def log_marginal_likelihood(nngp_train_train, y_train, diag_reg: float = 0.0) -> float:
    """Log marginal likelihood of the targets under the NNGP prior (Les Houches Eq. 33).

    ``log p(y) = −½ yᵀ(K + εI)⁻¹y − ½ log det(K + εI) − (m/2) log 2π`` per output column,
    summed over columns, from the eigenvalues of ``K + εI``.

    Parameters
    ----------
    nngp_train_train : (m, m) array, K on the training points.
    y_train : (m,) or (m, c) targets.
    diag_reg : float ≥ 0, the noise variance ε.

    Returns
    -------
    float

    Raises
    ------
    PredictionError : bad shapes or kernel; a singular ``K + εI`` (repeated inputs without
        noise), whose likelihood is not finite — pass ``diag_reg > 0``.

    Example
    -------
    >>> round(log_marginal_likelihood(np.eye(2), [0.0, 0.0]), 6)   # −log 2π
    -1.837877
    """
    where = "log_marginal_likelihood"
    K = _train_kernel(nngp_train_train, "nngp_train_train", where)
    m = len(K)
    Y = _targets(y_train, m, where).reshape(m, -1)
    spec = _Spectrum.of(K, "nngp_train_train", where, _diag_reg(diag_reg, where))
    if spec.values[0] <= spec.cutoff:
        raise PredictionError(
            f"{where}: K + diag_reg·I is singular (smallest eigenvalue {spec.values[0]:.3g}, "
            f"largest {spec.values[-1]:.3g}; repeated inputs?), so the likelihood of noise-free "
            "targets is not finite; pass diag_reg > 0, the observation-noise variance")
    z = spec.vectors.T @ Y
    c = Y.shape[1]
    return float(-0.5 * np.sum(z * z / spec.values[:, None])
                 - 0.5 * c * np.sum(np.log(spec.values)) - 0.5 * m * c * np.log(2 * np.pi))


# --- gradient descent ------------------------------------------------------------------------

def gradient_descent_mse(ntk_train_train, y_train, t=None, *, steps=None, lr: float = 1.0,
                         fx_train_0=0.0, fx_test_0=0.0, ntk_test_train=None,
                         diag_reg: float = 0.0, strict: bool = False):
    """Outputs of the infinite-width network trained on the MSE from given initial outputs.

    Gradient flow for time ``t`` or gradient descent for ``steps`` steps of size ``lr`` (see
    the module docstring): ``f_t(X) = f_0(X) − H_t (f_0(X) − y)`` on the training points and
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
    kind, times, scalar = _times(t, steps, where)
    lr = _learning_rate(lr, where)
    Th = _train_kernel(ntk_train_train, "ntk_train_train", where)
    m = len(Th)
    y = _targets(y_train, m, where)
    spec = _Spectrum.of(Th, "ntk_train_train", where, _diag_reg(diag_reg, where))
    if kind == "steps":
        _check_lr(lr, spec, strict, where)
    h, phi = spec.factors(kind, times, lr)
    f0 = _initial(fx_train_0, y.shape, "fx_train_0", where)
    r0 = (f0 - y).reshape(m, -1)
    train = f0.reshape(m, -1) - spec.vectors @ spec.coefficients(h, r0)
    test = None
    if ntk_test_train is not None:
        C = _cross(ntk_test_train, m, "ntk_test_train", where)
        fx0 = _initial(fx_test_0, (len(C),) + y.shape[1:], "fx_test_0", where)
        test = _shaped(fx0.reshape(len(C), -1) - (C @ spec.vectors) @ spec.coefficients(phi, r0),
                       scalar, y.shape[1:])
    return _shaped(train, scalar, y.shape[1:]), test


def gradient_descent_mse_ensemble(ntk_train_train, nngp_train_train, y_train, t=None, *,
                                  steps=None, lr: float = 1.0, ntk_test_train=None,
                                  nngp_test_train=None, nngp_test_test=None, get: str = "ntk",
                                  diag_reg: float = 0.0, strict: bool = False) -> Ensemble:
    """Mean and covariance over initialisations ``f_0 ~ GP(0, K)`` of the outputs of the
    infinite-width network trained on the MSE (Les Houches Eq. 90 at finite time).

    ``get="ntk"``: every parameter trained, dynamics kernel Θ.  ``get="nngp"``: only the readout
    trained, dynamics kernel K (the NTK arguments are then not used); at ``t = ∞`` this is the
    GP posterior of :func:`gp_inference`.  With ``T_t = Θ(x, X) Φ_t`` and ``H_t`` of the module
    docstring: ``mean(x) = T_t y``, ``cov = K(x, x) − T_t K(X, x) − K(x, X) T_tᵀ +
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
    kind, times, scalar = _times(t, steps, where)
    lr = _learning_rate(lr, where)
    eps = _diag_reg(diag_reg, where)
    K = _train_kernel(nngp_train_train, "nngp_train_train", where)
    m = len(K)
    y = _targets(y_train, m, where)
    if get == "ntk":
        if ntk_train_train is None:
            raise PredictionError(f"{where}: get='ntk' needs ntk_train_train; pass the NTK, or "
                                  "get='nngp' to train the readout only")
        Th = _train_kernel(ntk_train_train, "ntk_train_train", where)
        if Th.shape != K.shape:
            raise PredictionError(f"{where}: ntk_train_train is {Th.shape} but "
                                  f"nngp_train_train is {K.shape}; pass both on the same points")
    else:
        Th = K
    spec = _Spectrum.of(Th, f"{get}_train_train", where, eps)
    if kind == "steps":
        _check_lr(lr, spec, strict, where)
    h, phi = spec.factors(kind, times, lr)
    Y = y.reshape(m, -1)
    Kreg = K + eps * np.eye(m)
    mean_train = spec.vectors @ spec.coefficients(h, Y)
    G = spec.matrix(1.0 - h)
    cov_train = G @ Kreg @ G
    mean_test = cov_test = None
    if nngp_test_train is not None or ntk_test_train is not None:
        Kx = _cross(_required(nngp_test_train, "nngp_test_train", where), m, "nngp_test_train",
                    where)
        Thx = Kx if get == "nngp" else _cross(_required(ntk_test_train, "ntk_test_train", where),
                                              m, "ntk_test_train", where)
        if len(Thx) != len(Kx):
            raise PredictionError(f"{where}: ntk_test_train has {len(Thx)} rows but "
                                  f"nngp_test_train has {len(Kx)}; pass both on the same points")
        T = np.einsum("nj,tj,kj->tnk", Thx @ spec.vectors, phi, spec.vectors, optimize=True)
        mean_test = _shaped(T @ Y, scalar, y.shape[1:])
        if nngp_test_test is not None:
            Kxx = _test_test(nngp_test_test, len(Kx), where)
            TK = T @ Kreg
            if Kxx.ndim == 1:
                cov_test = Kxx - np.sum(T * (2 * Kx - TK), axis=2)
            else:
                cross = T @ Kx.T
                cov_test = Kxx - cross - cross.swapaxes(1, 2) + TK @ T.swapaxes(1, 2)
                cov_test = (cov_test + cov_test.swapaxes(1, 2)) / 2
            cov_test = cov_test[0] if scalar else cov_test
    return Ensemble(_shaped(mean_train, scalar, y.shape[1:]), cov_train[0] if scalar else cov_train,
                    mean_test, cov_test)


def _required(value, name: str, where: str):
    if value is None:
        raise PredictionError(f"{where}: test predictions need {name}; pass it (an (n_test, m) "
                              "array)")
    return value


# --- programs --------------------------------------------------------------------------------

def _indices(idx, n: int, name: str) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.ndim != 1 or arr.size == 0 or not (np.issubdtype(arr.dtype, np.integer)
                                              or (arr.dtype == float and np.all(arr == np.round(arr)))):
        raise PredictionError(f"from_program: {name} must be a non-empty list of input indices "
                              f"(whole numbers), got {idx!r}")
    arr = arr.astype(int)
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise PredictionError(f"from_program: {name} index {int(bad[0])} is out of range: the "
                              f"program has {n} inputs, indexed 0..{n - 1}")
    return arr


class ProgramPredictor:
    """Kernel predictions for a program's inputs split into training and test points by index;
    built by :func:`from_program`.  The kernels are the program's infinite-width NNGP and NTK
    (:func:`tensorprog.nngp`, :func:`tensorprog.ntk`), derived on first use; the methods are
    those of the module with the blocks sliced out."""

    def __init__(self, program, y_train, train, test, lr, diag_reg, strict, tier):
        from .ir.program import Program

        if not isinstance(program, Program):
            raise PredictionError(f"from_program: expected a tensorprog Program, got "
                                  f"{type(program).__name__}")
        program.require_output()
        n = program.num_inputs or 0
        self.program, self.tier = program, tier
        self.train = _indices(train, n, "train")
        self.test = np.arange(n) if test is None else _indices(test, n, "test")
        self.y_train = _targets(y_train, len(self.train), "from_program")
        self.lr = _learning_rate(lr, "from_program")
        self.diag_reg = _diag_reg(diag_reg, "from_program")
        self.strict = strict
        self._kernels: dict[str, np.ndarray] = {}

    def kernel(self, which: str) -> np.ndarray:
        """The program's ``"nngp"`` or ``"ntk"`` on all its inputs, ``(N, N)``."""
        if which not in self._kernels:
            from .kernels import nngp, ntk

            self._kernels[which] = (nngp if which == "nngp" else ntk)(self.program, tier=self.tier)
        return self._kernels[which]

    def _block(self, which: str, rows, cols) -> np.ndarray:
        return self.kernel(which)[np.ix_(rows, cols)]

    def max_learning_rate(self) -> float:
        """:func:`max_learning_rate` of the NTK on the training points."""
        return max_learning_rate(self._block("ntk", self.train, self.train), self.diag_reg)

    def gp_inference(self) -> Posterior:
        """:func:`gp_inference` at the test points, with the full test covariance."""
        return gp_inference(self._block("nngp", self.train, self.train), self.y_train,
                            self._block("nngp", self.test, self.train),
                            self._block("nngp", self.test, self.test), self.diag_reg)

    def log_marginal_likelihood(self) -> float:
        """:func:`log_marginal_likelihood` of the training targets."""
        return log_marginal_likelihood(self._block("nngp", self.train, self.train),
                                       self.y_train, self.diag_reg)

    def gradient_descent(self, t=None, *, steps=None, fx_train_0=0.0, fx_test_0=0.0):
        """:func:`gradient_descent_mse` from the given initial outputs: ``(train, test)``."""
        return gradient_descent_mse(
            self._block("ntk", self.train, self.train), self.y_train, t, steps=steps, lr=self.lr,
            fx_train_0=fx_train_0, fx_test_0=fx_test_0,
            ntk_test_train=self._block("ntk", self.test, self.train), diag_reg=self.diag_reg,
            strict=self.strict)

    def ensemble(self, t=None, *, steps=None, get: str = "ntk") -> Ensemble:
        """:func:`gradient_descent_mse_ensemble` with the full test covariance."""
        ntk_blocks = (None, None) if get == "nngp" else (
            self._block("ntk", self.train, self.train), self._block("ntk", self.test, self.train))
        return gradient_descent_mse_ensemble(
            ntk_blocks[0], self._block("nngp", self.train, self.train), self.y_train, t,
            steps=steps, lr=self.lr, ntk_test_train=ntk_blocks[1],
            nngp_test_train=self._block("nngp", self.test, self.train),
            nngp_test_test=self._block("nngp", self.test, self.test), get=get,
            diag_reg=self.diag_reg, strict=self.strict)


def from_program(program, y_train, train, test=None, *, lr: float = 1.0, diag_reg: float = 0.0,
                 strict: bool = False, tier: str = "auto") -> ProgramPredictor:
    """Kernel predictions for a program, its inputs split into training and test points.

    Parameters
    ----------
    program : a :class:`tensorprog.Program` with an output.
    y_train : (len(train),) or (len(train), c) targets.
    train : indices (0-based) of the training inputs.
    test : indices of the inputs to predict at; default every input of the program, the
        training ones included (in program order), so the results cover all inputs.
    lr : learning rate η of the gradient-descent predictions.
    diag_reg : float ≥ 0 added to the training kernels' diagonals (noise variance in
        :meth:`ProgramPredictor.gp_inference`).
    strict : raise instead of warning when ``lr > 4m/λ_max``.
    tier : expectation tier of :func:`tensorprog.nngp` / :func:`tensorprog.ntk`.

    Returns
    -------
    ProgramPredictor

    Raises
    ------
    PredictionError : indices out of range or not whole numbers, targets of the wrong length,
        a bad learning rate or regulariser, not a program.
    ProgramError : the program has no output.

    Example
    -------
    >>> pred = tp.predict.from_program(p, y, train=[0, 1, 2, 3], lr=1.0)
    >>> ens = pred.ensemble(steps=np.arange(4))     # mean (4, N), cov (4, N, N) on every input
    """
    return ProgramPredictor(program, y_train, train, test, lr, diag_reg, strict, tier)
