"""Statistics of convergence to the limit (docs/theory.md §5, "How convergence is judged").

* :func:`error_stats`: for samples ``X_s`` (one per seed) of a quantity whose limit is ``L``, the
  relative Frobenius error of a single draw ``‖X_s − L‖_F/‖L‖_F`` (mean over seeds ± standard
  error), of the seed mean ``‖X̄ − L‖_F/‖L‖_F``, the *noise floor* of the latter
  ``√(Σ Var/S)/‖L‖_F`` (what the seed-mean error would be with no bias at all, since
  ``E‖X̄ − L‖² = ‖bias‖² + Σ_entries Var/S``), and the largest z-score ``|X̄ − L|/stderr`` over
  the entries.  When ``L = 0`` the errors are absolute (``‖L‖`` replaced by 1).
* :func:`loglog_fit`: the slope of ``log error`` against ``log width`` by weighted least squares
  (weights from the errors' standard errors, ``σ_log = se/error``), with the standard error of
  the slope scaled up by ``√(χ²/dof)`` when the points scatter more than their error bars say
  (never down); without standard errors, ordinary least squares and the residual-based slope
  error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ErrorStats:
    """Error statistics of one quantity at one width (see the module docstring)."""

    draw_error: float
    draw_error_stderr: float
    mean_error: float
    noise_floor: float
    max_z: float
    relative: bool

    @property
    def regime(self) -> str:
        """``"noise"`` when the seed-mean error is within 2× its noise floor (the bias is not
        resolved with these seeds), ``"bias"`` otherwise."""
        return "noise" if self.mean_error <= 2 * self.noise_floor else "bias"


def error_stats(samples: np.ndarray, limit: np.ndarray) -> ErrorStats:
    """:class:`ErrorStats` of ``samples`` (S, ...) against ``limit`` (...)."""
    samples = np.asarray(samples, dtype=float)
    S = samples.shape[0]
    limit = np.broadcast_to(np.asarray(limit, dtype=float), samples.shape[1:])
    scale = float(np.linalg.norm(limit))
    relative = scale > 0
    scale = scale if relative else 1.0
    diff = (samples - limit).reshape(S, -1)
    per_draw = np.linalg.norm(diff, axis=1) / scale
    mean = samples.mean(axis=0)
    var = samples.var(axis=0, ddof=1) if S > 1 else np.full(mean.shape, np.nan)
    stderr = np.sqrt(var / S)
    dev = np.abs(mean - limit)
    tiny = 1e-12 * max(scale, float(np.abs(mean).max(initial=0.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        # a deviation at rounding level is agreement, whatever its (then rounding-level) stderr
        z = np.where(dev <= tiny, 0.0,
                     np.where(stderr > 0, dev / np.where(stderr > 0, stderr, 1.0), np.inf))
    return ErrorStats(
        draw_error=float(per_draw.mean()),
        draw_error_stderr=float(per_draw.std(ddof=1) / np.sqrt(S)) if S > 1 else float("nan"),
        mean_error=float(np.linalg.norm(mean - limit) / scale),
        noise_floor=float(np.sqrt(var.sum() / S) / scale),
        max_z=float(np.max(z, initial=0.0)),
        relative=relative)


@dataclass
class Fit:
    """``log error ≈ intercept + slope · log width``."""

    slope: float
    stderr: float
    intercept: float
    chi2_dof: float
    points: int

    def predict(self, widths) -> np.ndarray:
        return np.exp(self.intercept) * np.asarray(widths, dtype=float) ** self.slope


def loglog_fit(widths, errors, stderrs=None) -> Fit:
    """Slope ± standard error of log(errors) against log(widths) (see the module docstring).

    Points with a zero or non-finite error are left out; with fewer than two points left the
    slope is NaN.
    """
    x = np.log(np.asarray(widths, dtype=float))
    e = np.asarray(errors, dtype=float)
    se = None if stderrs is None else np.asarray(stderrs, dtype=float)
    ok = np.isfinite(e) & (e > 0)
    if se is not None:
        ok &= np.isfinite(se) & (se > 0)
    x, e = x[ok], e[ok]
    se = None if se is None else se[ok]
    k = len(x)
    if k < 2:
        return Fit(float("nan"), float("nan"), float("nan"), float("nan"), k)
    y = np.log(e)
    w = np.ones(k) if se is None else (e / se) ** 2
    A = np.stack([np.ones(k), x], axis=1)
    cov = np.linalg.inv(A.T @ (A * w[:, None]))
    beta = cov @ (A.T @ (w * y))
    resid = y - A @ beta
    dof = k - 2
    chi2_dof = float(np.sum(w * resid**2) / dof) if dof > 0 else float("nan")
    if se is None:
        var_slope = cov[1, 1] * chi2_dof if dof > 0 else float("nan")
    else:
        var_slope = cov[1, 1] * (max(1.0, chi2_dof) if dof > 0 else 1.0)
    return Fit(float(beta[1]), float(np.sqrt(var_slope)), float(beta[0]), chi2_dof, k)
