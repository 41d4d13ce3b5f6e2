"""The NTK as a sum over pairs of isomorphic paths (TP IIb Def. 5.5, Prop. D.3, Eq. 95).

On the reduced program (Def. 5.4) a *path* alternates X-vars and G-vars, each G-var step
``pⁱ = W pⁱ⁻¹`` labelled by its matrix; two paths are isomorphic when their matrix sequences
agree.  For inputs ξ, ξ' (Eq. 95, extended to trained input and output layers as in D.4.1):

    Θ(ξ,ξ') = Σ_params Σ_{p≅q} w(p⁰,q⁰) Π_{i even} E[∂Z^{pⁱ}/∂Z^{pⁱ⁻¹} · ∂Z^{qⁱ}/∂Z^{qⁱ⁻¹}] Π σ_W²
              · σ_v²  +  σ_v² E[Z^x Z^x] + σ_b²

where the first G-vars ``p¹ = W p⁰`` are uses of a trained matrix (weight ``σ_W² E[Z^{p⁰}Z^{q⁰}]``),
an input layer (weight ``σ_U² ξᵀξ'/d + σ_b²``) or a trained bias (weight σ²), and the paths end
at the readout vector.  The sum is computed by dynamic programming over *pairs* of variables
(the product graph), memoised, with each factor an array over all pairs of members, so the
cost grows with the number of isomorphic pairs, not the number of paths.  The result is split
by path class ``(parameter, matrix sequence)`` so a user can see which paths carry the kernel.

**SELECT views and families** (positions, tokens; TP IIb D.4.3).  A SELECT re-indexes members,
so between two MATMULs a path may run through several NONLINs joined by SELECTs: a *segment*
``g → x₁ → s₁ = x₁[idx₁] → x₂ → … → x_k``.  Only the backward vector of the segment's end that
comes from its MATMUL users and the readout is a sum of Ẑ atoms independent of the forward pass,
so the derivative factors of a whole segment are taken jointly: one pair expectation of the
product ``Π_j ∂Z^{x_j}/∂Z^{s_{j−1}}`` (each factor re-indexed onto the end's members) per pair of
isomorphic segments, scattered back to the members of g by the composed index maps.  Arrays
live on the members of a family, or on the N outputs for shared vectors (a bias feeds every
output); parameter shares are summed over the members each input owns.  Programs whose inputs
interact (BatchNorm) are first lifted to dependency pairs (:mod:`.lift`), as for backprop, so
that every SELECT stays within one output.  A flatten readout starts the paths with its per-slot
readout covariance.

This derivation shares no code with backprop-in-the-program (:mod:`.backprop`) beyond the
forward limit, the lift and the expectation engine; the two must agree (tests check 1e-10 where
expectations are exact).  It assumes, like Prop. D.3, that no matrix appears with its transpose
in the forward pass: for such programs (weight-tied autoencoders, TP IIb D.4.2) use
``method="backprop"``.
"""

from __future__ import annotations

import numpy as np

from ..errors import LimitError
from ..expectations.canonical import derivative
from ..ir.instructions import INPUTS, SHARED, MatMul, Nonlin, Select, symbol
from ..ir.program import Program
from ..limit.evaluator import Limit
from ..limit.numbers import limit_number
from ..resources import Progress
from .lift import lift_cross_input
from .terms import evaluate_term, parameter_groups, parameter_weight, readout_term, to_inputs


def path_contributions(program: Program, symbolic: bool = False, tier: str = "auto") -> dict:
    """``{(parameter, matrix sequence): (N, N) array}`` of path-sum NTK contributions."""
    return path_sums(program, symbolic, tier)[0]


def path_sums(program: Program, symbolic: bool = False, tier: str = "auto"):
    """:func:`path_contributions` and the :class:`Limit` they were computed on (its
    ``max_rel_error`` bounds the error of every expectation)."""
    program.require_output()
    for W in program.nodes("matrix"):
        if len({g.transpose for g in program.matmuls_of(W.name)}) == 2:
            raise LimitError(
                f"method='paths': matrix {W.name!r} is used with its transpose in the forward "
                "pass, outside Prop. D.3's assumptions; use method='backprop' (which includes "
                "the ZDOT terms of TP IIb D.4.2)")
    for v in program.nodes("vector"):
        uses = {program.node(u).family for u in program.graph.successors(v.name)} - {SHARED}
        if v.family == SHARED and getattr(v, "trainable", False) and len(uses) > 1:
            raise LimitError(
                f"method='paths': the shared vector {v.name!r} is used in the families "
                f"{sorted(uses)}; path sums follow a shared parameter into one family only: use "
                "method='backprop'")
    red = lift_cross_input(program).program.reduced()
    lim = Limit(red, symbolic=symbolic, tier=tier)
    return _PathSums(red, lim, symbolic).contributions(), lim


