"""The particle evaluator: a program's limit on one set of joint samples of its Z variables.

The Master Theorem (TP IIb Thm. B.4) says that the coordinates of every vector of a program
converge to a random variable ``Z`` built by the rules of Def. B.3 (``docs/theory.md`` §2).
This module samples those random variables *together*: M "particles" are M independent draws
of the whole collection ``(Z^x)_x``, and every instruction is evaluated once, in program
order, on the particle arrays of its arguments:

* ZINIT      the initial vectors and input layers of one independence class (connected by
  declared initial covariances) are drawn jointly, with the program's covariances;
* ZNONLIN⁺   ``ψ`` is applied to the arguments' particle arrays (scalars are numbers);
* ZMOMENT    ``θ̊ = E ψ(…)`` is the particle mean;
* ZMATMUL    ``Z^{Wx} = Ẑ^{Wx} + Ż^{Wx}`` (:class:`GaussianFamily`): the ZHAT atoms of one matrix
  orientation are the Gaussian process with covariance ``σ_W² E[Z^x Z^y]``, here with the
  particle inner product ``<x, y> = (1/M) Σ_p x_p y_p`` in place of the expectation.  The
  family keeps an orthonormal basis ``Q`` of the span of its arguments (Gram–Schmidt in that
  inner product) and, for each basis vector, an independent standard normal ``U``, so that
  ``Ẑ^{Wx} = σ_W Σ_i <x, Q_i> U_i``: a new argument is projected on the basis (the stable least
  squares that repeated inputs need: a direction already in the span adds nothing) and only its
  residual gets fresh normals.  The ZDOT term ``Ż^{Wx} = σ_W² Σ_y E[∂Z^x/∂Ẑ^{Wᵀy}] Z^y`` is, in
  the basis of the opposite family ``(Q̄, Ū)``, ``σ_W Σ_i E[∂Z^x/∂Ū_i] Q̄_i``, and by Stein's
  lemma for the independent standard normals ``Ū_i`` (TP IIb Remark B.6)
  ``E[∂Z^x/∂Ū_i] = E[Ū_i Z^x]``, a particle mean.  Only the basis blocks ``Z^x`` depends on
  enter the sum (the others have zero coefficients).

Draws: randomised quasi-Monte Carlo normals (:class:`NormalSource`, scrambled Sobol points,
largest variance first), which cut the errors of a three-step muP run about fourfold against
pseudo-random ones at equal cost.

Error bars: the whole evaluation is run as R independent replicas (vectorised: every array is
(members, replicas, M), a few replicas at a time); a scalar's value is the mean over replicas
and its error the standard error ``std/√R`` of that mean, which includes the propagation of
every earlier estimate through the program.  The particle means themselves carry an O(1/M) bias (the limit scalars enter later
instructions as estimates), small against the standard error ``O(1/√(RM))`` for the sizes used.
"""
from __future__ import annotations

import numpy as np

from ..errors import ExpectationError, LimitError
from ..expectations.montecarlo import sobol_normal
from ..expectations.tape import Tape
from ..ir.instructions import (Embedding, InitialMatrix, InitialScalar, InitialVector, MatMul,
                               Moment, Nonlin, Select)
from ..ir.program import Program
from ..ir.rules import RuleTable
from ..linalg import psd_factor
from ..resources import Progress

__all__ = ["GaussianFamily", "NormalSource", "ParticleLimit", "ParticlePass", "standard_error"]

#: Particles per replica, replicas, and replicas evaluated together (docs/performance.md,
#: "The training limit": 3 muP steps of a 2-hidden-layer MLP on 8 + 4 inputs in 10–14 CPU
#: seconds and 0.63 GB, largest standard error 6e-3).
PARTICLES_DEFAULT, REPLICAS_DEFAULT, REPLICA_CHUNK = 16384, 16, 4
#: Residual directions whose variance is below this fraction of the largest argument variance
#: are taken as lying in the span already (repeated or linearly dependent arguments).
RANK_TOL = 1e-10


