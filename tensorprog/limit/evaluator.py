"""The Master-Theorem evaluator: the Z of every vector and the limit of every scalar.

Implements the rules of TP IIb Definition B.3 (docs/theory.md §2), in program order:

* ZINIT     ``Z^{v}`` of an initial vector is its Gaussian atom;
* ZNONLIN⁺  ``Z^{ψ(x…;θ…)} = ψ(Z^{x}…; θ̊…)``;
* ZMOMENT   ``θ̊ = E ψ(Z^{x}…; θ̊…)``;
* ZMATMUL   ``Z^{Wx} = Ẑ^{Wx} + Ż^{Wx}`` with
  ZHAT  ``Cov(Ẑ^{Wx}, Ẑ^{Wy}) = σ_W² E[Z^x Z^y]`` (one independent family per matrix and
  orientation), and
  ZDOT  ``Ż^{Wx} = σ_W² Σ_i Z^{yⁱ} E[∂Z^x/∂Ẑ^{Wᵀyⁱ}]``, the derivative taken with respect to
  the Ẑ atoms as the program was written (Remark B.5: Z^x is expanded into atoms and
  differentiated symbolically); where the derivative involves a step function (a DiracDelta),
  the Stein form of Remark B.6 is used: with ``C_ij = E[Ẑ^{Wᵀyⁱ} Ẑ^{Wᵀyʲ}]`` and
  ``b_i = E[Ẑ^{Wᵀyⁱ} Z^x]``, the vector of expected derivatives is ``C⁺ b``.

Every Z is a sympy expression over the leaves of :mod:`tensorprog.limit.atoms`; a node stands
for its whole family over the inputs, and every covariance is an (N, N), (N, 1) or (1, 1) array
computed by one vectorised Gaussian expectation (:mod:`tensorprog.expectations`).  With
``symbolic=True`` the arrays hold sympy expressions in the entries ``G_i_j = ξ_iᵀξ_j`` of the
input Gram matrix and only closed-form expectations are used.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import ExpectationError, LimitError, NotPositiveSemidefinite
from ..expectations import expect
from ..expectations.engine import NeedsMonteCarlo
from ..expectations.singular import singular_planes, worst_singularity
from ..ir.instructions import (Embedding, InitialMatrix, InitialScalar, InitialVector, MatMul,
                               Moment, Nonlin, Select)
from ..ir.program import Program
from ..ir.rules import RuleTable
from ..linalg import nearest_psd
from ..resources import Progress
from .atoms import Base, LeafTable, init_key, zhat_key
from .printing import limit_to_text
from .sampling import JointSampler


class Limit:
    """The infinite-width limit of a program (``tp.limit(p)``).

    Attributes
    ----------
    z : dict
        ``name -> sympy expression`` of ``Z^{name}`` over atom and parameter leaves.
    zdot : dict
        ``name -> [(coefficient leaf, σ², y, index)]``: the ZDOT terms of each MATMUL.
    scalars : dict
        ``name -> array`` of limit scalars θ̊ (one per input for input-dependent scalars).
    max_error : float
        largest absolute error estimate of the expectations computed so far (kernels are
        computed on demand: :meth:`cov` adds theirs); :meth:`cov_error` gives one kernel's.
    max_rel_error, upstream_rel_error : float
        largest error relative to its expectation's largest value, over all pair expectations
        resp. over the ZHAT covariances later expectations are computed from.

    Parameters
    ----------
    program : Program
        The program; its Z and θ̊ are derived in program order on construction (the rules of
        TP IIb Def. B.3, ``docs/theory.md`` §2.2), kernels on demand by :meth:`cov`.
    symbolic : bool
        Hold covariances as sympy expressions in the input Gram entries ``G_i_j = ξ_iᵀξ_j``
        (closed-form expectations only).
    tier : str
        Expectation tier: ``"auto"``, ``"exact"``, ``"quadrature"`` or ``"montecarlo"``
        (``docs/theory.md`` §4).

    Raises
    ------
    ProgramError
        When the program is not well formed.
    ExpectationError
        When an expectation cannot be computed in ``tier``; the message names the instruction
        and its line.

    Example
    -------
    >>> lim = tp.Limit(tp.demo_program(moment=True))
    >>> sorted(lim.z), sorted(lim.scalars), lim.tiers_used
    (['h1', 'h2', 'x1', 'y'], ['th'], {'exact'})
    """

    def __init__(self, program: Program, symbolic: bool = False, tier: str = "auto"):
        program.validate()
        self.program = program
        self.symbolic = symbolic
        self.tier = tier
        self.leaves = LeafTable()
        self.z: dict[str, sp.Expr] = {}
        self.zdot: dict[str, list] = {}
        self.scalars: dict[str, np.ndarray] = {}
        self.tiers_used: set[str] = set()
        self.max_error = 0.0
        self.max_rel_error = 0.0
        self.upstream_rel_error = 0.0
        self._errors: dict[tuple[str, str], np.ndarray] = {}
        self._last_error = 0.0
        self._bases: dict[str, Base] = {}
        self._pairs: dict[tuple[str, str], np.ndarray] = {}
        self._base_covs: dict[tuple[str, str], np.ndarray | None] = {}
        self._gram = _GramSymbols(program) if symbolic else None
        self._joint = JointSampler(self.leaves, self._base_block)
        progress = Progress(f"deriving the limit of {program.name!r}", len(program.order))
        for k, node in enumerate(program.nodes()):
            progress(k + 1)
            try:
                self._evaluate(node)
            except ExpectationError as e:
                raise ExpectationError(
                    f"in {node.kind.upper()} {node.name!r} (line {program.line_of(node.name)}): "
                    f"{e}") from None
        progress.close()

    # ------------------------------------------------------------------ public queries
    def size(self, name: str) -> int:
        """The number of members of ``name``'s family (N for the inputs family, 1 for shared).

        Parameters
        ----------
        name : str
            A vector or scalar of the program.

        Returns
        -------
        int

        Example
        -------
        >>> p = tp.demo_program()
        >>> b = p.bias("b", var=0.5)
        >>> lim = tp.limit(p)
        >>> lim.size("y"), lim.size("b")
        (2, 1)
        """
        return self.program.family_size(self.program.node(name).family)

    def Z(self, name: str) -> sp.Expr:
        """``Z^{name}`` as a sympy expression over atoms (TP IIb Def. B.3; ``docs/theory.md`` §2.4).

        Parameters
        ----------
        name : str
            A vector of the program (the Z of a MATMUL holds its ZDOT terms).

        Returns
        -------
        sympy.Expr
            Over atoms named like ``Ẑ^{W x1}`` (ZHAT) and coefficients of ZDOT terms.

        Raises
        ------
        LimitError
            When the program has no such variable.

        Example
        -------
        >>> p = tp.Program("zdot")
        >>> W = p.matrix("W")
        >>> g = W.T @ tp.tanh(W @ p.embed(np.eye(2)))
        >>> tp.limit(p).Z(g.name)
        1.0*E[∂Z^{x1}/∂Ẑ^{W h1}]*Z^{h1} + Ẑ^{Wᵀ x1}
        """
        self._require(name, vector=True)
        return self.z[name]

    def scalar(self, name: str) -> np.ndarray:
        """The limit θ̊ of scalar ``name`` (ZMOMENT, TP IIb Eq. 63).

        Parameters
        ----------
        name : str
            A scalar of the program.

        Returns
        -------
        numpy.ndarray
            One value per member of its family (per input for an input-dependent scalar).

        Raises
        ------
        LimitError
            When the program has no such variable or it is a vector.

        Example
        -------
        >>> tp.limit(tp.demo_program(moment=True)).scalar("th")     # E[relu(Z)²], Var Z = 1.1
        array([0.55, 0.55])
        """
        self._require(name)
        if name not in self.scalars:
            raise LimitError(f"{name!r} is a vector; use Z({name!r}) or cov({name!r}, ...)")
        return self.scalars[name]

    def cov(self, a: str, b: str | None = None) -> np.ndarray:
        """``E[Z^a(ξ_i) Z^b(ξ_j)]`` for all pairs of members, by one vectorised expectation.

        Parameters
        ----------
        a : str
            A vector of the program.
        b : str, optional
            Another vector (default: ``a``).

        Returns
        -------
        numpy.ndarray, shape (m_a, m_b)
            Sympy entries in the input Gram matrix ``G_i_j`` when the limit is symbolic.

        Raises
        ------
        LimitError
            When the program has no such variable.
        ExpectationError
            When an expectation cannot be evaluated in the tier asked.

        Example
        -------
        >>> tp.limit(tp.demo_program()).cov("y").round(4)     # arc-cosine kernel of Z^{h2}
        array([[0.55  , 0.2873],
               [0.2873, 0.55  ]])
        """
        b = a if b is None else b
        self._require(a, vector=True)
        self._require(b, vector=True)
        if (a, b) not in self._pairs and (b, a) in self._pairs:
            return self._pairs[(b, a)].T
        self._resolve_pairs(a, b)
        return self._pairs[(a, b)]

    def _resolve_pairs(self, a: str, b: str) -> None:
        """Compute ``cov(a, b)`` after every covariance its ZHAT atoms need (``σ_W² E[Z^x Z^y]``
        of the MATMUL inputs), bottom-up with an explicit stack: a program of depth L would
        otherwise recurse L levels deep (cov → ZHAT block → cov of the layer below)."""
        stack = [(a, b)]
        while stack:
            x, y = stack[-1]
            if (x, y) in self._pairs or (y, x) in self._pairs:
                stack.pop()
                continue
            missing = [d for d in self._zhat_inputs(x, y)
                       if d not in self._pairs and d[::-1] not in self._pairs]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            value = self.expect_pair(self.z[x], self.size(x), self.z[y], self.size(y))
            error = np.broadcast_to(self._last_error, np.shape(value))
            if x == y and not self.symbolic:
                value = (value + value.T) / 2  # exact kernels are symmetric; Monte Carlo ones too
                error = (error + error.T) / 2
            self._pairs[(x, y)] = value
            self._errors[(x, y)] = error

    def _zhat_inputs(self, x: str, y: str) -> list[tuple[str, str]]:
        """The pairs of MATMUL inputs whose covariance the ZHAT atoms of ``Z^x``, ``Z^y`` need."""
        return self.leaves.zhat_input_pairs(self.program, (self.z[x], self.z[y]),
                                            self._base_covs)

    def cov_error(self, a: str, b: str | None = None) -> np.ndarray:
        """Absolute error estimate of :meth:`cov` ``(a, b)``.

        Its expectation's own estimate (``docs/accuracy.md``): 0 for closed forms, the
        difference of two rules for quadrature, the standard error for Monte Carlo; the errors
        of the covariances it was computed from are in ``max_rel_error``.

        Parameters
        ----------
        a : str
            A vector of the program.
        b : str, optional
            Another vector (default ``a``).

        Returns
        -------
        numpy.ndarray
            Of the shape of ``cov(a, b)``.

        Example
        -------
        >>> lim = tp.limit(tp.demo_program(activation="tanh"))   # no closed form: quadrature
        >>> bool((lim.cov_error("y") < 1e-9).all()), lim.tiers_used
        (True, {'quadrature'})
        """
        b = a if b is None else b
        self.cov(a, b)
        if (a, b) in self._errors:
            return self._errors[(a, b)]
        return self._errors[(b, a)].T

    def mean(self, name: str) -> np.ndarray:
        """``E[Z^{name}(ξ_i)]`` for each member of the family.

        Parameters
        ----------
        name : str
            A vector of the program (a shared vector has one member).

        Returns
        -------
        numpy.ndarray, shape (m,)

        Raises
        ------
        LimitError
            When the program has no variable of that name (a matrix has no Z).

        Example
        -------
        >>> tp.limit(tp.demo_program()).mean("y").round(4)
        array([0.4184, 0.4184])
        """
        self._require(name, vector=True)
        return self.expect_single(self.z[name], self.size(name))

    def _require(self, name, vector=False):
        """Refuse a name the query cannot answer (``vector``: the query needs a Z)."""
        if name not in self.z and name not in self.scalars:
            if name in self.program and isinstance(self.program.node(name), InitialMatrix):
                raise LimitError(f"{name!r} is a matrix; it has no Z (its MATMULs do)")
            raise LimitError(f"no variable {name!r} in program {self.program.name!r}")
        if vector and name not in self.z:
            raise LimitError(f"{name!r} is a scalar; it has no Z: use scalar({name!r})")

    # ------------------------------------------------------------------ expectations
    def z_in(self, name: str, size: int) -> sp.Expr:
        """``Z^{name}`` seen from a family of ``size`` members (shared vectors broadcast).

        Parameters
        ----------
        name : str
            A vector of the program.
        size : int
            Members of the family it is read from: its own size, or any size for a shared
            vector (whose one member every member sees).

        Returns
        -------
        sympy.Expr
            Over the atom leaves of :mod:`tensorprog.limit.atoms`, indexed for that family.

        Example
        -------
        >>> tp.limit(tp.demo_program()).z_in("y", 2)
        relu(Ẑ^{W x1})
        """
        m = self.size(name)
        if m == size:
            return self.z[name]
        return self.leaves.reindex(self.z[name], np.zeros(size, dtype=np.intp))

    def expect_single(self, expr: sp.Expr, m: int) -> np.ndarray:
        """``E[expr(i)]`` for every member i of a family of size m (TP IIb Thm. B.4).

        Parameters
        ----------
        expr : sympy.Expr
            An expression over Z leaves, such as ``Z(name)`` or a function of it.
        m : int
            The family's size.

        Returns
        -------
        numpy.ndarray, shape (m,)
            Sympy entries when the limit is symbolic.

        Raises
        ------
        ExpectationError
            When the expectation cannot be computed in the limit's tier.

        Example
        -------
        >>> lim = tp.limit(tp.demo_program())
        >>> lim.expect_single(lim.Z("y"), 2).round(4)      # E[relu(Z)], Var Z = 1.1: √(1.1/2π)
        array([0.4184, 0.4184])
        """
        if self._all_sampled:
            return self._sampled(self._joint.single(expr, m))
        atoms, cov, values = self._single_gaussian(expr, m)
        return self._expect(expr, atoms, cov, values, (m,), lambda: self._joint.single(expr, m))

    def _note_upstream(self, value, error):
        """Record the relative error of a ZHAT covariance, which later expectations are computed
        from (relative to its largest entry, a variance): ``upstream_rel_error``."""
        if self.symbolic:
            return
        top = float(np.max(error, initial=0.0))
        if top > 0:
            self.upstream_rel_error = max(
                self.upstream_rel_error, top / max(float(np.max(np.abs(value), initial=0.0)),
                                                   1e-300))

    def _single_gaussian(self, expr: sp.Expr, m: int):
        """The atoms of ``expr``, their (m, k, k) covariance and the parameters' (m,) values."""
        atoms, params = self.leaves.split(expr)
        cov = self._new((m, len(atoms), len(atoms)))
        for r, s in enumerate(atoms):
            for c, t in enumerate(atoms[r:], start=r):
                block = self._block(s, t)
                if block is not None:
                    si, ti = self.leaves.info[s][1], self.leaves.info[t][1]
                    cov[:, r, c] = cov[:, c, r] = block[si, ti]
        values = {q: self.leaves.info[q][0].values[self.leaves.info[q][1]] for q in params}
        return atoms, cov, values

    def _require_moment(self, expr: sp.Expr, m: int, power: int) -> None:
        """Refuse a ψ whose ``power``-th absolute moment is infinite under the Gaussian of its
        arguments (a non-integrable singularity, :mod:`tensorprog.expectations.singular`)."""
        if self.symbolic or not singular_planes(expr, tuple(self.leaves.split(expr)[0])):
            return
        atoms, cov, values = self._single_gaussian(expr, m)
        worst = worst_singularity(expr, tuple(atoms), cov, values)
        if worst is not None and power * worst[0] <= -1 + 0.02:
            (a, b), kappa = worst[1], worst[0]
            form = sp.Add(*[c * s for c, s in zip(a, atoms)], b)
            growth = "is infinite on it" if kappa == -np.inf else \
                f"grows like |{form}|^{kappa:.3g} near it"
            raise ExpectationError(
                f"ψ = {expr} has an infinite {'second moment' if power == 2 else 'mean'} under "
                f"the Gaussian of its arguments: it is singular on {form} = 0 and {growth} "
                f"(E|ψ|^{power} is finite only for exponents above {-1 / power:g}); the Master "
                "Theorem needs ψ with finite moments: regularise it, e.g. 1/(h² + ε) or "
                "h/√(h² + ε)")

    def expect_pair(self, ea: sp.Expr, ma: int, eb: sp.Expr, mb: int) -> np.ndarray:
        """``E[ea(i) · eb(j)]`` for all members i < ma, j < mb of two families.

        Parameters
        ----------
        ea, eb : sympy.Expr
            Expressions over Z leaves.
        ma, mb : int
            The sizes of their families.

        Returns
        -------
        numpy.ndarray, shape (ma, mb)

        Raises
        ------
        ExpectationError
            As :meth:`expect_single`.

        Example
        -------
        >>> lim = tp.limit(tp.demo_program())
        >>> lim.expect_pair(lim.Z("y"), 2, lim.Z("x1"), 2).round(4)   # independent: E·E
        array([[0.1751, 0.1751],
               [0.1751, 0.1751]])
        """
        if self._all_sampled:
            return self._sampled(self._joint.pair(ea, ma, eb, mb))
        A, Pa = self.leaves.split(ea)
        B, Pb = self.leaves.split(eb)
        prime = {s: sp.Symbol(s.name + "'", real=True) for s in B + Pb}
        atoms = A + [prime[s] for s in B]
        k = len(atoms)
        cov = self._new((ma, mb, k, k))
        sides = [(s, 0) for s in A] + [(s, 1) for s in B]
        for r, (s, side_s) in enumerate(sides):
            for c in range(r, k):
                t, side_t = sides[c]
                block = self._block(s, t)
                if block is None:
                    continue
                si, ti = self.leaves.info[s][1], self.leaves.info[t][1]
                if side_s == side_t == 0:
                    val = block[si, ti][:, None]
                elif side_s == side_t == 1:
                    val = block[si, ti][None, :]
                else:
                    val = block[np.ix_(si, ti)]
                cov[:, :, r, c] = val
                cov[:, :, c, r] = val
        values = {q: self.leaves.info[q][0].values[self.leaves.info[q][1]][:, None] for q in Pa}
        values.update({prime[q]: self.leaves.info[q][0].values[self.leaves.info[q][1]][None, :]
                       for q in Pb})
        return self._expect(ea * eb.xreplace(prime), atoms, cov, values, (ma, mb),
                            lambda: self._joint.pair(ea, ma, eb, mb))

    def _new(self, shape):
        if self.symbolic:
            return np.full(shape, sp.S.Zero, dtype=object)
        return np.zeros(shape)

    @property
    def _all_sampled(self) -> bool:
        return self.tier == "montecarlo" and not self.symbolic

    def _expect(self, expr, atoms, cov, params, shape, sample):
        """``E[expr]`` by the engine's exact and quadrature tiers; where a factor needs Monte Carlo,
        ``sample()`` estimates the whole expectation from joint draws (:mod:`.sampling`)."""
        # Distribute products of sums at the top level (E[(a+b)(c+d)] = E[ac] + …) so that each
        # term factorises over independent atom groups; function arguments are left alone.
        expr = expr.expand(deep=False, mul=True, multinomial=False, power_base=False,
                           power_exp=False, log=False)
        self._last_error = 0.0
        if not expr.free_symbols & set(atoms):
            out = self._new(shape)
            fn = sp.lambdify(list(params), expr, "numpy") if not self.symbolic else None
            if self.symbolic:
                out[...] = _broadcast_sym(expr, params, shape)
            else:
                out[...] = fn(*params.values()) if params else float(expr)
            return out
        try:
            res = self._engine(expr, atoms, cov, params)
        except NeedsMonteCarlo:
            return self._sampled(sample())
        self.tiers_used.update(res.tier.split("+"))
        if not self.symbolic:
            self._record_error(res.value, res.error)
        return np.broadcast_to(res.value, shape).copy()

    def _record_error(self, value, error):
        """Keep an expectation's error: the last one (for :meth:`cov_error`), the largest
        (``max_error``) and, for pair expectations, the largest relative to the expectation's
        largest value (``max_rel_error``; means may vanish, so they are left out)."""
        self._last_error = error
        top = float(np.max(error, initial=0.0))
        self.max_error = max(self.max_error, top)
        if top > 0 and np.ndim(value) == 2:  # covariances: their largest entry is a variance
            self.max_rel_error = max(self.max_rel_error,
                                     top / max(float(np.max(np.abs(value), initial=0.0)), 1e-300))

    def _engine(self, expr, atoms, cov, params):
        options = dict(symbolic=self.symbolic, tier=self.tier, check_psd=False, montecarlo=False)
        try:
            return expect(expr, atoms, cov, params, **options)
        except NotPositiveSemidefinite:
            # Blocks estimated by quadrature or Monte Carlo (each within its error) can make the
            # joint covariance slightly indefinite: project onto the PSD cone and retry once.
            if self.symbolic:
                raise
            return expect(expr, atoms, nearest_psd(cov), params, **options)

    def _sampled(self, estimate):
        value, err = estimate
        self.tiers_used.add("montecarlo")
        self._record_error(value, err)
        return value

    def _block(self, s, t):
        """Covariance array of the bases of leaves s and t, or None when independent."""
        return self._base_block(self.leaves.info[s][0], self.leaves.info[t][0])

    def _base_block(self, a: Base, b: Base):
        """Covariance array (a.size, b.size) of two atom bases, or None when independent."""
        key = (a.key, b.key)
        if key in self._base_covs:
            return self._base_covs[key]
        if (b.key, a.key) in self._base_covs:
            other = self._base_covs[(b.key, a.key)]
            return None if other is None else other.T
        if a.kind == b.kind == "init":
            out = self.init_cov(a.node, b.node)
        elif a.kind == b.kind == "zhat" and a.group == b.group:
            xa = self.program.args(a.node)[0]
            xb = self.program.args(b.node)[0]
            out = self.matrix_var(self.program.node(a.node).matrix) * self.cov(xa, xb)
            self._note_upstream(self.cov(xa, xb), self.cov_error(xa, xb))
        else:
            out = None
        self._base_covs[key] = out
        return out

    def init_cov(self, a: str, b: str) -> np.ndarray:
        """Covariance of initial vectors a and b (ZINIT; sympy entries when symbolic).

        The covariance of their Gaussian atoms, as the program declares it.

        Parameters
        ----------
        a, b : str
            Names of initial vectors (ZINIT atoms).

        Returns
        -------
        numpy.ndarray
            Of shape (size(a), size(b)), from :meth:`Program.init_cov_of` or, when symbolic, in
            the Gram entries ``G_i_j``.

        Example
        -------
        >>> tp.limit(tp.demo_program(bias_var=0.5)).init_cov("h1", "h1")   # ξ_iᵀξ_j + 0.5
        array([[1.5, 0.5],
               [0.5, 1.5]])
        """
        if self.symbolic:
            return self._gram.init_cov(a, b)
        return self.program.init_cov_of(a, b)

    def tangent(self, a: str, b: str) -> np.ndarray:
        """NTK weight of trainable initial vectors a, b (:meth:`Program.tangent_of`).

        The weight ``K`` of their NTK share ``K ∘ E[Z^{da} Z^{db}]`` (TP IIb eq. (29)): their
        initial covariance, unless the vector declares its own tangent kernel (a bias started
        at zero, :func:`tensorprog.nn.dense.zero_bias`).

        Parameters
        ----------
        a, b : str
            Trainable initial vectors.

        Returns
        -------
        numpy.ndarray
            The weight, one entry per pair of members of their families.

        Example
        -------
        >>> from tensorprog.nn.dense import zero_bias
        >>> p = tp.demo_program()
        >>> b = zero_bias(p.var("y"), "b", 0.5)
        >>> lim = tp.limit(p)
        >>> lim.init_cov("b", "b"), lim.tangent("b", "b")
        (array([[0., 0.],
               [0., 0.]]), array([[0.5, 0.5],
               [0.5, 0.5]]))
        """
        if getattr(self.program.node(a), "tangent", None) is None:
            return self.init_cov(a, b)
        value = self.program.tangent_of(a, b)
        return np.vectorize(sp.Float, otypes=[object])(value) if self.symbolic else value

    def _var(self, var):
        return sp.Float(var) if self.symbolic else var

    def matrix_var(self, matrix: str):
        """σ_W² of a matrix: a number, or the (N, N) input covariance of a generated matrix.

        Parameters
        ----------
        matrix : str
            ``"W"`` for ``p.matrix("W", …)``, or a generated matrix.

        Returns
        -------
        float or numpy.ndarray
            A sympy Float when the limit is symbolic.

        Example
        -------
        >>> tp.limit(tp.demo_program()).matrix_var("W")
        2.0
        """
        var = self.program.node(matrix).var
        if isinstance(var, np.ndarray) and self.symbolic:
            return np.vectorize(sp.Float, otypes=[object])(var)
        return self._var(var)

    # ------------------------------------------------------------------ the Z rules
    def _evaluate(self, node) -> None:
        LIMIT(node, self)

    def _scalar_base(self, name, values):
        base = self.leaves.add_base(Base(f"param:{name}", "param", len(values), name,
                                         node=name, values=values))
        self._bases[name] = base
        self.scalars[name] = values

    def _substitute(self, node, m) -> sp.Expr:
        return self.z_of(node.expr, m)

    def z_of(self, expr: sp.Expr, m: int) -> sp.Expr:
        """An expression over program variables with every vector replaced by its Z and every
        scalar by its limit θ̊, for a family of ``m`` members (ZNONLIN⁺, TP IIb Def. B.3).

        Parameters
        ----------
        expr : sympy.Expr
            An expression in the symbols of program variables (:meth:`Program.expression`).
        m : int
            The family's size.

        Returns
        -------
        sympy.Expr

        Example
        -------
        >>> p = tp.demo_program()
        >>> tp.limit(p).z_of(p.expression("y + 1"), 2)
        relu(Ẑ^{W x1}) + 1
        """
        sub = {}
        for s in expr.free_symbols:
            node = self.program.node(s.name)
            if node.is_vector:
                sub[s] = self.z_in(s.name, m)
            elif _all_zero(self.scalars[s.name]):  # e.g. gradients through MOMENTs at init
                sub[s] = sp.S.Zero
            else:
                sub[s] = self.leaves.natural(self._bases[s.name], m)
        return expr.xreplace(sub)

    def _zdot(self, name, W, transpose, x, m):
        """ZDOT terms ``(coefficient leaf, σ_W², y, index)`` of ``name := W x`` (or ``Wᵀx``)."""
        L = self.leaves
        opposite = W if transpose else f"{W}^T"
        zx = self.z[x]
        atoms, _ = L.split(zx)
        partners = [s for s in atoms if L.info[s][0].kind == "zhat" and L.info[s][0].group == opposite]
        if not partners:
            return []
        derivs = [sp.diff(zx, s) for s in partners]
        if any(d.has(sp.DiracDelta) for d in derivs):
            coefs = self._stein(zx, partners, m)
        else:
            coefs = [self.expect_single(d, m) for d in derivs]
        sigma2 = self.matrix_var(W)
        terms = []
        for s, c in zip(partners, coefs):
            if _all_zero(c):
                continue
            base_s, idx = L.info[s]
            if isinstance(sigma2, np.ndarray):  # generated matrix: σ² of member j and idx[j]
                c = c * sigma2[np.arange(m), idx]
            y = self.program.args(base_s.node)[0]
            coef = L.add_base(Base(f"coef:{name}:{s.name}", "param", m,
                                   f"E[∂Z^{{{x}}}/∂{s.name}]", node=name, values=c))
            terms.append((L.natural(coef, m), 1 if isinstance(sigma2, np.ndarray) else sigma2,
                          y, idx))
        return terms

    def _stein(self, zx, partners, m):
        """Remark B.6: the expected partial derivatives ``C⁺ b``, index by index."""
        k = len(partners)
        b = self._new((m, k))
        for r, s in enumerate(partners):
            b[:, r] = self.expect_single(s * zx, m)
        if _all_zero(b):  # e.g. a backward vector linear in the readout: no ZDOT
            return [self._new((m,)) for _ in partners]
        C = self._new((m, k, k))
        for r, s in enumerate(partners):
            for c in range(r, k):
                C[:, r, c] = C[:, c, r] = self.expect_single(s * partners[c], m)
        if self.symbolic:
            out = self._new((m, k))
            for i in range(m):
                out[i] = list(sp.Matrix(C[i]).pinv() * sp.Matrix(b[i]))
        else:
            out = np.einsum("mij,mj->mi", np.linalg.pinv(C, rcond=1e-10, hermitian=True), b)
        return [out[:, r] for r in range(k)]

    # ------------------------------------------------------------------ printing
    def __str__(self) -> str:
        return limit_to_text(self)


