"""The NTK as a sum over pairs of isomorphic paths (TP IIb Def. 5.5, Prop. D.3, Eq. 95).

On the reduced program (Def. 5.4) a *path* alternates X-vars and G-vars, each G-var step
``pⁱ = W pⁱ⁻¹`` labelled by its matrix; two paths are isomorphic when their matrix sequences
agree.  For inputs ξ, ξ' (Eq. 95, extended to trained input and output layers as in D.4.1):

    Θ(ξ,ξ') = Σ_params Σ_{p≅q} w(p⁰,q⁰) Π_{i even} E[∂Z^{pⁱ}/∂Z^{pⁱ⁻¹} · ∂Z^{qⁱ}/∂Z^{qⁱ⁻¹}] Π σ_W²
              · σ_v²  +  σ_v² E[Z^x Z^x] + σ_b²

where the first G-vars ``p¹ = W p⁰`` are uses of a trained matrix (weight ``σ_W² E[Z^{p⁰}Z^{q⁰}]``),
an input layer (weight ``σ_U² ξᵀξ'/d + σ_b²``) or a trained bias (weight σ²), and the paths end
at the readout vector.  The sum is computed by dynamic programming over *pairs* of variables
(the product graph), memoised, with each factor an (N, N) array over all input pairs, so the
cost grows with the number of isomorphic pairs, not the number of paths.  The result is split
by path class ``(parameter, matrix sequence)`` so a user can see which paths carry the kernel.

This derivation shares no code with backprop-in-the-program (:mod:`.backprop`) beyond the
forward limit and the expectation engine; the two must agree (tests check 1e-10).  It assumes,
like Prop. D.3, that no matrix appears with its transpose in the forward pass: for such programs
(weight-tied autoencoders, TP IIb D.4.2) use ``method="backprop"``.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import LimitError
from ..ir.program import Program, symbol
from ..limit.evaluator import Limit
from .ntk import parameter_weight


def path_contributions(program: Program, symbolic: bool = False, tier: str = "auto") -> dict:
    """``{(parameter, matrix sequence): (N, N) array}`` of path-sum NTK contributions."""
    program.require_output()
    if program.nodes("select") or program.readout.slots is not None:
        raise LimitError(
            "method='paths' does not yet follow SELECT views (convolutions, pooling, attention "
            "over positions); use method='backprop'")
    for W in program.nodes("matrix"):
        if len({g.attrs["transpose"] for g in program.matmuls_of(W.name)}) == 2:
            raise LimitError(
                f"method='paths': matrix {W.name!r} is used with its transpose in the forward "
                "pass, outside Prop. D.3's assumptions; use method='backprop' (which includes "
                "the ZDOT terms of TP IIb D.4.2)")
    red = program.reduced()
    return _PathSums(red, Limit(red, symbolic=symbolic, tier=tier), symbolic).contributions()


def by_parameter(parts: dict) -> dict:
    """Path-class shares ``{(parameter, matrix sequence): Θ}`` summed to ``{parameter: Θ}``."""
    out: dict = {}
    for (param, _), value in parts.items():
        out[param] = out[param] + value if param in out else value
    return out


def _label(node) -> str:
    return node.attrs["matrix"] + ("ᵀ" if node.attrs["transpose"] else "")


class _PathSums:
    def __init__(self, program: Program, lim: Limit, symbolic: bool):
        self.p, self.lim, self.symbolic = program, lim, symbolic
        self.out = program.readout
        self.N = program.num_inputs
        self.num = (lambda x: sp.Float(x)) if symbolic else float
        self.nonlin_users: dict[str, list[str]] = {}
        self.matmul_users: dict[str, list] = {}
        for node in program.nodes():
            if node.kind == "nonlin":
                for g in node.attrs["args"]:
                    self.nonlin_users.setdefault(g, []).append(node.name)
            elif node.kind == "matmul":
                self.matmul_users.setdefault(node.attrs["args"][0], []).append(node)
        self._D: dict = {}
        self._B: dict = {}

    @staticmethod
    def _accumulate(out: dict, seq, value) -> None:
        out[seq] = out[seq] + value if seq in out else value

    def D(self, x: str, xb: str) -> dict:
        """Path sums from X-vars (x, x̄) to the output: ``E[Z^{dx}(ξ) Z^{dx̄}(ξ')]`` by class."""
        key = (x, xb)
        if key not in self._D:
            out: dict = {}
            if x == xb == self.out.node:
                out[()] = self.num(self.out.var)
            for g in self.matmul_users.get(x, []):
                for gb in self.matmul_users.get(xb, []):
                    if _label(g) != _label(gb):
                        continue
                    var = self.lim.matrix_var(g.attrs["matrix"])
                    for seq, val in self.B(g.name, gb.name).items():
                        self._accumulate(out, (_label(g),) + seq, var * val)
            self._D[key] = out
        return self._D[key]

    def B(self, g: str, gb: str) -> dict:
        """Path sums from G-vars (g, ḡ): ``E[Z^{dg}(ξ) Z^{dḡ}(ξ')]`` by class (Eq. 106)."""
        key = (g, gb)
        if key not in self._B:
            out: dict = {}
            for x in self.nonlin_users.get(g, []):
                for xb in self.nonlin_users.get(gb, []):
                    rest = self.D(x, xb)
                    if not rest:
                        continue
                    factor = self._derivative_pair(x, g, xb, gb)
                    for seq, val in rest.items():
                        self._accumulate(out, seq, factor * val)
            self._B[key] = out
        return self._B[key]

    def _derivative_pair(self, x, g, xb, gb):
        """``E[∂Z^x/∂Z^g(ξ_i) · ∂Z^{x̄}/∂Z^{ḡ}(ξ_j)]`` for all pairs (i, j)."""
        lim = self.lim
        ea = lim.z_of(sp.diff(self.p.node(x).attrs["expr"], symbol(g)), lim.size(x))
        eb = lim.z_of(sp.diff(self.p.node(xb).attrs["expr"], symbol(gb)), lim.size(xb))
        return lim.expect_pair(ea, lim.size(x), eb, lim.size(xb))

    def contributions(self) -> dict:
        parts: dict = {}
        lim, N = self.lim, self.N

        def add(param, seqs: dict, weight):
            for seq, val in seqs.items():
                self._accumulate(parts, (param, seq), np.broadcast_to(weight * val, (N, N)))

        for W in self.p.trained_matrices():
            var = parameter_weight(lim, W)
            uses = self.p.matmuls_of(W.name)
            for g in uses:
                for gb in uses:
                    if _label(g) != _label(gb):
                        continue
                    w = var * lim.cov(g.attrs["args"][0], gb.attrs["args"][0])
                    add(W.name, {(_label(g),) + s: v for s, v in self.B(g.name, gb.name).items()},
                        w)
        groups: dict[str, list[str]] = {}
        for node in self.p.nodes("vector"):
            if not node.attrs["trainable"]:
                continue
            if node.attrs["source"] == "embed":
                groups.setdefault(node.attrs["weight"], []).append(node.name)
            elif node.family == "shared":
                add(node.name, {(node.name,) + s: v for s, v in self.B(node.name, node.name).items()},
                    self.num(node.attrs["var"]))
            else:
                groups.setdefault(node.name, []).append(node.name)
        for param, members in groups.items():
            for a in members:
                for b in members:
                    add(param, {(param,) + s: v for s, v in self.B(a, b).items()},
                        lim.tangent(a, b))
        if self.out.trainable:
            value = self.num(self.out.var) * lim.cov(self.out.node) + self.num(self.out.bias_var)
            self._accumulate(parts, ("readout", ()), np.broadcast_to(value, (N, N)))
        return parts
