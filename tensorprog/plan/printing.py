"""The readable form of a compiled kernel: the recursion a researcher would write by hand."""
from __future__ import annotations


def plan_to_text(kfn) -> str:
    """``print(tp.compile(p))``: the route, the per-input layout, then the derived limit of
    the template (Z of every vector incl. the backward pass, ZDOT terms, limit scalars) and the
    NTK terms ``scale · Π E[Z^a Z^b]`` summed over the members each input owns."""
    p = kfn.program
    lines = [f"kernel plan of program {p.name!r}: route {kfn.route}"]
    if kfn.route == "union":
        lines.append(f"  evaluated on the program's own inputs: {kfn.reason}")
        return "\n".join(lines)
    lay = kfn.layout
    fams = ", ".join(f"{name}: {P}" for name, P in lay.members.items())
    lines.append(f"  members per input: {fams}")
    lines.append("  data per input: " + ", ".join(f"{k} {r}×{d}" for k, (r, d) in
                                                   lay.data.items()))
    for name, view in lay.views.items():
        lines.append(f"  inputs: {view} (data {name})")
    t = kfn._template
    lines.append("")
    lines.append(str(t.limit))
    lines.append("")
    lines.append("NNGP  K = " + _term_text(t.nngp_term))
    lines.append("NTK   Θ = Σ of")
    for term in t.ntk_terms:
        lines.append(f"  [{term.param}] " + _term_text(term))
    return "\n".join(lines)


def _term_text(term) -> str:
    scale = term.scale if not hasattr(term.scale, "shape") else "S"
    parts = [str(scale)]
    if term.tangent_pair is not None:
        parts.append(f"K({term.tangent_pair[0]}, {term.tangent_pair[1]})")
    parts += [f"E[Z^{a} Z^{b}]" for a, b in term.factors]
    text = " · ".join(parts)
    if term.families != ("inputs", "inputs"):
        text = f"Σ_members {text}"
    return text + (f" + {term.const}" if term.const else "")
