"""Lifting a program whose inputs interact, so that each output has its own copy of what it reads.

The backward pass of :mod:`.backprop` stores ``dx_a = √n ∂f_{owner(a)}/∂x_a`` in member ``a`` of
the family of ``x``: the gradient *of the output that owns the member*.  That is all there is
when every output reads only the members its input owns.  A SELECT that reads members owned by
another input (BatchNorm's batch statistics, any mixing across the batch) makes ``f_o`` depend
on ``x_a`` with ``owner(a) ≠ o``, and one gradient per member no longer suffices.

:func:`lift_cross_input` rewrites such a program on *dependency pairs*: each family F becomes the
family of pairs ``(o, a)`` such that output o depends on member a (owner o), holding a copy of
``x_a`` for every output that reads it (TP IIb D.4.3: "the definition of path should now be
altered to express dependency on multiple samples").  Initial vectors are copied with their
covariances (the copies are the same Gaussian variables), every SELECT maps ``(o, a') → (o,
index[a'])`` and so stays within one output, and the readout reads member ``(o, o)``.  The lifted
program computes the same network, and the ordinary backward pass on it is exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import LimitError
from ..ir.check import family_of
from ..ir.instructions import (INPUTS, SHARED, Embedding, InitialMatrix, InitialScalar,
                               InitialVector, MatMul, Moment, Nonlin, Select)
from ..ir.program import Program
from ..ir.rewrite import Rewrite, keep
from ..ir.rules import RuleTable


@dataclass(frozen=True)
class Lifted:
    """A program lifted on dependency pairs: ``program`` (the input itself when nothing
    needed lifting) and ``restore[family]``, for each member a of a family of the original
    program, the index of its copy ``(owner(a), a)`` in the lifted family (empty when nothing
    was lifted)."""

    program: Program
    restore: dict = field(default_factory=dict)


def needs_lift(p: Program) -> bool:
    """Whether some SELECT reads a member owned by another input than the one it feeds."""
    for node in p.nodes("select"):
        src = p.get_family(p.node(node.arg).family)
        dst = p.get_family(node.family)
        if src.owner is None or dst.owner is None:
            continue
        valid = node.index >= 0
        if np.any(src.owner[node.index[valid]] != dst.owner[valid]):
            return True
    return False


def _owned(p: Program, family) -> bool:
    return family not in (SHARED, None) and p.get_family(family).owner is not None


def dependency_pairs(p: Program) -> dict[str, np.ndarray]:
    """``{family: (N, m) bool}``: output o depends on member a of some vector of the family
    (closed under SELECTs, and always holding each member's own input)."""
    N = p.num_inputs
    dep = {}
    for name, fam in p.families.items():
        if fam.owner is not None:
            dep[name] = np.zeros((N, fam.size), dtype=bool)
            dep[name][fam.owner, np.arange(fam.size)] = True
    changed = True
    while changed:
        changed = False
        for node in reversed(p.nodes()):
            if not _owned(p, node.family):
                continue
            D = dep[node.family]
            for arg in node.args + node.scalars:
                fam = p.node(arg).family
                if not _owned(p, fam):
                    continue
                if isinstance(node, Select):
                    valid = node.index >= 0
                    contrib = np.zeros_like(dep[fam])
                    np.logical_or.at(contrib.T, node.index[valid], D[:, valid].T)
                else:
                    contrib = D
                new = dep[fam] | contrib
                if not np.array_equal(new, dep[fam]):
                    dep[fam], changed = new, True
    return dep


class _Lift(Rewrite):
    """The rewrite on dependency pairs: per family, the pairs (owner[k], pairs[k]) and the
    position of pair (o, a) in the lifted family."""

    def __init__(self, p: Program):
        N = p.num_inputs
        dep = dependency_pairs(p)
        super().__init__(p, p.empty_like({SHARED: p.families[SHARED],
                                          INPUTS: p.families[INPUTS]}), LIFT)
        self.target.data, self.target.init_cov = {}, {}
        self.owner, self.pairs, self.position, self.lifted, self.restore = {}, {}, {}, {}, {}
        for name, fam in p.families.items():
            if fam.owner is None:
                continue
            self.owner[name], self.pairs[name] = np.nonzero(dep[name])  # sorted by (o, a)
            self.position[name] = np.full((N, fam.size), -1, dtype=np.intp)
            self.position[name][self.owner[name], self.pairs[name]] = \
                np.arange(len(self.pairs[name]))
            self.lifted[name] = f"{name}_pairs"
            self.restore[name] = self.position[name][fam.owner, np.arange(fam.size)]
            self.target.add_family(self.lifted[name], self.owner[name])

    def family(self, family: str) -> str:
        return self.lifted.get(family, family)


#: How each instruction is lifted (module docstring): ``LIFT(record, lift)``.
LIFT = RuleTable("lift")


@LIFT.rule(InitialMatrix)
def _(node: InitialMatrix, lf: _Lift) -> None:
    lf.target.add_matrix(node.name, node.var, node.trainable, node.parametrization)


@LIFT.rule(Embedding)
def _(node: Embedding, lf: _Lift) -> None:
    rows = lf.pairs[node.family]
    lf.target.add_embedding(node.name, lf.source.data[node.data][rows], node.var, node.bias_var,
                            node.weight, node.trainable, data_name=f"{node.data}_pairs",
                            family=lf.family(node.family))


@LIFT.rule(InitialVector)
def _(node: InitialVector, lf: _Lift) -> None:
    p, name = lf.source, node.name
    if node.family == SHARED:
        lf.target.add_vector(name, node.var, trainable=node.trainable, source=node.source)
        return
    rows = lf.pairs[node.family]
    cross = {}
    for other in p.covariance_partners(name):
        on = p.node(other)
        if isinstance(on, InitialVector):
            rows_o = lf.pairs[on.family] if on.family != SHARED else np.zeros(1, np.intp)
            cross[other] = p.init_cov[(name, other)][np.ix_(rows, rows_o)]
    tangent = node.tangent
    lf.target.add_vector(name, p.init_cov_of(name, name)[np.ix_(rows, rows)], cross=cross,
                         trainable=node.trainable, source=node.source,
                         family=lf.family(node.family),
                         tangent=None if tangent is None else tangent[np.ix_(rows, rows)])


LIFT.rule(InitialScalar)(keep)


@LIFT.rule(MatMul, Nonlin, Moment)
def _(node, lf: _Lift) -> None:
    """Coordinatewise instructions and MATMULs act member by member: their family is the
    lifted family of their operands."""
    lf.target.append(replace(node, family=family_of(lf.target, node.operands)))


@LIFT.rule(Select)
def _(node: Select, lf: _Lift) -> None:
    src, dst = lf.source.node(node.arg).family, node.family
    a_src = node.index[lf.pairs[dst]]
    if src == SHARED:
        index = np.where(a_src >= 0, 0, -1)
    else:  # (o, a') -> (o, index[a'])
        index = np.where(a_src >= 0, lf.position[src][lf.owner[dst], np.maximum(a_src, 0)], -1)
    lf.target.add_select(node.name, node.arg, index, lf.family(dst))


def lift_cross_input(p: Program) -> Lifted:
    """``p`` itself when no SELECT crosses inputs, else its lift on dependency pairs (module
    docstring).  Variable names are kept, so gradients and parameters map one to one."""
    if not needs_lift(p):
        return Lifted(p)
    if any(W.generated for W in p.nodes("matrix")):
        raise LimitError("a program whose inputs interact (a SELECT across inputs) cannot also "
                         "have generated (per-input) matrices")
    N = p.num_inputs
    lf = _Lift(p)
    q = lf.run()
    r = p.require_output()
    family = p.node(r.node).family
    if r.slots is None:
        target, index = INPUTS, lf.position[INPUTS][np.arange(N), np.arange(N)]
    else:
        q.families[family] = p.families[family]
        target = family
        index = lf.position[family][p.families[family].owner, np.arange(p.family_size(family))]
    out = q.fresh_name(f"{r.node}_own")
    q.add_select(out, r.node, index, target)
    q.set_readout(out, r.var, r.bias_var, r.trainable, slots=r.slots)
    return Lifted(q, lf.restore)
