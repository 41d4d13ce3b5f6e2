"""Learning-rate thresholds of gradient descent on the MSE in the NTK limit (Les Houches §2.3.7,
§3.3): ``2m/λ_max`` for convergence, ``4m/λ_max`` beyond the catapult band."""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import LearningRateWarning, PredictionError
from .checks import diag_reg_value, learning_rate, train_kernel
from .spectrum import Spectrum


def threshold(spec: Spectrum) -> float:
    """``2m/λ_max`` of a training kernel's spectrum (``inf`` for a zero kernel)."""
    top = float(spec.values[-1])
    return 2 * spec.m / top if top > 0 else np.inf


def warn_or_raise(lr: float, spec: Spectrum, strict: bool, where: str) -> None:
    """Warn above ``2m/λ_max``; above ``4m/λ_max`` raise instead when ``strict``."""
    limit = threshold(spec)
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
    k = train_kernel(ntk_train_train, "ntk_train_train", where)
    return threshold(Spectrum.of(k, "ntk_train_train", where, diag_reg_value(diag_reg, where)))


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
    lr = learning_rate(lr, where)
    k = train_kernel(ntk_train_train, "ntk_train_train", where)
    spec = Spectrum.of(k, "ntk_train_train", where, diag_reg_value(diag_reg, where))
    warn_or_raise(lr, spec, strict, where)
    return threshold(spec)
