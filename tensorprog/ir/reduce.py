"""Reduced programs (TP IIb Definition 5.4).

In a reduced program only G-vars (initial vectors, MATMUL results) are arguments of NONLIN and
MOMENT, and only X-vars (NONLIN results) are arguments of MATMUL and of the readout.  Any
program becomes reduced by (1) composing chains of NONLINs into one ψ and (2) inserting the
identity NONLIN ``x := g`` between a G-var ``g`` and a MATMUL (or readout) that uses it.
"""
from __future__ import annotations

import sympy as sp

from .program import Program, symbol


def reduce_program(p: Program) -> Program:
    q = type(p)(p.name)
    q.num_inputs, q.data, q.init_cov = p.num_inputs, dict(p.data), dict(p.init_cov)
    q.families = dict(p.families)
    composed: dict[str, sp.Expr] = {}  # X-var -> ψ over G-vars and scalars
    identity: dict[str, str] = {}      # G-var -> inserted identity X-var

    def as_xvar(name: str) -> str:
        if p.node(name).is_xvar:
            if name not in q:
                q.add_inferred("nonlin", name, composed[name])
            return name
        if name not in identity:
            identity[name] = q.fresh_name(f"{name}_x")
            q.add_nonlin(identity[name], symbol(name), [name])
        return identity[name]

    for node in p.nodes():
        a = node.attrs
        if node.kind == "matrix":
            q.add_matrix(node.name, a["var"], a["trainable"], a["parametrization"],
                         tangent=a.get("tangent"))
        elif node.kind == "vector" and a["source"] == "embed":
            q.add_embedding(node.name, p.data[a["data"]], a["var"], a["bias_var"], a["weight"],
                            a["trainable"], data_name=a["data"], family=node.family)
        elif node.kind == "vector":
            q._add(type(node)(node.name, node.kind, node.family, dict(a)), node.name)
        elif node.kind == "scalar":
            q.add_scalar(node.name, a["value"])
        elif node.kind == "matmul":
            q.add_matmul(node.name, a["matrix"], as_xvar(a["args"][0]), a["transpose"])
        elif node.kind == "select":
            q.add_select(node.name, as_xvar(a["args"][0]), a["index"], node.family)
        else:
            expr = a["expr"].xreplace({symbol(x): composed[x] for x in a["args"]
                                       if x in composed})
            if node.kind == "nonlin":
                composed[node.name] = expr
            else:
                q.add_inferred("moment", node.name, expr)
    if p.readout is not None:
        r = p.readout
        q.set_readout(as_xvar(r.node), r.var, r.bias_var, r.trainable, slots=r.slots)
    return q
