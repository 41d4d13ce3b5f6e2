"""An independent implementation of the standard NTK-parametrization recursion (docs/theory.md §3),
written the way the usual kernel libraries write ``Dense(W_std, b_std)`` stacks:

    K¹ = σ_w² ξ_iᵀξ_j/d + σ_b²          Θ¹ = K¹
    K^{l+1} = σ_w² E[φ(u)φ(v)] + σ_b²    Θ^{l+1} = K^{l+1} + σ_w² E[φ'(u)φ'(v)] Θ^l

with closed forms for relu and erf and a 2-D Gauss–Hermite rule (120 points per axis) for
smooth functions such as gelu.  It shares no code with tensorprog.
"""
import numpy as np
from scipy.special import erf


def _corr(K):
    d = np.sqrt(np.diag(K))
    return d, np.clip(K / np.outer(d, d), -1.0, 1.0)


def relu_pair(K):
    d, c = _corr(K)
    # θ = arccos(c), computed as atan2(√(K11K22 − K12²), K12): exact at c = 1 (the diagonal)
    th = np.arctan2(np.sqrt(np.maximum(np.outer(np.diag(K), np.diag(K)) - K**2, 0.0)), K)
    return (np.outer(d, d) * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi),
            (np.pi - th) / (2 * np.pi))


def erf_pair(K):
    kd = np.diag(K)
    den = np.sqrt(np.outer(1 + 2 * kd, 1 + 2 * kd))
    E = 2 / np.pi * np.arcsin(2 * K / den)
    Ed = 4 / np.pi / np.sqrt(np.outer(1 + 2 * kd, 1 + 2 * kd) - 4 * K**2)
    return E, Ed


def quadrature_pair(f, fp, order=120):
    x, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()

    def pair(K):
        kd = np.diag(K)
        a = np.sqrt(kd)[:, None, None, None] * x[None, None, :, None]
        rho = K / np.sqrt(np.outer(kd, kd))
        rho = np.clip(rho, -1, 1)
        s = np.sqrt(kd)[None, :, None, None]
        b = s * (rho[:, :, None, None] * x[None, None, :, None]
                 + np.sqrt(1 - rho[:, :, None, None] ** 2) * x[None, None, None, :])
        W = w[:, None] * w[None, :]
        return ((f(a) * f(b) * W).sum((-1, -2)), (fp(a) * fp(b) * W).sum((-1, -2)))

    return pair


def gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def gelu_prime(x):
    return 0.5 * (1 + erf(x / np.sqrt(2))) + x * np.exp(-x**2 / 2) / np.sqrt(2 * np.pi)


PAIRS = {"relu": relu_pair, "erf": erf_pair, "gelu": quadrature_pair(gelu, gelu_prime)}


def mlp_kernels(X, depth, wvar, bvar, activation):
    """(NNGP, NTK) of the MLP with ``depth`` hidden matrices (depth+1 nonlinear layers)."""
    pair = PAIRS[activation]
    K = wvar * X @ X.T / X.shape[1] + bvar
    T = K.copy()
    for _ in range(depth + 1):
        E, Ed = pair(K)
        K_next = wvar * E + bvar
        T = K_next + wvar * Ed * T
        K = K_next
    return K, T