#: The Master-Theorem rule of each instruction (TP IIb Def. B.3): ``LIMIT(record, limit)``
#: stores the record's Z (vectors) or θ̊ (scalars) in the limit.
LIMIT = RuleTable("limit")


@LIMIT.rule(InitialMatrix)
def _(node: InitialMatrix, lim: Limit) -> None:
    """A matrix has no Z of its own: its MATMULs do."""


@LIMIT.rule(Embedding, InitialVector)
def _(node, lim: Limit) -> None:  # ZINIT
    m, L = lim.size(node.name), lim.leaves
    base = L.add_base(Base(init_key(node.name), "init", m, f"Z^{{{node.name}}}", "init",
                           node.name))
    lim.z[node.name] = L.natural(base, m)


@LIMIT.rule(InitialScalar)
def _(node: InitialScalar, lim: Limit) -> None:
    value = sp.Float(node.value) if lim.symbolic else node.value
    lim._scalar_base(node.name, np.array([value], dtype=object if lim.symbolic else float))


@LIMIT.rule(Nonlin)
def _(node: Nonlin, lim: Limit) -> None:  # ZNONLIN+
    m = lim.size(node.name)
    lim.z[node.name] = lim._substitute(node, m)
    lim._require_moment(lim.z[node.name], m, 2)


