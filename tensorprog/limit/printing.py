"""The printed form of a limit: one line per variable, in the program's own terms.

Each vector's line gives its Z through the Z of its arguments (``Z^{x2} = relu(Z^{h2} +
Z^{b1})``), each MATMUL its Ẑ and ZDOT terms (``Z^{z} = Ẑ^{W1ᵀ x2} + 2.0·c₁·Z^{x}`` with
``c₁ = E[∂Z^{x2}/∂Ẑ^{W1 x}]`` and its value), each scalar its limit θ̊.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..ir.program import symbol


def _zsym(name: str) -> sp.Symbol:
    return sp.Symbol(f"Z^{{{name}}}", real=True)


def format_values(values: np.ndarray) -> str:
    """A short readable form of a per-input array (one number when constant)."""
    values = np.asarray(values)
    if values.dtype == object:
        uniq = {sp.srepr(v): v for v in values.ravel()}
        if len(uniq) == 1:
            return str(next(iter(uniq.values())))
        return f"[{', '.join(str(v) for v in values.ravel()[:4])}{', …' if values.size > 4 else ''}]"
    if values.size and np.allclose(values, values.ravel()[0], rtol=1e-12, atol=1e-15):
        return f"{values.ravel()[0]:.6g}"
    if values.size <= 6:
        return "[" + ", ".join(f"{v:.6g}" for v in values.ravel()) + "]"
    return f"[{values.min():.6g} … {values.max():.6g}] over {values.size} inputs"


def limit_to_text(limit) -> str:
    p = limit.program
    inputs = f"{p.num_inputs} inputs" if p.num_inputs else "no inputs"
    lines = [f"Master-Theorem limit of program {p.name!r} "
             f"({inputs}; Z expressions hold for every input ξ_i)"]
    coef_lines = []
    for node in p.nodes():
        name, a = node.name, node.attrs
        if node.kind == "vector":
            lines.append(f"  Z^{{{name}}} = Gaussian atom (ZINIT)")
        elif node.kind in ("nonlin", "moment"):
            sub = {symbol(v): _zsym(v) for v in a["args"]}
            sub.update({symbol(s): sp.Symbol(f"θ̊_{s}", real=True) for s in a["scalars"]})
            body = a["expr"].xreplace(sub)
            if node.kind == "nonlin":
                lines.append(f"  Z^{{{name}}} = {body}")
            else:
                lines.append(f"  θ̊_{name} = E[{body}] = {format_values(limit.scalars[name])}")
        elif node.kind == "select":
            lines.append(f"  Z^{{{name}}} = Z^{{{a['args'][0]}}}[index] in {node.family} "
                         "(SELECT)")
        elif node.kind == "scalar":
            lines.append(f"  θ̊_{name} = {a['value']}")
        elif node.kind == "matmul":
            terms = [str(limit.leaves.natural(limit.leaves.base(f"zhat:{name}"),
                                              limit.size(name)))]
            for c, sigma2, y, idx in limit.zdot[name]:
                label = f"c{len(coef_lines) + 1}"
                base = limit.leaves.info[c][0]
                coef_lines.append(f"  {label} = {base.display} = {format_values(base.values)}")
                terms.append(f"{sigma2}·{label}·Z^{{{y}}}")
            lines.append(f"  Z^{{{name}}} = " + " + ".join(terms))
    if coef_lines:
        lines.append("ZDOT coefficients:")
        lines.extend(coef_lines)
    return "\n".join(lines)
