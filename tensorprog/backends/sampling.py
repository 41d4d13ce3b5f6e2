"""Sampling a program's initial objects at width n, one independent random stream per seed.

What is drawn (docs/theory.md §2, §3, §5), for every seed, in this fixed order:

* every initial matrix ``W`` (n×n), entries ``N(0, σ_W²/n)`` (NTK parametrization: N(0,1)·σ/√n);
  a *generated* matrix (entries correlated across the inputs, ``Cov(W_ab(ξ_i), W_ab(ξ_j)) =
  C_ij/n``) as K independent n×n matrices ``Z_k`` (entries N(0, 1/n)) with
  ``W(ξ_i) = Σ_k A_ik Z_k`` for ``A Aᵀ = C`` (:class:`GeneratedMatrix`);
* every input layer, *honestly*: ``U`` (n×d) with entries ``N(0, σ_U²/d)`` and ``b`` (n×1) with
  entries ``N(0, σ_b²)``, and ``h(ξ_i) = U ξ_i + b`` for each embedding using that weight
  (embeddings naming the same ``weight`` share U and b).  Each coordinate of ``h`` is then
  exactly Gaussian with covariance ``σ_U² ξ_iᵀξ_j/d + σ_b²``, the program's initial covariance;
* all other initial vectors (given families, biases, the readout vector ``v``) jointly, from
  the covariance of all of them (an eigendecomposition, robust to rank deficiency), conditioned
  on the input layers when the program gives cross-covariances with them
  (``x = C_xe C_ee⁺ e + R^{1/2} z`` with ``R = C_xx − C_xe C_ee⁺ C_ex``); a shared vector is one
  column (n×1), a family N columns;
* the readout bias ``b_out ~ N(0, σ_b²)``.

Seed ``s`` draws from ``SeedSequence(entropy=seed, spawn_key=(s,))``, so a seed's network does
not depend on how the seeds are split into chunks.  With ``rng="numpy"`` the numbers come from
NumPy's PCG64 on the host (copied to the device for CuPy: identical networks on both backends);
with ``rng="device"`` CuPy draws them on the GPU (faster; different numbers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ProgramError
from ..ir.instructions import Embedding
from ..ir.program import Program
from ..linalg import psd_factor
from .arrays import is_cupy, to_numpy

RNGS = ("auto", "numpy", "device")


def _entropy(seed) -> list[int]:
    values = [seed] if np.isscalar(seed) else list(seed)
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        out = None
    if not out or any(v < 0 for v in out):
        raise ProgramError(f"seed must be a non-negative integer (or a tuple of them), got {seed!r}")
    return out


class SeedStreams:
    """Independent standard-normal streams, one per seed index (see module docstring)."""

    def __init__(self, xp, seed, rng: str = "auto"):
        if rng not in RNGS:
            raise ProgramError(f"unknown rng {rng!r}; choose one of {list(RNGS)}")
        self.xp = xp
        self.entropy = _entropy(seed)
        self.device = is_cupy(xp) and rng in ("auto", "device")

    def stream(self, s: int):
        """``normal(shape, dtype, out=None)``: standard normals of seed ``s`` (written into
        ``out`` when given, a C-contiguous array of that shape on the backend's device)."""
        ss = np.random.SeedSequence(self.entropy, spawn_key=(int(s),))
        xp = self.xp
        if self.device:
            rs = xp.random.RandomState(seed=int(ss.generate_state(1, dtype=np.uint64)[0]))

            def normal(shape, dtype, out=None):
                z = rs.standard_normal(shape, dtype=dtype)
                if out is None:
                    return z
                out[...] = z
                return out
            return normal
        gen = np.random.default_rng(ss)
        if xp is np:
            def normal(shape, dtype, out=None):
                if out is None:
                    return gen.standard_normal(shape, dtype=dtype)
                return gen.standard_normal(shape, dtype=dtype, out=out)
            return normal

        def normal(shape, dtype, out=None):  # host numbers, copied to the device
            z = xp.asarray(gen.standard_normal(shape, dtype=dtype))
            if out is None:
                return z
            out[...] = z
            return out
        return normal


@dataclass
class GeneratedMatrix:
    """A matrix generated per input: ``W(ξ_i) = Σ_k factor[i, k] Z[:, k]``.

    ``Z`` is (S, K, n, n) with entries N(0, 1/n) and ``factor`` (N, K) satisfies
    ``factor factorᵀ = C``, the entries' covariance over the inputs.
    """

    Z: object
    factor: object

    def matmul(self, x, transpose: bool, xp):
        """``W(ξ_i) x(ξ_i)`` (or ``W(ξ_i)ᵀ x(ξ_i)``) for every input i: (S, n, N)."""
        out = None
        for k in range(self.Z.shape[1]):
            Zk = self.Z[:, k].transpose(0, 2, 1) if transpose else self.Z[:, k]
            term = xp.matmul(Zk, x) * self.factor[:, k]
            out = term if out is None else out + term
        return out


@dataclass
class EmbeddingWeight:
    """One input-layer weight ``(U, b)`` and the embeddings (node, inputs X) that use it."""

    name: str
    var: float
    bias_var: float
    dim: int
    members: list[tuple[str, np.ndarray]] = field(default_factory=list)


@dataclass
class InitialPlan:
    """Everything a seed draws, derived once from the (augmented) program."""

    matrices: list[tuple[str, object]]  # (name, σ²) or (name, (N, K) factor) when generated
    weights: list[EmbeddingWeight]
    others: list[str]
    sizes: list[int]
    factor: np.ndarray          # (M, K): others = z @ factorᵀ (+ conditional mean)
    conditional: np.ndarray | None  # (M, E): coefficient of the embeddings' values
    embeddings: list[str]       # the E columns of ``conditional``, in this order
    readout_bias_var: float


def _joint_cov(p: Program, rows: list[str], cols: list[str]) -> np.ndarray:
    return np.block([[np.asarray(p.init_cov_of(a, b), dtype=float) for b in cols] for a in rows])


def plan_initial(p: Program, readout_bias_var: float = 0.0) -> InitialPlan:
    """The :class:`InitialPlan` of program ``p`` (see the module docstring)."""
    def factor(cov):  # A Aᵀ = cov, eigenvalues up to 1e-12 · max(largest, 1) dropped
        return psd_factor(cov, 1e-12, floor=1.0, symmetrize=True)

    matrices = [(m.name, factor(m.var) if m.generated else m.var) for m in p.nodes("matrix")]
    weights: dict[str, EmbeddingWeight] = {}
    embeddings, others = [], []
    for node in p.nodes("vector"):
        if isinstance(node, Embedding):
            X = p.data[node.data]
            w = weights.setdefault(node.weight, EmbeddingWeight(
                node.weight, node.var, node.bias_var, X.shape[1]))
            w.members.append((node.name, X))
            embeddings.append(node.name)
        else:
            others.append(node.name)
    sizes = [p.family_size(p.node(o).family) for o in others]
    C = _joint_cov(p, others, others) if others else np.zeros((0, 0))
    conditional = None
    if others and embeddings:
        C_oe = _joint_cov(p, others, embeddings)
        if np.any(C_oe):
            C_ee = _joint_cov(p, embeddings, embeddings)
            conditional = C_oe @ np.linalg.pinv(C_ee, rcond=1e-12, hermitian=True)
            C = C - conditional @ C_oe.T
    return InitialPlan(matrices, list(weights.values()), others, sizes, factor(C),
                       conditional, embeddings, float(readout_bias_var))


def draw_initial(plan: InitialPlan, streams: SeedStreams, seeds: range, width: int, dtype,
                 keep: dict | None = None) -> tuple[dict, object]:
    """Draw the initial objects of ``seeds`` (a range of seed indices) at width ``width``.

    Returns ``(values, readout_bias)``: ``values`` maps every matrix to an (S, n, n) array and
    every initial vector to an (S, n, m) array (m its family's size, 1 when shared); ``readout_bias`` is
    an (S,) array.  With ``keep`` a dict, the parameters of each seed are appended to it as host
    arrays (see :attr:`tensorprog.backends.Simulation.parameters`).
    """
    xp, n, S = streams.xp, int(width), len(seeds)
    values = {}
    for name, var in plan.matrices:
        if np.ndim(var) == 0:
            values[name] = xp.empty((S, n, n), dtype=dtype)
        else:
            values[name] = GeneratedMatrix(xp.empty((S, var.shape[1], n, n), dtype=dtype),
                                           xp.asarray(var, dtype=dtype))
    for w in plan.weights:
        for member, X in w.members:
            values[member] = xp.empty((S, n, X.shape[0]), dtype=dtype)
    for name, m in zip(plan.others, plan.sizes):
        values[name] = xp.empty((S, n, m), dtype=dtype)
    readout_bias = np.zeros(S)
    inputs = {id(X): xp.asarray(X.T, dtype=dtype) for w in plan.weights for _, X in w.members}
    factor_t = xp.asarray(plan.factor.T, dtype=dtype)
    cond_t = None if plan.conditional is None else xp.asarray(plan.conditional.T, dtype=dtype)
    bounds = np.cumsum([0] + plan.sizes)

    def record(name, a):
        if keep is not None:
            keep.setdefault(name, []).append(np.array(to_numpy(a)))

    for i, s in enumerate(seeds):
        normal = streams.stream(s)
        for name, var in plan.matrices:
            if np.ndim(var) == 0:
                W = normal((n, n), dtype, out=values[name][i])
                W *= dtype.type(np.sqrt(var / n))
                record(name, W)
                continue
            G = values[name]
            for k in range(var.shape[1]):
                Zk = normal((n, n), dtype, out=G.Z[i, k])
                Zk *= dtype.type(np.sqrt(1.0 / n))
            record(name, xp.einsum("ik,kab->iab", G.factor, G.Z[i]))  # (N, n, n): W(ξ_i)
        e_values = {}
        for w in plan.weights:
            U = normal((n, w.dim), dtype) * dtype.type(np.sqrt(w.var / w.dim))
            b = normal((n, 1), dtype) * dtype.type(np.sqrt(w.bias_var))
            record(w.name, U)
            record(f"{w.name}.bias", b[:, 0])
            for member, X in w.members:
                h = U @ inputs[id(X)] + b
                values[member][i] = h
                e_values[member] = h
        if plan.others:
            joint = normal((n, factor_t.shape[0]), dtype) @ factor_t
            if cond_t is not None:
                e = xp.concatenate([e_values[name] for name in plan.embeddings], axis=1)
                joint = joint + e @ cond_t
            for k, name in enumerate(plan.others):
                block = joint[:, bounds[k]:bounds[k + 1]]
                values[name][i] = block
                record(name, block[:, 0] if block.shape[1] == 1 else block)
        beta = float(to_numpy(normal((1,), np.dtype(np.float64)))[0])
        readout_bias[i] = beta * np.sqrt(plan.readout_bias_var)
        if keep is not None:
            keep.setdefault("readout.bias", []).append(readout_bias[i])
    return values, readout_bias
