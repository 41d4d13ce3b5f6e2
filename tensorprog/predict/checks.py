"""Input checks of the kernel predictions: every bad input is a :class:`PredictionError`
naming the function and the argument."""
from __future__ import annotations

import numpy as np

from ..errors import PredictionError

#: Relative tolerance of the symmetry check, ``max|K − Kᵀ| ≤ SYM_RTOL·max|K|``.
SYM_RTOL = 1e-10
#: Relative tolerance of the PSD check, ``λ_min ≥ −PSD_RTOL·λ_max``.
PSD_RTOL = 1e-9


def as_array(value, name: str, where: str) -> np.ndarray:
    """``value`` as a float array of finite numbers."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise PredictionError(f"{where}: {name} must be an array of numbers") from None
    if not np.all(np.isfinite(arr)):
        raise PredictionError(f"{where}: {name} contains NaN or infinity; pass finite values")
    return arr


def train_kernel(k, name: str, where: str) -> np.ndarray:
    """A non-empty square symmetric kernel, symmetrised."""
    k = as_array(k, name, where)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise PredictionError(f"{where}: {name} must be a non-empty square (m, m) array, got "
                              f"shape {k.shape}")
    scale = float(np.max(np.abs(k)))
    if np.max(np.abs(k - k.T)) > SYM_RTOL * scale:
        raise PredictionError(f"{where}: {name} is not symmetric (max |k − kᵀ| = "
                              f"{np.max(np.abs(k - k.T)):.3g}); pass a kernel matrix")
    return (k + k.T) / 2


def targets(y, m: int, where: str) -> np.ndarray:
    """Targets ``(m,)`` or ``(m, c)``, one row per training point."""
    y = as_array(y, "y_train", where)
    if y.ndim not in (1, 2) or y.shape[0] != m:
        raise PredictionError(f"{where}: y_train has shape {y.shape} for {m} training points; "
                              "pass one target (row) per training point")
    return y


def cross_kernel(k, m: int, name: str, where: str) -> np.ndarray:
    """A test×train block ``(n, m)``."""
    if k is None:
        raise PredictionError(f"{where}: test predictions need {name}; pass it (an (n_test, {m}) "
                              "array)")
    k = as_array(k, name, where)
    if k.ndim != 2 or k.shape[1] != m:
        raise PredictionError(f"{where}: {name} must be an (n_test, {m}) array of test×train "
                              f"kernel values, got shape {k.shape}")
    return k


def nngp_test_block(k, n: int, where: str) -> np.ndarray:
    """The test×test NNGP block ``(n, n)`` (symmetrised) or its diagonal ``(n,)``."""
    k = as_array(k, "nngp_test_test", where)
    if k.shape == (n,):
        return k
    if k.shape != (n, n):
        raise PredictionError(f"{where}: nngp_test_test must be the ({n}, {n}) test×test "
                              f"kernel or its diagonal ({n},), got shape {k.shape}")
    return (k + k.T) / 2


def initial_outputs(f0, shape: tuple, name: str, where: str) -> np.ndarray:
    """Initial outputs broadcast to ``shape``."""
    f0 = as_array(f0, name, where)
    try:
        return np.broadcast_to(f0, shape)
    except ValueError:
        raise PredictionError(f"{where}: {name} has shape {f0.shape}, expected {shape} (or a "
                              "scalar)") from None


def learning_rate(lr, where: str) -> float:
    """A finite positive learning rate."""
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise PredictionError(f"{where}: the learning rate must be a number, got {lr!r}") from None
    if not np.isfinite(lr) or lr <= 0:
        raise PredictionError(f"{where}: the learning rate must be finite and > 0, got {lr!r}")
    return lr


def time_points(t, steps, where: str) -> tuple[str, np.ndarray, bool]:
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


def diag_reg_value(diag_reg, where: str) -> float:
    """A finite regulariser ≥ 0."""
    try:
        value = float(diag_reg)
    except (TypeError, ValueError):
        value = np.nan
    if not np.isfinite(value) or value < 0:
        raise PredictionError(f"{where}: diag_reg must be a finite number ≥ 0, got {diag_reg!r}")
    return value
