r"""Tier 3: randomised quasi-Monte Carlo over the atoms, for factors of high effective dimension.

``E[F(x)]``, ``x ~ N(0, Σ)``, is estimated as ``mean_i F(G z_i)`` with ``G Gᵀ = Σ`` (the r leading
eigenvectors; r is the numerical rank, so degenerate covariances are exact) and ``z_i`` the
inverse-normal transform of a scrambled Sobol sequence in r dimensions
(``scipy.stats.qmc.Sobol``).  ``REPLICAS`` independent scramblings of ``POINTS`` points each give
``REPLICAS`` unbiased estimates; the value is their mean and the error their standard error
``std/√REPLICAS``.  The same points (fixed seeds) are used for every batch point and every call,
so results are reproducible and smooth in the covariance.  The batch is vectorised and processed
in chunks of about 200 MB of temporaries.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ndtri

from .quadrature import whiten

__all__ = ["integrate", "sobol_normal", "POINTS", "REPLICAS", "SEED"]

#: Points per randomisation (a power of 2, as Sobol sequences want).
POINTS = 2 ** 11
#: Independent scramblings; the standard error is computed from their spread.
REPLICAS = 16
SEED = 20240917
MEMORY_BUDGET = 200e6


@lru_cache(maxsize=32)
def sobol_normal(dim: int, points: int = POINTS, replicas: int = REPLICAS, seed: int = SEED):
    """Standard normal quasi-random points, shape (replicas, points, dim)."""
    from scipy.stats import qmc  # imported here: scipy.stats takes ~0.4 s to import

    out = np.empty((replicas, points, dim))
    for r in range(replicas):
        eng = qmc.Sobol(d=dim, scramble=True, seed=np.random.default_rng(seed + 7919 * r))
        u = eng.random_base2(int(np.log2(points)))
        out[r] = ndtri(np.clip(u, 1e-16, 1 - 1e-16))
    out.setflags(write=False)
    return out


def integrate(fn, cov, params, param_names, points: int = POINTS, replicas: int = REPLICAS):
    """``(value, stderr)`` of ``E[fn(*x, *params)]`` for every covariance of the batch.

    ``cov`` is (..., k, k); ``params`` maps each name of ``param_names`` to an array
    broadcastable to the batch; ``fn`` is a lambdified function of the k atoms then the
    parameters.
    """
    cov = np.asarray(cov, dtype=float)
    batch = np.broadcast_shapes(cov.shape[:-2], *[np.shape(params[s]) for s in param_names])
    k = cov.shape[-1]
    cov = np.broadcast_to(cov, batch + (k, k))
    n = int(np.prod(batch)) if batch else 1
    covf = cov.reshape(n, k, k)
    pflat = [np.broadcast_to(np.asarray(params[s], dtype=float), batch).reshape(n)
             for s in param_names]
    G, r = whiten(covf)
    if r == 0:
        vals = np.broadcast_to(fn(*([np.zeros(n)] * k), *pflat), (n,)).astype(float)
        return vals.reshape(batch), np.zeros(batch)
    Z = sobol_normal(r, points, replicas)  # (R, P, r)
    value = np.empty(n)
    err = np.empty(n)
    per_point = replicas * points * 8 * (k + 4)
    size = max(1, int(MEMORY_BUDGET // per_point))
    for start in range(0, n, size):
        sl = slice(start, min(n, start + size))
        Gc = G[sl]  # (c, k, r)
        x = np.einsum("ckr,spr->kcsp", Gc, Z)  # (k, c, R, P)
        args = [p[sl][:, None, None] for p in pflat]
        f = np.broadcast_to(fn(*x, *args), x.shape[1:])
        means = f.mean(axis=-1)  # (c, R)
        value[sl] = means.mean(axis=-1)
        err[sl] = means.std(axis=-1, ddof=1) / np.sqrt(replicas)
    return value.reshape(batch), err.reshape(batch)