@LIMIT.rule(Select)
def _(node: Select, lim: Limit) -> None:  # a view of other members: re-index, 0 where index -1
    m, L, index = lim.size(node.name), lim.leaves, node.index
    z = L.reindex(lim.z[node.arg], np.maximum(index, 0))
    if (index < 0).any():
        mask = (index >= 0).astype(float)
        if lim.symbolic:
            mask = np.array([sp.Integer(int(v)) for v in mask], dtype=object)
        base = L.add_base(Base(f"mask:{node.name}", "param", m, f"1[{node.name}]",
                               node=node.name, values=mask))
        z = L.natural(base, m) * z
    lim.z[node.name] = z


@LIMIT.rule(Moment)
def _(node: Moment, lim: Limit) -> None:  # ZMOMENT
    m = lim.size(node.name)
    expr = lim._substitute(node, m)
    lim._require_moment(expr, m, 1)
    lim._scalar_base(node.name, lim.expect_single(expr, m))


@LIMIT.rule(MatMul)
def _(node: MatMul, lim: Limit) -> None:  # ZMATMUL = ZHAT + ZDOT
    m, L, name = lim.size(node.name), lim.leaves, node.name
    W, t, x = node.matrix, node.transpose, node.arg
    group = f"{W}^T" if t else W
    base = L.add_base(Base(zhat_key(name), "zhat", m, f"Ẑ^{{{node.label} {x}}}", group, name))
    terms = lim._zdot(name, W, t, x, m)
    lim.zdot[name] = terms
    lim.z[name] = L.natural(base, m) + sum(
        (sigma2 * c * L.reindex(lim.z[y], idx) for c, sigma2, y, idx in terms), sp.S.Zero)




