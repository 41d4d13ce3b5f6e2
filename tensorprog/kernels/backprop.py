"""Backpropagation written inside the program (TP IIb §4, Def. 4.2 and App. D.1).

:func:`backward_program` appends the backward pass of a network program to a copy of it, as
NETSOR⊤+ instructions, with *scaled* gradients ``dx = √n ∂f/∂x`` (so that every ``dx`` has
Θ(1) coordinates):

* readout ``f = v·x/√n``: ``dx += v`` with ``v`` an initial vector N(0, σ_v²); with P readout
  slots, ``v`` is a family of P independent vectors and ``dx_a += v_{slot(a)}/√P`` (a SELECT);
* NONLIN ``y = ψ(x¹…; θ…)``: ``dxʳ += dy ⊙ ∂ψ/∂xʳ`` (a NONLIN) and, for each scalar,
  ``dθ += avg(dy ⊙ ∂ψ/∂θ)`` (a MOMENT);
* MOMENT ``θ = avg ψ(x¹…; θ'…)``: ``dxʳ += dθ · ∂ψ/∂xʳ`` and ``dθ' += dθ · avg(∂ψ/∂θ')``
  (``∂θ/∂x_α = ψ'_α/n``, so the scaled gradients stay Θ(1));
* MATMUL ``g = W h``: ``dh += Wᵀ dg``; ``g = Wᵀ h``: ``dh += W dg``;
* SELECT ``x' = x[index]``: ``dx_k += Σ_{j: index[j] = k} dx'_j``, written as a few SELECTs of
  ``dx'`` back into the family of ``x`` (one per multiplicity) and their sum.

A gradient lives in the family of its vector; the gradient of a shared vector (a bias) lives in
the family of the vectors that use it, and kernels sum it over the members each input owns.  A
shared vector used in several families gets its gradient pieces pooled into the inputs' family
first (member i: the sum over the members input i owns, one SELECT per member position).

The result is an ordinary program: the Master-Theorem evaluator then gives every ``Z^{dx}``,
including the ZDOT terms of the backward MATMULs (which vanish when the forward pass passes the
gradient-independence check, and do not otherwise, e.g. ``Wᵀφ(Wx)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

import numpy as np

from ..expectations.canonical import derivative
from ..ir.instructions import (INPUTS, SHARED, Embedding, InitialMatrix, InitialScalar,
                               InitialVector, MatMul, Moment, Nonlin, Select, symbol)
from ..ir.program import Family, Program
from ..ir.rewrite import Rewrite
from ..ir.rules import RuleTable
from .lift import lift_cross_input


@dataclass
class Backward:
    """A program with its backward pass.  ``grad[x]`` names the variable holding ``dx``;
    ``network`` is the forward program the pass differentiates (the user's program, or its
    lift when inputs interact, see :mod:`.lift`), ``program`` that program plus the pass;
    ``restore[family]`` maps each member of a family of the user's program to its copy in
    ``network`` (empty when nothing was lifted)."""

    program: Program
    readout_vector: str
    network: Program
    grad: dict[str, str] = field(default_factory=dict)
    restore: dict[str, np.ndarray] = field(default_factory=dict)


class _Pass(Rewrite):
    """The backward pass being written: the network walked from its last record to its first,
    gradient terms gathered per variable and materialised when their variable is reached."""

    def __init__(self, network: Program, out: Backward, seed: sp.Expr):
        super().__init__(network, out.program, TRANSPOSE, reverse=True)
        self.label = f"writing the backward pass of {network.name!r}"
        self.out = out
        self.vec_terms: dict[str, list[sp.Expr]] = {network.readout.node: [seed]}
        self.sca_terms: dict[str, list[sp.Expr]] = {}

    def gradient(self, name: str) -> str | None:
        """Materialise ``d name`` as one variable (None when ``name`` does not reach f)."""
        grad, q = self.out.grad, self.target
        if name in grad:
            return grad[name]
        terms = self.vec_terms.get(name)
        if not terms:
            return None
        families = {self._family_of(t) for t in terms} - {SHARED}
        if len(families) > 1:  # a shared vector used in several families
            terms = [self._pooled(t) for t in terms]
        total = sp.Add(*terms)
        if total.is_zero:
            return None
        if isinstance(total, sp.Symbol):
            grad[name] = total.name
        else:
            gname = q.fresh_name(f"d_{name}_")
            q.add_inferred("nonlin", gname, total)
            grad[name] = gname
        return grad[name]

    def _family_of(self, term: sp.Expr) -> str:
        """The family of a gradient term (SHARED when it reads shared vectors only)."""
        fams = {self.target.node(s.name).family for s in term.free_symbols
                if self.target.node(s.name).is_vector} - {SHARED}
        return fams.pop() if fams else SHARED

    def _pooled(self, term: sp.Expr) -> sp.Expr:
        """A gradient term of a shared vector moved to the inputs' family: member i is the sum
        of the term over the members input i owns (``∂f(ξ_i)/∂b = Σ_{j owned by i} ∂f/∂b_j``),
        a few SELECTs (one per member position) and their sum."""
        family, q = self._family_of(term), self.target
        if family in (SHARED, INPUTS):
            return term
        if not isinstance(term, sp.Symbol):
            name = q.fresh_name("d_pool_")
            q.add_inferred("nonlin", name, term)
            term = symbol(name)
        owner = np.asarray(q.get_family(family).owner)
        members = [np.flatnonzero(owner == i) for i in range(q.num_inputs)]
        out = []
        for k in range(max(len(m) for m in members)):
            index = np.array([m[k] if k < len(m) else -1 for m in members])
            sel = q.fresh_name("d_pool_")
            q.add_select(sel, term.name, index, INPUTS)
            out.append(symbol(sel))
        return sp.Add(*out)

    def scalar_gradient(self, name: str) -> sp.Expr | None:
        terms = self.sca_terms.get(name)
        if not terms:
            return None
        total = sp.Add(*terms)
        return None if total.is_zero else total

    def add(self, name: str, term: sp.Expr) -> None:
        self.vec_terms.setdefault(name, []).append(term)

    def chain(self, node, inside, outside) -> None:
        """Push a gradient through ψ: ``dx += outside·inside·∂ψ/∂x`` for its vectors and
        ``dθ += outside·avg(inside·∂ψ/∂θ)`` for its scalars (a NONLIN: inside = dy, outside = 1;
        a MOMENT: inside = 1, outside = dθ)."""
        for x in node.args:
            part = derivative(node.expr, symbol(x))
            if not part.is_zero:
                self.add(x, outside * inside * part)
        for s in node.scalars:
            part = derivative(node.expr, symbol(s))
            if not part.is_zero:
                m = self.target.fresh_name(f"d_{s}_")
                self.target.add_inferred("moment", m, inside * part)
                self.sca_terms.setdefault(s, []).append(outside * symbol(m))


#: The transpose rule of each instruction (module docstring): ``TRANSPOSE(record, pass)``
#: appends the instructions that push the record's gradient to its operands.
TRANSPOSE = RuleTable("transpose")


@TRANSPOSE.rule(InitialMatrix, InitialScalar)
def _(node, bw: _Pass) -> None:
    """Parameters' NTK shares are :mod:`.terms`; nothing flows further back."""