class NormalSource:
    """Standard normals on demand, (k, R, M) at a time, dimension after dimension: randomised
    quasi-Monte Carlo, each replica's dimensions taken in blocks of ``BLOCK`` from its own
    scrambled Sobol sequences (one per block, as the Monte-Carlo tier's points), or
    pseudo-random normals with ``qmc=False``.  The replicas stay independent, so their spread is
    still an unbiased error estimate.

    Parameters
    ----------
    replicas, particles : int
        R and M (M a power of 2 with ``qmc``).
    seed : int
        Seed of the scramblings or of the pseudo-random normals.
    qmc : bool
        Sobol points (True) or pseudo-random normals.
    first : int
        The index of the first replica (replica r's points depend on ``seed`` and r only, so
        replicas drawn in chunks are those drawn at once).
    """

    #: Dimensions of one Sobol sequence (a block is generated when the previous one is used up).
    BLOCK = 256

    def __init__(self, replicas: int, particles: int, seed: int, qmc: bool = True,
                 first: int = 0):
        self.shape = (replicas, particles)
        self.seed, self.qmc = seed + 7919 * first, qmc
        self.rng = np.random.default_rng(self.seed)
        self.block, self.blocks, self.used = None, 0, 0

    def __call__(self, k: int) -> np.ndarray:
        """The next ``k`` dimensions: a (k, R, M) array."""
        if not self.qmc:
            return self.rng.standard_normal((k,) + self.shape)
        out = np.empty((k,) + self.shape)
        done = 0
        while done < k:
            if self.block is None or self.used == self.BLOCK:
                R, M = self.shape
                self.block = sobol_normal.__wrapped__(  # not cached: R·M·BLOCK values
                    self.BLOCK, M, R, self.seed + 104729 * self.blocks).astype(np.float32)
                self.blocks, self.used = self.blocks + 1, 0
            n = min(k - done, self.BLOCK - self.used)
            out[done:done + n] = np.moveaxis(self.block[:, :, self.used:self.used + n], -1, 0)
            self.used += n
            done += n
        return out


class GaussianFamily:
    """The ZHAT atoms of one matrix orientation on particles (module docstring).

    ``Q`` (r, R, M) is an orthonormal basis, per replica, of the span of the arguments seen so
    far under the particle inner product, ``U`` (r, R, M) its independent standard normals, and
    ``blocks`` the rows each MATMUL added, with the basis blocks its arguments depended on.

    Parameters
    ----------
    sigma : float
        σ_W (the square root of the matrix's variance).
    """

    def __init__(self, sigma: float):
        self.sigma = sigma
        self.Q: np.ndarray | None = None
        self.U: np.ndarray | None = None
        self.blocks: list[tuple[slice, frozenset]] = []

    @property
    def rank(self) -> int:
        return 0 if self.Q is None else self.Q.shape[0]

    def zhat(self, X: np.ndarray, deps: frozenset, normals: NormalSource, key) -> tuple:
        """``Ẑ^{WX}`` (m, R, M) of arguments ``X`` (m, R, M), extending the basis; returns it
        with the basis blocks it depends on (labelled ``(key, block)``).

        Parameters
        ----------
        X : numpy.ndarray
            Particles of the arguments' Z, members × replicas × particles.
        deps : frozenset
            The basis blocks (of every family) ``X`` depends on.
        normals : NormalSource
            Source of the fresh normals.
        key : hashable
            The family's label in dependency sets.

        Returns
        -------
        tuple
            ``(Ẑ, deps of Ẑ)``.
        """
        M = X.shape[-1]
        coef = None
        resid = X
        if self.rank:
            coef = np.zeros(X.shape[:2] + (self.rank,))
            for _ in range(2):  # twice is enough (Gram–Schmidt re-orthogonalised)
                c = np.einsum("irp,krp->irk", resid, self.Q) / M
                resid = resid - np.einsum("irk,krp->irp", c, self.Q)
                coef += c
        S = np.einsum("irp,jrp->rij", resid, resid) / M
        lam, V = np.linalg.eigh(S)
        lam, V = lam[:, ::-1], V[:, :, ::-1]   # (R, m), (R, m, m): largest variance first
        scale = np.einsum("irp,irp->ri", X, X).max(axis=1) / M       # (R,)
        keep = lam > RANK_TOL * np.maximum(scale, 1e-300)[:, None]
        cols = np.flatnonzero(keep.any(axis=0))
        out = np.zeros_like(X) if coef is None else np.einsum("irk,krp->irp", coef, self.U)
        if cols.size:
            root = np.where(keep[:, cols], np.sqrt(np.where(keep[:, cols], lam[:, cols], 1.0)),
                            0.0)                                       # (R, k)
            Vk = V[:, :, cols]                                        # (R, m, k)
            inv = np.where(root > 0, 1.0 / np.where(root > 0, root, 1.0), 0.0)
            Qn = np.einsum("rik,irp->krp", Vk * inv[:, None, :], resid)
            Un = normals(Qn.shape[0])
            out += np.einsum("rik,krp->irp", Vk * root[:, None, :], Un)
            start = self.rank
            self.Q = Qn if self.Q is None else np.concatenate([self.Q, Qn])
            self.U = Un if self.U is None else np.concatenate([self.U, Un])
            before = self.blocks[-1][1] if self.blocks else frozenset()
            self.blocks.append((slice(start, self.rank), before | deps))
        own = frozenset((key, b) for b in range(len(self.blocks)))
        return self.sigma * out, own

    def zdot(self, Z: np.ndarray, deps: frozenset, key, sigma: float) -> tuple:
        """``Ż`` (m, R, M) of a MATMUL of the *opposite* orientation whose argument has
        particles ``Z`` depending on ``deps``: ``σ Σ_i E[Ū_i Z] Q̄_i`` over this family's rows
        that ``Z`` depends on (Stein's lemma, module docstring), with the dependencies of
        those rows; ``(None, ∅)`` when ``Z`` depends on none.

        Parameters
        ----------
        Z : numpy.ndarray
            The argument's particles (m, R, M).
        deps : frozenset
            The basis blocks ``Z`` depends on.
        key : hashable
            This family's label in dependency sets.
        sigma : float
            σ_W of the matrix.

        Returns
        -------
        tuple
            ``(Ż or None, its dependencies)``.
        """
        used = [b for b in range(len(self.blocks)) if (key, b) in deps]
        if not used:
            return None, frozenset()
        rows = np.concatenate([np.arange(self.rank)[self.blocks[b][0]] for b in used])
        U, Q = self.U[rows], self.Q[rows]
        M = Z.shape[-1]
        centred = Z - Z.mean(axis=-1, keepdims=True)  # same expectation, less variance
        coef = np.einsum("irp,krp->irk", centred, U) / M
        return sigma * np.einsum("irk,krp->irp", coef, Q), self.blocks[max(used)][1]


