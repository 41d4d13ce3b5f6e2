"""Positive-semidefinite factorisations, the one home of the project's small linear algebra.

Every Gaussian the project draws or integrates against is given by a covariance ``C`` and used
through a factor ``G`` with ``G Gᵀ = C``: the eigendecomposition ``C = V Λ Vᵀ`` restricted to its
numerical rank (eigenvalues above ``rtol`` times the largest, or times ``floor`` when that is
larger), ``G = V_r Λ_r^{1/2}``.  A covariance whose lowest eigenvalue lies below
``-rtol_negative`` times the largest is not positive semidefinite
(:class:`~tensorprog.errors.NotPositiveSemidefinite`); where covariances are estimated, a looser
``rtol_negative`` treats small negative eigenvalues as estimation noise.  All functions accept
a batch (..., m, m) where stated.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import NotPositiveSemidefinite
from .numerics import FACTOR_RANK_RTOL

__all__ = ["symmetric_eigh", "kept_eigenvalues", "is_not_psd", "psd_factor", "whiten",
           "eigen_sqrt", "nearest_psd"]


def symmetric_eigh(C: np.ndarray, symmetrize: bool = False):
    """Eigenvalues (ascending) and eigenvectors of the symmetric matrices ``C`` (..., m, m);
    with ``symmetrize`` of ``(C + Cᵀ)/2`` (for matrices symmetric only up to rounding)."""
    if symmetrize:
        C = (C + np.swapaxes(C, -1, -2)) / 2
    return np.linalg.eigh(C)


def kept_eigenvalues(lam: np.ndarray, rtol: float, floor: float = 0.0) -> np.ndarray:
    """Mask of the eigenvalues (..., m), ascending, above ``rtol · max(largest, floor)``."""
    return lam > rtol * np.maximum(lam[..., -1:], floor)


def is_not_psd(lam: np.ndarray, rtol: float, atol: float = 0.0) -> bool:
    """True when some eigenvalue (..., m), ascending, lies below ``-rtol · max(|largest|, atol)
    - atol``."""
    return bool(np.any(lam < -rtol * np.maximum(np.abs(lam[..., -1:]), atol) - atol))


def psd_factor(C: np.ndarray, rtol: float, floor: float = 0.0, symmetrize: bool = False,
               rtol_negative: float | None = None,
               describe: Callable[[float, float], str] | None = None) -> np.ndarray:
    """``G`` (m, r) with ``G Gᵀ = C`` for one (m, m) matrix, on its numerical rank.

    Parameters
    ----------
    C : (m, m) array
    rtol, floor : float
        Eigenvalues up to ``rtol · max(largest, floor)`` are dropped.
    symmetrize : bool
        Factor ``(C + Cᵀ)/2``.
    rtol_negative : float or None
        When given, an eigenvalue below ``-rtol_negative · |largest|`` raises.
    describe : callable or None
        ``describe(lowest, largest)``, the error message (default: a generic one).

    Returns
    -------
    (m, r) array

    Raises
    ------
    NotPositiveSemidefinite
        When ``rtol_negative`` is given and ``C`` is not positive semidefinite.

    Example
    -------
    >>> psd_factor(np.diag([4.0, 0.0]), rtol=1e-12).ravel().tolist()
    [2.0, 0.0]
    """
    if C.size == 0:
        return np.zeros((0, 0))
    lam, V = symmetric_eigh(C, symmetrize)
    if rtol_negative is not None and is_not_psd(lam, rtol_negative):
        top = max(float(lam[-1]), 0.0)
        raise NotPositiveSemidefinite(
            describe(float(lam[0]), top) if describe is not None else
            f"covariance is not positive semidefinite (eigenvalue {lam[0]:.3g} against {top:.3g})")
    keep = kept_eigenvalues(lam, rtol, floor)
    return V[:, keep] * np.sqrt(lam[keep])


def whiten(S: np.ndarray, rtol: float = FACTOR_RANK_RTOL, rtol_negative: float = 1e-8):
    """``G`` with ``G Gᵀ = S`` for a batch (n, m, m) of PSD matrices, and their largest rank r;
    G's columns are restricted to the r leading eigenvectors, (n, m, r).

    Raises
    ------
    NotPositiveSemidefinite
        When an eigenvalue lies below ``-rtol_negative`` times the largest.
    """
    lam, V = symmetric_eigh(S)
    if is_not_psd(lam, rtol_negative, 1e-300):
        worst = float(lam.min())
        raise NotPositiveSemidefinite(
            f"covariance is not positive semidefinite (eigenvalue {worst:.3g})")
    keep = kept_eigenvalues(lam, rtol, 1e-300)
    r = int(keep.sum(axis=1).max()) if len(lam) else 0
    lam = np.where(keep, lam, 0.0)
    G = V[:, :, S.shape[1] - r:] * np.sqrt(lam[:, None, S.shape[1] - r:])
    return G, r


def eigen_sqrt(C: np.ndarray, rtol: float = 1e-12):
    """Batched eigen-factor of PSD matrices (..., m, m), symmetrised: ``U``, ``√λ`` and
    ``1/√λ``, with the eigenvalues up to ``rtol`` times the largest zeroed in both."""
    lam, U = symmetric_eigh(C, symmetrize=True)
    keep = kept_eigenvalues(lam, rtol, 1e-300)
    sq = np.where(keep, np.sqrt(np.where(keep, lam, 1.0)), 0.0)
    isq = np.where(keep, 1.0 / np.where(keep, sq, 1.0), 0.0)
    return U, sq, isq


def nearest_psd(C: np.ndarray) -> np.ndarray:
    """Each (k, k) matrix of the batch ``C`` (..., k, k) with its negative eigenvalues set to 0."""
    lam, V = symmetric_eigh(C)
    return np.einsum("...ij,...j,...kj->...ik", V, np.maximum(lam, 0.0), V)
