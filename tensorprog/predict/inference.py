"""Bayesian inference with the NNGP prior: the GP posterior and the log marginal likelihood
(Les Houches Eqs. 32–33)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PredictionError
from .checks import cross_kernel, diag_reg_value, targets, nngp_test_block, train_kernel
from .spectrum import Spectrum


@dataclass(frozen=True)
class Posterior:
    """Gaussian predictions at the test points: ``mean`` ``(n,)`` (``(n, c)`` for ``c``
    output columns) and ``cov`` — ``(n, n)``, ``(n,)`` (variances) or None — shared by the
    columns."""

    mean: np.ndarray
    cov: np.ndarray | None


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
    K = train_kernel(nngp_train_train, "nngp_train_train", where)
    m = len(K)
    y = targets(y_train, m, where)
    spec = Spectrum.of(K, "nngp_train_train", where, diag_reg_value(diag_reg, where))
    C = cross_kernel(nngp_test_train, m, "nngp_test_train", where)
    keep = spec.values > spec.cutoff
    inv_sqrt = np.where(keep, 1 / np.sqrt(np.where(keep, spec.values, 1.0)), 0.0)
    A = (C @ spec.vectors) * inv_sqrt
    mean = A @ (inv_sqrt[:, None] * (spec.vectors.T @ y.reshape(m, -1)))
    cov = None
    if nngp_test_test is not None:
        Kxx = nngp_test_block(nngp_test_test, len(C), where)
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
    K = train_kernel(nngp_train_train, "nngp_train_train", where)
    m = len(K)
    Y = targets(y_train, m, where).reshape(m, -1)
    spec = Spectrum.of(K, "nngp_train_train", where, diag_reg_value(diag_reg, where))
    if spec.values[0] <= spec.cutoff:
        raise PredictionError(
            f"{where}: K + diag_reg·I is singular (smallest eigenvalue {spec.values[0]:.3g}, "
            f"largest {spec.values[-1]:.3g}; repeated inputs?), so the likelihood of noise-free "
            "targets is not finite; pass diag_reg > 0, the observation-noise variance")
    z = spec.vectors.T @ Y
    c = Y.shape[1]
    return float(-0.5 * np.sum(z * z / spec.values[:, None])
                 - 0.5 * c * np.sum(np.log(spec.values)) - 0.5 * m * c * np.log(2 * np.pi))