class ParticleLimit:
    """The limit of a program's scalars on particles (module docstring), with end-to-end
    error bars over independent replicas.

    Attributes
    ----------
    replicas : dict
        ``name -> (m, R)`` array: each limit scalar's value in each replica.
    max_error_so_far, max_error : float
        The largest standard error of a limit scalar.
    tiers_used : set
        ``{"particles"}``.

    Parameters
    ----------
    program : Program
        The program; every instruction is evaluated on construction.
    particles : int
        M, particles per replica.
    replicas : int
        R ≥ 2 independent replicas (the error bars' degrees of freedom are R − 1).
    seed : int
        Seed of the draws; two programs with the same instructions get the same draws at the
        same instructions (common random numbers), so differences of their scalars are precise.
    qmc : bool
        Randomised quasi-Monte Carlo normals (:class:`NormalSource`; M a power of 2).
    chunk : int
        Replicas evaluated together (memory grows with chunk · M).

    Raises
    ------
    LimitError
        A particle or replica count that is too small, or a generated matrix (input-dependent
        entries: use another tier).
    ExpectationError
        An instruction whose ψ is not finite on the particles (named with its line).

    Example
    -------
    >>> lim = ParticleLimit(tp.demo_program(moment=True), particles=4096, replicas=8)
    >>> lim.scalar("th").round(2), (lim.scalar_error("th") < 0.01).all()   # E relu(Z)², 0.55
    (array([0.55, 0.55]), True)
    """

    def __init__(self, program: Program, particles: int = PARTICLES_DEFAULT,
                 replicas: int = REPLICAS_DEFAULT, seed: int = 0, qmc: bool = True,
                 chunk: int = REPLICA_CHUNK):
        if int(particles) < 2 or int(replicas) < 2:
            raise LimitError(f"the particle tier needs at least 2 particles and 2 replicas, got "
                             f"particles={particles}, replicas={replicas}")
        M, R = int(particles), int(replicas)
        if qmc and M & (M - 1):
            raise LimitError(f"the particle tier's quasi-Monte Carlo points need a power of 2 "
                             f"particles, got {particles}; pass qmc=False or a power of 2")
        program.validate()
        self.program, self.M, self.R = program, M, R
        self.tiers_used = {"particles"}
        order, last = program.nodes(), _last_uses(program)
        starts = range(0, R, max(1, int(chunk)))
        progress = Progress(f"particles of {program.name!r}", len(order) * len(starts))
        passes = []
        for c, first in enumerate(starts):
            run = ParticlePass(program, M, NormalSource(min(chunk, R - first), M, seed, qmc,
                                                        first))
            for k, node in enumerate(order):
                progress(c * len(order) + k + 1)
                PARTICLES(node, run)
                for name in last.get(node.name, ()):
                    run.vectors.pop(name, None)
            passes.append(run.replicas)
        progress.close()
        self.replicas = {name: np.concatenate([p[name] for p in passes], axis=1)
                         for name in passes[0]}

    # ------------------------------------------------------------------ queries
    def scalar(self, name: str) -> np.ndarray:
        """θ̊ of the scalar ``name`` (ZMOMENT), averaged over the replicas.

        Parameters
        ----------
        name : str
            A scalar of the program.

        Returns
        -------
        numpy.ndarray
            (m,): one value per member of the scalar's family.

        Raises
        ------
        LimitError
            No scalar of that name.
        """
        return self._replicas(name).mean(axis=1)

    def scalar_error(self, name: str) -> np.ndarray:
        """The standard error (m,) of :meth:`scalar` ``(name)`` over the replicas."""
        return standard_error(self._replicas(name))

    def _replicas(self, name: str) -> np.ndarray:
        if name not in self.replicas:
            raise LimitError(f"no scalar {name!r} in program {self.program.name!r}")
        return self.replicas[name]

    @property
    def max_error(self) -> float:
        return max((float(standard_error(v).max(initial=0.0)) for v in self.replicas.values()),
                   default=0.0)

    max_error_so_far = max_error