@TRANSPOSE.rule(Embedding, InitialVector)
def _(node, bw: _Pass) -> None:
    bw.gradient(node.name)


@TRANSPOSE.rule(MatMul)
def _(node: MatMul, bw: _Pass) -> None:
    dg = bw.gradient(node.name)
    if dg is None:
        return
    h = bw.target.fresh_name(f"d_{node.arg}_")
    bw.target.add_matmul(h, node.matrix, dg, transpose=not node.transpose)
    bw.add(node.arg, symbol(h))


@TRANSPOSE.rule(Select)
def _(node: Select, bw: _Pass) -> None:
    dy = bw.gradient(node.name)
    if dy is None:
        return
    p, q, x = bw.source, bw.target, node.arg
    shared = p.node(x).family == SHARED
    for index in _scatter(node.index, shared, p.family_size(p.node(x).family)):
        target = node.family if shared else p.node(x).family
        if q.node(dy).family == SHARED:  # the same gradient for every member
            index = np.minimum(index, 0)
        sel = q.fresh_name(f"d_{x}_")
        q.add_select(sel, dy, index, target)
        bw.add(x, symbol(sel))


@TRANSPOSE.rule(Nonlin)
def _(node: Nonlin, bw: _Pass) -> None:
    dy = bw.gradient(node.name)
    if dy is not None:
        bw.chain(node, symbol(dy), sp.S.One)


