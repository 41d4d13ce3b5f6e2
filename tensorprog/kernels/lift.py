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

import numpy as np

from ..errors import LimitError
from ..ir.program import INPUTS, SHARED, Program


def needs_lift(p: Program) -> bool:
    """Whether some SELECT reads a member owned by another input than the one it feeds."""
    for node in p.nodes("select"):
        src = p.get_family(p.node(node.attrs["args"][0]).family)
        dst = p.get_family(node.family)
        if src.owner is None or dst.owner is None:
            continue
        index = node.attrs["index"]
        valid = index >= 0
        if np.any(src.owner[index[valid]] != dst.owner[valid]):
            return True
    return False


def _owned(p: Program, family: str) -> bool:
    return family != SHARED and p.get_family(family).owner is not None


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
            if node.kind == "matrix" or not _owned(p, node.family):
                continue
            D = dep[node.family]
            for arg in list(node.attrs.get("args", ())) + list(node.attrs.get("scalars", ())):
                fam = p.node(arg).family
                if not _owned(p, fam):
                    continue
                if node.kind == "select":
                    index = node.attrs["index"]
                    valid = index >= 0
                    contrib = np.zeros_like(dep[fam])
                    np.logical_or.at(contrib.T, index[valid], D[:, valid].T)
                else:
                    contrib = D
                new = dep[fam] | contrib
                if not np.array_equal(new, dep[fam]):
                    dep[fam], changed = new, True
    return dep


def lift_cross_input(p: Program) -> Program:
    """``p`` itself when no SELECT crosses inputs, else its lift on dependency pairs (module
    docstring).  Variable names are kept, so gradients and parameters map one to one;
    ``lifted.restore[family]`` gives, for each member a of an original family, its copy
    ``(owner(a), a)`` in the lifted family."""
    if not needs_lift(p):
        return p
    if any(p.is_generated(W.name) for W in p.nodes("matrix")):
        raise LimitError("a program whose inputs interact (a SELECT across inputs) cannot also "
                         "have generated (per-input) matrices")
    N = p.num_inputs
    dep = dependency_pairs(p)
    q = type(p)(p.name)
    q.num_inputs = N
    q.families = {SHARED: p.families[SHARED], INPUTS: p.families[INPUTS]}
    owner, pairs, position, lifted, restore = {}, {}, {}, {}, {}
    for name, fam in p.families.items():
        if fam.owner is None:
            continue
        owner[name], pairs[name] = np.nonzero(dep[name])   # row-major: sorted by (o, a)
        position[name] = np.full((N, fam.size), -1, dtype=np.intp)
        position[name][owner[name], pairs[name]] = np.arange(len(pairs[name]))
        lifted[name] = f"{name}_pairs"
        restore[name] = position[name][fam.owner, np.arange(fam.size)]
        q.add_family(lifted[name], owner[name])
    q.restore = restore

    def fam_of(family):
        return lifted.get(family, family)

    for node in p.nodes():
        a, name = node.attrs, node.name
        if node.kind == "matrix":
            q.add_matrix(name, a["var"], a["trainable"], a["parametrization"])
        elif node.kind == "vector" and a["source"] == "embed":
            rows = pairs[node.family]
            q.add_embedding(name, p.data[a["data"]][rows], a["var"], a["bias_var"], a["weight"],
                            a["trainable"], data_name=f"{a['data']}_pairs",
                            family=fam_of(node.family))
        elif node.kind == "vector" and node.family == SHARED:
            q.add_vector(name, a["var"], trainable=a["trainable"], source=a["source"])
        elif node.kind == "vector":
            rows = pairs[node.family]
            cross = {}
            for other in p.order[: p.order.index(name)]:
                on = p.node(other)
                if on.kind == "vector" and on.attrs.get("source") != "embed" and \
                        (name, other) in p.init_cov:
                    rows_o = pairs[on.family] if on.family != SHARED else np.zeros(1, np.intp)
                    cross[other] = p.init_cov[(name, other)][np.ix_(rows, rows_o)]
            tangent = a.get("tangent")
            q.add_vector(name, p.init_cov_of(name, name)[np.ix_(rows, rows)], cross=cross,
                         trainable=a["trainable"], source=a["source"],
                         family=fam_of(node.family),
                         tangent=None if tangent is None else tangent[np.ix_(rows, rows)])
        elif node.kind == "scalar":
            q.add_scalar(name, a["value"])
        elif node.kind == "matmul":
            q.add_matmul(name, a["matrix"], a["args"][0], a["transpose"])
        elif node.kind in ("nonlin", "moment"):
            q.add_inferred(node.kind, name, a["expr"])
        elif node.kind == "select":
            src = p.node(a["args"][0]).family
            dst = node.family
            a_src = a["index"][pairs[dst]]
            if src == SHARED:
                index = np.where(a_src >= 0, 0, -1)
            else:  # (o, a') -> (o, index[a'])
                index = np.where(a_src >= 0, position[src][owner[dst], np.maximum(a_src, 0)], -1)
            q.add_select(name, a["args"][0], index, fam_of(dst))
        else:  # pragma: no cover - kinds are validated by Program
            raise LimitError(f"cannot lift node kind {node.kind!r}")
    r = p.require_output()
    family = p.node(r.node).family
    if r.slots is None:
        target, index = INPUTS, position[INPUTS][np.arange(N), np.arange(N)]
    else:
        q.families[family] = p.families[family]
        target = family
        index = position[family][p.families[family].owner, np.arange(p.family_size(family))]
    out = q.fresh_name(f"{r.node}_own")
    q.add_select(out, r.node, index, target)
    q.set_readout(out, r.var, r.bias_var, r.trainable, slots=r.slots)
    return q

