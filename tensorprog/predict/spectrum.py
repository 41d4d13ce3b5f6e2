"""The spectral solution of kernel gradient descent: the training kernel's eigendecomposition and
the factors ``h(λ)``, ``φ(λ) = h(λ)/λ`` of gradient flow and of discrete steps (see
:mod:`tensorprog.predict`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PredictionError
from .checks import PSD_RTOL


@dataclass(frozen=True)
class Spectrum:
    """Eigendecomposition ``k = V diag(λ) Vᵀ`` of a (regularised) PSD training kernel, λ
    clipped at 0, with the numerical rank cutoff ``m·ε·λ_max``."""

    values: np.ndarray
    vectors: np.ndarray
    cutoff: float

    @classmethod
    def of(cls, k: np.ndarray, name: str, where: str, diag_reg: float = 0.0) -> "Spectrum":
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
        """``(h, φ)`` of :mod:`tensorprog.predict` at each time, each ``(len(times), m)``."""
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


def shaped(values: np.ndarray, scalar: bool, trailing: tuple) -> np.ndarray:
    """``(T, rows, c)`` values to ``(T, rows) + trailing``, dropping ``T`` for a scalar time."""
    out = values.reshape(values.shape[:2] + trailing)
    return out[0] if scalar else out