@TRANSPOSE.rule(Moment)
def _(node: Moment, bw: _Pass) -> None:
    dth = bw.scalar_gradient(node.name)
    if dth is not None:
        bw.chain(node, sp.S.One, dth)


def backward_program(p: Program) -> Backward:
    """Append the backward pass of ``p`` to a copy of ``p`` (TP IIb §4, Def. 4.2 and App. D.1).

    The gradients are scaled, ``dx = √n ∂f/∂x``, and written as NETSOR⊤+ instructions (the rules
    are in the module docstring; ``docs/theory.md`` §3.5), so that the Master Theorem gives every
    ``Z^{dx}`` and with them the NTK.  When inputs interact (a SELECT that reads members another
    input owns) the program is first lifted (:mod:`tensorprog.kernels.lift`).

    Parameters
    ----------
    p : Program
        A network program (one with an output).

    Returns
    -------
    Backward
        ``program``: the forward program plus the pass; ``grad[x]``: the variable holding ``dx``;
        ``readout_vector``: the readout vector ``v``; ``network`` and ``restore``: the forward
        program differentiated and the map back from a lift.

    Raises
    ------
    ProgramError
        When ``p`` has no output.

    Example
    -------
    >>> p = tp.Program("demo")
    >>> h = p.embed(np.eye(2), var=2.0)
    >>> f = p.output(tp.relu(p.matrix("W", var=2.0) @ tp.relu(h)), var=2.0)
    >>> bw = tp.backward_program(p)
    >>> bw.grad
    {'x2': 'v_out1', 'h2': 'd_h2_1', 'x1': 'd_x1_1', 'h1': 'd_h1_1'}
    >>> print(bw.program.node("d_x1_1").headline())
    MATMUL: d_x1_1 := W^T d_h2_1
    """
    lifted = lift_cross_input(p)
    p = lifted.program
    r = p.require_output()
    q = p.copy()
    v = q.fresh_name("v_out")
    if r.slots is None:
        q.add_vector(v, r.var, source="readout")
        seed = symbol(v)
    else:
        P = r.num_slots
        q.families[v] = Family(v, P, None)
        q.add_vector(v, r.var * np.eye(P), source="readout", family=v)
        sel = q.fresh_name("v_slot")
        q.add_select(sel, v, np.asarray(r.slots), q.node(r.node).family)
        seed = symbol(sel) / sp.sqrt(P)
    out = Backward(q, v, p, restore=lifted.restore)
    _Pass(p, out, seed).run()
    return out


def _scatter(index: np.ndarray, shared: bool, size: int) -> list[np.ndarray]:
    """Index arrays whose SELECTs, summed, scatter-add a family back through ``index``.

    For a shared source the gradient stays in the selecting family (masked where the select
    read nothing); otherwise the r-th array picks, for each target member k, the r-th member j
    with ``index[j] = k`` (or -1).
    """
    valid = index >= 0
    if shared:
        return [np.where(valid, np.arange(len(index)), -1)]
    js = np.flatnonzero(valid)
    ks = index[js]
    order = np.argsort(ks, kind="stable")
    js, ks = js[order], ks[order]
    first = np.searchsorted(ks, ks, side="left")
    rank = np.arange(len(ks)) - first
    out = []
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        sel = np.full(size, -1, dtype=np.intp)
        sel[ks[rank == r]] = js[rank == r]
        out.append(sel)
    return out