def _all_zero(values) -> bool:
    if values.dtype == object:
        return all(sp.sympify(v).is_zero for v in values.ravel())
    return not np.any(values)


def _broadcast_sym(expr, params, shape):
    out = np.empty(shape, dtype=object)
    arrays = {k: np.broadcast_to(v, shape) for k, v in params.items()}
    for idx in np.ndindex(shape):
        out[idx] = expr.xreplace({k: v[idx] for k, v in arrays.items()})
    return out


def gram_symbol(program: Program, data_a: str, i: int, data_b: str, j: int) -> sp.Symbol:
    """The symbol of the Gram entry ``ξ_iᵀξ_j`` (``G_i_j``; prefixed by the data names when a
    program has several input arrays)."""
    if (data_b, j) < (data_a, i):
        data_a, i, data_b, j = data_b, j, data_a, i
    if len(program.data) == 1:
        return sp.Symbol(f"G_{i}_{j}", real=True)
    return sp.Symbol(f"G_{data_a}_{i}_{data_b}_{j}", real=True)


class _GramSymbols:
    """Initial covariances as sympy expressions in the Gram entries ``G_i_j = ξ_iᵀξ_j``."""

    def __init__(self, program: Program):
        self.program = program

    def init_cov(self, a: str, b: str) -> np.ndarray:
        p = self.program
        na, nb = p.node(a), p.node(b)
        if isinstance(na, Embedding) and isinstance(nb, Embedding) and \
                (a == b or (a, b) in p.init_cov):
            da, db = na.data, nb.data
            d = p.data[da].shape[1]
            out = np.empty((len(p.data[da]), len(p.data[db])), dtype=object)
            var, bias = sp.Float(na.var), sp.Float(na.bias_var)
            for i, j in np.ndindex(out.shape):
                out[i, j] = var * gram_symbol(p, da, i, db, j) / d + bias
            return out
        return np.vectorize(sp.Float, otypes=[object])(p.init_cov_of(a, b))


def gram_values(program: Program) -> dict:
    """Substitution ``{G_i_j: ξ_iᵀξ_j}`` that evaluates a symbolic kernel on the program's data."""
    subs = {}
    for da, Xa in program.data.items():
        for db, Xb in program.data.items():
            g = Xa @ Xb.T
            for i, j in np.ndindex(g.shape):
                subs[gram_symbol(program, da, i, db, j)] = float(g[i, j])
    return subs
