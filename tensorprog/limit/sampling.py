r"""The Monte-Carlo tier of the limit: joint quasi-Monte Carlo over whole atom families.

Where an expectation has no closed form and more effective dimensions than quadrature handles,
integrating each of the ``ma·mb`` input pairs on its own costs ``O(ma·mb·P)`` evaluations of the
integrand.  The Master Theorem gives more: the atoms of *every* member of every family are
jointly Gaussian (TP IIb Def. B.3, docs/theory.md §2), so one joint draw of all of them is one
coordinate of the infinite-width network on all inputs at once.  This module draws P such
coordinates, evaluates ``Z^a(ξ_i)`` for every member i on each, and estimates

    E[Z^a(ξ_i) Z^b(ξ_j)] ≈ (1/P) Σ_p Z^a_i(p) Z^b_j(p),

a matrix product: ``O((ma + mb)·P)`` evaluations, and the kernel estimate is positive
semidefinite by construction.

**Draws.**  Atoms fall into independence groups (all initial vectors; each matrix and each
orientation, ZHAT).  The covariance of a group's (base, member) coordinates is assembled from
the evaluator's base blocks and factored by ``eigh`` (``G Gᵀ = C`` on its numerical rank; the
slightly negative eigenvalues of blocks that were themselves estimated are set to zero, the
projection onto the PSD cone).  The principal components of all groups are ordered by variance
and the leading ``SOBOL_DIMENSIONS`` are driven by a scrambled Sobol sequence (whose first
coordinates are the most uniform), the rest by pseudo-random normals (randomised QMC with
padding).  ``REPLICAS`` independent randomisations of ``POINTS`` points each give unbiased
estimates; the value is their mean and the error their standard error.  Seeds are fixed, so
results are reproducible.

Accuracy (``Limit.max_error`` reports the largest standard error): the GRU state over three
steps on 100 inputs has kernel entries ≈ 0.1 with standard errors ≈ 3.8e-4 (plain Monte Carlo
with as many points: 1.6e-3).  The cost is O((ma + mb)·P) integrand evaluations where the
per-pair route costs O(ma·mb·P): BatchNorm's NTK on 100 inputs takes 16 s instead of more than
25 minutes.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import ExpectationError, ResourceError
from ..expectations.montecarlo import sobol_normal
from ..linalg import psd_factor
from ..numerics import JOINT_NEGATIVE_RTOL as NEGATIVE_RTOL
from ..numerics import JOINT_POINTS as POINTS
from ..numerics import JOINT_RANK_RTOL as RANK_RTOL
from ..numerics import JOINT_SEED as SEED
from ..numerics import REPLICAS
from .atoms import Base, LeafTable
from ..expectations.tape import Tape

__all__ = ["JointSampler", "POINTS", "REPLICAS", "SOBOL_DIMENSIONS"]

#: Principal components driven by the Sobol sequence; further ones by pseudo-random normals
#: (on the GRU over three steps and 100 inputs, 64 give the same errors as 512).
SOBOL_DIMENSIONS = 64
#: Largest independence group factored (an eigendecomposition of this size takes minutes and
#: gigabytes); beyond it the family is too large for joint draws.
MAX_GROUP_DIMENSION = 16384


class JointSampler:
    """Expectations of Z expressions over all members at once, by joint draws of the atoms.

    ``leaves`` is the evaluator's :class:`LeafTable`; ``block(a, b)`` the covariance array of
    two atom bases (``None`` when independent)."""

    def __init__(self, leaves: LeafTable, block, points: int | None = None,
                 replicas: int | None = None):
        self.leaves = leaves
        self.block = block
        self.points = POINTS if points is None else points
        self.replicas = REPLICAS if replicas is None else replicas
        self._factors: dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------------ estimates
    def single(self, expr: sp.Expr, m: int):
        """``(value, stderr)`` of ``E[expr(i)]`` for the m members: (m,) arrays."""
        (value,), (err,) = self.singles([expr], m)
        return value, err

    def singles(self, exprs, m: int):
        """``([value], [stderr])`` of ``E[expr(i)]`` for every expression of ``exprs``, all
        estimated on the same draws in one pass (their common subexpressions evaluated once):
        lists of (m,) arrays."""
        est = np.array([[F.mean(axis=1) for F in Fs]
                        for Fs in self._samples([(e, m) for e in exprs])])
        out = [_summary(est[:, k]) for k in range(len(exprs))]
        return [v for v, _ in out], [e for _, e in out]

    def pair(self, ea: sp.Expr, ma: int, eb: sp.Expr, mb: int):
        """``(value, stderr)`` of ``E[ea(i) eb(j)]``: (ma, mb) arrays."""
        same = ea == eb and ma == mb
        exprs = [(ea, ma)] if same else [(ea, ma), (eb, mb)]
        est = []
        for Fs in self._samples(exprs):
            Fa, Fb = Fs[0], Fs[-1]
            est.append(Fa @ Fb.T / Fa.shape[1])
        return _summary(np.array(est))

    # ------------------------------------------------------------------ draws
    def _samples(self, exprs):
        """For each replica, the (m, P) values of every expression on one set of joint draws."""
        L = self.leaves
        atoms, params = {}, {}
        for expr, _ in exprs:
            a, q = L.split(expr)
            atoms.update(dict.fromkeys(a))
            params.update(dict.fromkeys(q))
        atoms, params = list(atoms), list(params)
        tape = Tape(atoms + params, [expr for expr, _ in exprs])
        pvals = [L.info[q][0].values[L.info[q][1]][:, None] for q in params]
        bases = list({id(L.info[s][0]): L.info[s][0] for s in atoms}.values())
        plan = self._plan(bases)
        rank = sum(G.shape[1] for _, G, _ in plan)
        for r in range(self.replicas):
            z = _normals(rank, self.points, self.replicas, r)
            draws = {}
            for group, G, dims in plan:
                x = G @ z[dims]
                start = 0
                for b in group:
                    draws[b.key] = x[start:start + b.size]
                    start += b.size
            args = [_rows(draws[L.info[s][0].key], L.info[s][1]) for s in atoms]
            yield [np.broadcast_to(F, (m, self.points))
                   for F, (_, m) in zip(tape(*args, *pvals), exprs)]

    def _plan(self, bases: list[Base]):
        """``[(group bases, G, z rows)]``: each independence group's factor, and the rows of the
        normal draws that feed its components (all components ordered by variance)."""
        groups: dict[str, list[Base]] = {}
        for b in sorted(bases, key=lambda b: b.key):
            groups.setdefault(b.group, []).append(b)
        factors = [(bs, self._factor(bs)) for bs in groups.values()]
        variances = np.concatenate([np.sum(G * G, axis=0) for _, G in factors])
        row = np.empty(len(variances), dtype=np.intp)
        row[np.argsort(-variances, kind="stable")] = np.arange(len(variances))
        plan, start = [], 0
        for bs, G in factors:
            plan.append((bs, G, row[start:start + G.shape[1]]))
            start += G.shape[1]
        return plan

    def _factor(self, group: list[Base]) -> np.ndarray:
        """``G`` (D, r) with ``G Gᵀ`` the covariance of the group's (base, member) coordinates."""
        key = tuple(b.key for b in group)
        if key in self._factors:
            return self._factors[key]
        offsets = np.cumsum([0] + [b.size for b in group])
        if offsets[-1] > MAX_GROUP_DIMENSION:
            raise ResourceError(
                f"the Monte-Carlo tier would draw {offsets[-1]} jointly Gaussian coordinates "
                f"({', '.join(b.display for b in group)}: {len(group)} atoms × their members), "
                f"more than {MAX_GROUP_DIMENSION}; use fewer inputs (or positions) per kernel "
                "call, e.g. compute the kernel on blocks of inputs")
        C = np.zeros((offsets[-1], offsets[-1]))
        for i, a in enumerate(group):
            for j in range(i, len(group)):
                blk = self.block(a, group[j])
                if blk is not None:
                    C[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] = blk
                    C[offsets[j]:offsets[j + 1], offsets[i]:offsets[i + 1]] = np.transpose(blk)
        G = psd_factor(C, RANK_RTOL, rtol_negative=NEGATIVE_RTOL, describe=lambda low, top: (
            f"the joint covariance of {', '.join(b.display for b in group)} is not positive "
            f"semidefinite (eigenvalue {low:.3g} against {top:.3g})"))
        self._factors[key] = G
        return G


def _normals(rank: int, points: int, replicas: int, replica: int) -> np.ndarray:
    """(rank, points) standard normals of one randomisation: scrambled Sobol in the leading
    rows (the Monte-Carlo tier's cached points), padded with pseudo-random ones."""
    lead = min(rank, SOBOL_DIMENSIONS)
    z = np.empty((rank, points))
    z[:lead] = sobol_normal(SOBOL_DIMENSIONS, points, replicas, SEED)[replica, :, :lead].T
    if rank > lead:
        z[lead:] = np.random.default_rng(SEED + 7919 * replica + 1).standard_normal(
            (rank - lead, points))
    return z


def _rows(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``x[index]``, a view (no copy) when ``index`` is a run of consecutive members."""
    if len(index) and np.all(np.diff(index) == 1):
        return x[index[0]:index[-1] + 1]
    return x[index]


def _summary(estimates: np.ndarray):
    """Mean and standard error over the replicas (leading axis)."""
    value = estimates.mean(axis=0)
    err = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    if not np.all(np.isfinite(value)):
        raise ExpectationError("a Monte-Carlo estimate is not finite: the integrand overflows "
                               "on some draws (check the nonlinearities' growth)")
    return value, err