def by_parameter(parts: dict) -> dict:
    """Path-class shares ``{(parameter, matrix sequence): Θ}`` summed to ``{parameter: Θ}``."""
    out: dict = {}
    for (param, _), value in parts.items():
        out[param] = out[param] + value if param in out else value
    return out


def _scatter(value, m, mb, rows: int, cols: int):
    """``out[a, b] = Σ_{m[i] = a, mb[j] = b} value[i, j]`` (maps None: the identity; −1: no
    member)."""
    for axis, (idx, size) in enumerate(((m, rows), (mb, cols))):
        if idx is None:
            continue
        P = np.zeros((size, len(idx)))
        ok = idx >= 0
        P[idx[ok], np.nonzero(ok)[0]] = 1.0
        if value.dtype == object:
            P = P.astype(int).astype(object)
        value = P @ value if axis == 0 else value @ P.T
    return value


def _compose(outer, inner):
    """The map ``i ↦ outer[inner[i]]`` (None: the identity; −1 stays −1)."""
    if inner is None:
        return outer
    if outer is None:
        return inner
    return np.where(inner >= 0, outer[np.maximum(inner, 0)], -1)


class _PathSums:
    def __init__(self, program: Program, lim: Limit, symbolic: bool):
        self.p, self.lim, self.symbolic = program, lim, symbolic
        self.out = program.readout
        self.users: dict[str, list] = {}
        for node in program.nodes():
            if isinstance(node, (Nonlin, MatMul, Select)):
                for arg in dict.fromkeys(node.args):
                    self.users.setdefault(arg, []).append(node)
        self.start = limit_number(readout_term(program).scale, symbolic)
        self._dx: dict = {}
        self._dg: dict = {}
        self._segments: dict = {}
        self.progress = Progress(f"summing the paths of {program.name!r}", None,
                                 unit="backward covariances")

    def _users(self, name, cls):
        return [u for u in self.users.get(name, []) if isinstance(u, cls)]

    def level(self, name: str) -> str:
        """The family an array of ``name`` lives on: its own, or the outputs for a shared one."""
        family = self.p.node(name).family
        return INPUTS if family == SHARED else family

    def size(self, name: str) -> int:
        return self.p.family_size(self.level(name))

    @staticmethod
    def _accumulate(out: dict, seq, value) -> None:
        out[seq] = out[seq] + value if seq in out else value

    def dx_cov(self, x: str, xb: str) -> dict:
        """``E[Z^{dx}(ξ) Z^{dx̄}(ξ')]`` by path class, for the part of the backward vectors of
        X-vars (x, x̄) that comes from their MATMUL users and the readout (Ẑ atoms and v)."""
        key = (x, xb)
        if key not in self._dx:
            self._resolve(("dx", key))
        return self._dx[key]

    def _resolve(self, item) -> None:
        """Fill the caches of :meth:`dx_cov` and :meth:`dg_cov` for ``item = ("dx"|"dg", key)``
        bottom-up (from the output back), with an explicit stack: a program of depth L would
        otherwise recurse L levels deep (dx_cov → dg_cov → dx_cov of the next layer …)."""
        caches = {"dx": self._dx, "dg": self._dg}
        stack = [item]
        while stack:
            kind, key = stack[-1]
            if key in caches[kind]:
                stack.pop()
                continue
            missing = [d for d in self._needs(kind, key) if d[1] not in caches[d[0]]]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            caches[kind][key] = (self._compute_dx if kind == "dx" else self._compute_dg)(*key)
            self.progress(len(self._dx) + len(self._dg))

    def _needs(self, kind: str, key) -> list:
        """The dx_cov and dg_cov entries that ``kind`` at ``key`` is computed from."""
        a, b = key
        if kind == "dx":
            return [("dg", (g.name, gb.name)) for g in self._users(a, MatMul)
                    for gb in self._users(b, MatMul) if g.label == gb.label]
        return [("dx", (x, xb)) for x, _, _ in self.segments(a) for xb, _, _ in self.segments(b)]

    def _compute_dx(self, x: str, xb: str) -> dict:
        """:meth:`dx_cov` from the dg_cov entries of the MATMUL users of x and x̄ (already
        computed)."""
        out: dict = {}
        if x == xb == self.out.node:
            out[()] = self.start
        for g in self._users(x, MatMul):
            for gb in self._users(xb, MatMul):
                if g.label != gb.label:
                    continue
                var = self.lim.matrix_var(g.matrix)
                for seq, val in self.dg_cov(g.name, gb.name).items():
                    self._accumulate(out, (g.label,) + seq, var * val)
        return out

    def segments(self, a: str) -> list:
        """The segments from G-var or SELECT ``a``: ``(end X-var, derivative product on the
        end's members, map from the end's members to a's)``."""
        if a not in self._segments:
            lim, out = self.lim, []
            for x in self._users(a, Nonlin):
                factor = lim.z_of(derivative(x.expr, symbol(a)), lim.size(x.name))
                if self.level(a) == self.level(x.name):
                    to_a = None
                else:  # a shared vector feeding a family: member ↦ the output that owns it
                    to_a = self.p.get_family(x.family).owner
                out.append((x.name, factor, to_a))
                for s in self._users(x.name, Select):
                    idx = s.index
                    for end, chain, to_s in self.segments(s.name):
                        to_x = _compose(idx, to_s)
                        here = lim.leaves.reindex(factor, np.maximum(to_x, 0))
                        out.append((end, here * chain, _compose(to_a, to_x)))
            self._segments[a] = out
        return self._segments[a]

    def dg_cov(self, g: str, gb: str) -> dict:
        """``E[Z^{dg}(ξ) Z^{dḡ}(ξ')]`` by path class for G-vars or SELECTs (Eq. 106, segment by
        segment)."""
        key = (g, gb)
        if key not in self._dg:
            self._resolve(("dg", key))
        return self._dg[key]

    def _compute_dg(self, g: str, gb: str) -> dict:
        """:meth:`dg_cov` from the dx_cov entries of the segments' ends (already computed)."""
        out: dict = {}
        for x, chain, m in self.segments(g):
            for xb, chainb, mb in self.segments(gb):
                rest = self.dx_cov(x, xb)
                if not rest:
                    continue
                factor = self.lim.expect_pair(chain, self.lim.size(x), chainb,
                                              self.lim.size(xb))
                for seq, val in rest.items():
                    value = np.broadcast_to(factor * val, (self.size(x), self.size(xb)))
                    self._accumulate(out, seq, _scatter(value, m, mb, self.size(g),
                                                        self.size(gb)))
        return out

    def contributions(self) -> dict:
        parts: dict = {}
        lim = self.lim

        def add(param, seqs: dict, weight, a, b):
            for seq, val in seqs.items():
                value = np.broadcast_to(weight * val, (self.size(a), self.size(b)))
                self._accumulate(parts, (param, seq),
                                 to_inputs(self.p, value, self.level(a), self.level(b)))

        for W in self.p.trained_matrices():
            var = parameter_weight(lim, W)
            uses = self.p.matmuls_of(W.name)
            for g in uses:
                for gb in uses:
                    if g.label != gb.label:
                        continue
                    w = var * lim.cov(g.arg, gb.arg)
                    add(W.name, {(g.label,) + s: v for s, v in self.dg_cov(g.name, gb.name).items()},
                        w, g.name, gb.name)
        shared, groups = parameter_groups(self.p)
        for node in shared:
            add(node.name, {(node.name,) + s: v for s, v in self.dg_cov(node.name, node.name).items()},
                limit_number(node.var, self.symbolic), node.name, node.name)
        for param, members in groups.items():
            for a in members:
                for b in members:
                    add(param, {(param,) + s: v for s, v in self.dg_cov(a, b).items()},
                        lim.tangent(a, b), a, b)
        if self.out.trainable:
            self._accumulate(parts, ("readout", ()), evaluate_term(readout_term(self.p), lim))
        self.progress.close()
        return parts