class ParticlePass:
    """One evaluation of a program on (members, R, M) particle arrays (:class:`ParticleLimit`
    runs one per chunk of replicas): ``vectors`` (freed after their last use), ``replicas``
    the scalars' (m, R) values, ``deps`` the ZHAT basis blocks each vector depends on.

    Parameters
    ----------
    program : Program
        The program (the rules of :data:`PARTICLES` fill the pass instruction by instruction).
    particles : int
        M.
    normals : NormalSource
        The fresh normals of the R replicas of this pass.
    """

    def __init__(self, program: Program, particles: int, normals: NormalSource):
        self.program, self.M, self.normals = program, particles, normals
        self.R = normals.shape[0]
        self.vectors: dict[str, np.ndarray] = {}
        self.replicas: dict[str, np.ndarray] = {}
        self.deps: dict[str, frozenset] = {}
        self.families: dict[tuple, GaussianFamily] = {}
        self.drawn: set[str] = set()

    def size(self, name: str) -> int:
        """The number of members of ``name``'s family."""
        return self.program.family_size(self.program.node(name).family)

    def apply(self, node) -> np.ndarray:
        """ψ of a NONLIN or MOMENT on the particles of its arguments (vectors (m, R, M),
        scalars (m, R, 1)): an array broadcastable to (m, R, M)."""
        arrays = {v: self.vectors[v] for v in node.vectors}
        arrays.update({s: self.replicas[s][:, :, None] for s in node.parameters})
        free = sorted(node.expr.free_symbols, key=lambda s: s.name)
        value = Tape(free, [node.expr])(*[arrays[s.name] for s in free])[0]
        value = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(value)):
            raise ExpectationError(
                f"in {node.kind.upper()} {node.name!r} (line {self.program.line_of(node.name)}): "
                f"ψ = {node.expr} is not finite on the particles of its arguments; the Master "
                "Theorem needs ψ with finite moments (regularise it, e.g. 1/(h² + ε))")
        return value

    def draw_class(self, name: str) -> None:
        """Draw every initial vector of ``name``'s independence class jointly (ZINIT)."""
        members = _init_class(self.program, name)
        sizes = [self.size(a) for a in members]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        C = np.zeros((offsets[-1], offsets[-1]))
        for i, a in enumerate(members):
            for j, b in enumerate(members):
                C[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] = \
                    self.program.init_cov_of(a, b)
        root = psd_factor(C, RANK_TOL, 1e-300, symmetrize=True)[:, ::-1]  # largest first
        Z = np.einsum("ik,krp->irp", root, self.normals(root.shape[1]))
        for i, a in enumerate(members):
            self.vectors[a] = Z[offsets[i]:offsets[i + 1]]
            self.deps[a] = frozenset()
            self.drawn.add(a)

    def family(self, matrix: str, transpose: bool) -> GaussianFamily:
        key = (matrix, transpose)
        if key not in self.families:
            var = self.program.node(matrix).var
            if np.ndim(var):
                raise LimitError(f"the particle tier does not evaluate the generated matrix "
                                 f"{matrix!r} (input-dependent entries); use tier='auto' or "
                                 "'montecarlo'")
            self.families[key] = GaussianFamily(float(np.sqrt(var)))
        return self.families[key]

    def matmul(self, node: MatMul) -> None:
        m = self.size(node.name)
        X = np.broadcast_to(self.vectors[node.arg], (m, self.R, self.M))
        deps = self.deps[node.arg]
        key = (node.matrix, node.transpose)
        own = self.family(*key)
        Z, zdeps = own.zhat(X, deps, self.normals, key)
        opposite = (node.matrix, not node.transpose)
        if opposite in self.families:
            dot, ddeps = self.families[opposite].zdot(X, deps, opposite, own.sigma)
            if dot is not None:
                Z = Z + dot
                zdeps = zdeps | ddeps
        self.vectors[node.name] = Z
        self.deps[node.name] = zdeps


def standard_error(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Standard error of the mean of independent replicas along ``axis``.

    Parameters
    ----------
    values : numpy.ndarray
        Replica estimates (at least 2 along ``axis``).
    axis : int
        The replicas' axis.

    Returns
    -------
    numpy.ndarray
        ``std(ddof=1)/√R`` with ``axis`` removed.
    """
    return values.std(axis=axis, ddof=1) / np.sqrt(values.shape[axis])


def _last_uses(program: Program) -> dict:
    """``instruction -> [vectors last read by it]`` (their particles are freed after it)."""
    last = {}
    for name in program.order:
        node = program.node(name)
        for arg in getattr(node, "args", ()) or ():
            last[arg] = name
    out: dict[str, list] = {}
    for arg, name in last.items():
        out.setdefault(name, []).append(arg)
    return out


def _init_class(program: Program, name: str) -> list:
    """The initial vectors connected to ``name`` by declared initial covariances, in program
    order (drawn jointly)."""
    linked: dict[str, set] = {}
    for a, b in program.init_cov:
        linked.setdefault(a, set()).add(b)
        linked.setdefault(b, set()).add(a)
    seen, todo = {name}, [name]
    while todo:
        for b in linked.get(todo.pop(), ()):
            if b not in seen:
                seen.add(b)
                todo.append(b)
    return sorted(seen, key=program.position)


#: The particle rule of each instruction: ``PARTICLES(record, pass)`` stores the record's
#: particles (vectors) or replica values (scalars).
PARTICLES = RuleTable("particles")


@PARTICLES.rule(InitialMatrix)
def _(node: InitialMatrix, lim: ParticlePass) -> None:
    """A matrix has no particles of its own: its MATMULs do."""


@PARTICLES.rule(Embedding, InitialVector)
def _(node, lim: ParticlePass) -> None:  # ZINIT
    if node.name not in lim.drawn:
        lim.draw_class(node.name)


@PARTICLES.rule(InitialScalar)
def _(node: InitialScalar, lim: ParticlePass) -> None:
    lim.replicas[node.name] = np.full((1, lim.R), float(node.value))


@PARTICLES.rule(Nonlin)
def _(node: Nonlin, lim: ParticlePass) -> None:  # ZNONLIN+
    m = lim.size(node.name)
    lim.vectors[node.name] = np.broadcast_to(lim.apply(node), (m, lim.R, lim.M))
    lim.deps[node.name] = frozenset().union(*(lim.deps[v] for v in node.vectors))


@PARTICLES.rule(Moment)
def _(node: Moment, lim: ParticlePass) -> None:  # ZMOMENT: the particle mean
    m = lim.size(node.name)
    value = np.broadcast_to(lim.apply(node), (m, lim.R, lim.M))
    lim.replicas[node.name] = value.mean(axis=-1)


@PARTICLES.rule(Select)
def _(node: Select, lim: ParticlePass) -> None:  # a view of other members, 0 where index -1
    index = np.asarray(node.index)
    Z = lim.vectors[node.arg][np.maximum(index, 0)]
    if (index < 0).any():
        Z = Z * (index >= 0)[:, None, None]
    lim.vectors[node.name] = Z
    lim.deps[node.name] = lim.deps[node.arg]


@PARTICLES.rule(MatMul)
def _(node: MatMul, lim: ParticlePass) -> None:  # ZMATMUL = ZHAT + ZDOT
    lim.matmul(node)
