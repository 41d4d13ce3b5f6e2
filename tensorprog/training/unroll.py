"""Gradient descent unrolled into a NETSOR⊤+ program (TP IIb App. D.1, Eqs. 79–94).

The program is built through the public builder API.  Every vector stands for its family over
the N inputs (training and test points alike) or over another family of members owned by the
inputs (a CNN's (image, position) pairs); ``x[a]`` is member a selected into a shared vector
(SELECT), so that an inner product with one member is a MOMENT over the family.  A tensor
applied to a family updates by a sum over the members each training input owns (a filter tap
over the positions of an image), and a SELECT of the network acts on the backward vectors by
its transpose (:func:`.structure.transpose_index`) and on the δ-vectors as it is (it is
linear).

Scales.  With Yaida's ``s`` (:mod:`.parametrization`) the readout is ``v = n^{-(1+s)/2} ṽ`` and
the backward vectors ``dx = n^{(1+s)/2} ∂f/∂x`` have Θ(1) coordinates; one step moves a
pre-activation by ``n^{-ρ}``, ``ρ = (1 − s)/2``, and ``δh = n^ρ (h_t − h_0)`` is Θ(1).  A matrix
used as ``g = W h`` (TP IIb Eqs. 79–81) after the updates of steps ``s < t`` acts as::

    n^ρ (W_t − W_0) x = −Σ_s Σ_{j∈B_s} η λ σ² χ_s(j) · dg_s[j] · avg(h_s[j] x)

with ``χ_s(j) = ℓ'(f_s(ξ_j), y_j)/|B_s|`` a function of the output scalars, absorbed into the
NONLIN⁺ that uses it (App. D.1.1); for a matrix applied to a family ``Σ_{j∈B_s}`` runs over
the members a owned by j, with ``χ_s(owner(a))``.  The input layer's update carries
``avg(κ[j] κ)`` with an auxiliary initial vector ``κ`` of covariance
``η(λ_U σ_U² ξᵀξ'/d + λ_b σ_b²)`` (the input space's inner products written as a MOMENT; input
layers sharing a weight, such as a recurrent network's time steps, have correlated κ's and
apply each other's updates, as a matrix used several times applies the updates of all its
uses); biases and the readout update by ``dg_s[j]`` and ``x_s[j]`` themselves.

* ``s = 1`` (muP, mean field; ρ = 0): every step is the network itself at the new weights —
  forward ``h_{t+1} = W_0 x_{t+1} + (update terms)``, ``x_{t+1} = ψ(h_{t+1}, …)``, backward
  through ``W_tᵀ = W_0ᵀ + (update terms)``, outputs ``f_t = avg(ṽ_t x_t) + b_t``.
* ``s < 1`` (kernel regime; ρ > 0): the limit of TP IIb Eqs. 91–94 — backward vectors stay at
  initialisation (Eq. 94), NONLINs act linearly on the δ-vectors (Eq. 93,
  ``δx = Σ_a ∂ψ/∂a · δa``), and ``f_t − f_0 = avg(ṽ_0 δx_t) + avg(δṽ_t x_0) + Δb_t``.  With
  ``s = 0`` the initial outputs do not converge to numbers: as TP IIb App. D.1.1 does, the
  program is conditioned on them, which enter as initial scalars ``f0_j`` (the readout's
  conditioning correction vanishes in the limit, App. D.1.1).

MOMENTs of the forward pass (LayerNorm's statistics) add a backward term through their scalar
and a δ-scalar to the forward pass: :mod:`.scalars`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ..errors import TrainingError
from ..ir.builder import BuilderProgram
from ..ir.program import INPUTS, SHARED, symbol
from . import scalars
from .structure import (BiasStep, EmbedStep, MatMulStep, MatrixStep, MomentStep, Network,
                        NonlinStep, SelectStep, derivative)


@dataclass
class Unrolled:
    """The unrolled program and where its results are: ``outputs[t]`` the family scalar of the
    outputs at step t (``f_t`` for ``s = 1``, ``f_t − f_0`` for ``s < 1``; None where it is 0),
    ``f0`` the names of the conditioned initial outputs of the training points (s = 0),
    ``vectors[t]`` the program vector of each network vector at step t (feature learning)."""

    program: BuilderProgram
    outputs: list
    f0: dict = field(default_factory=dict)
    vectors: list = field(default_factory=list)


class _Builder:
    def __init__(self, net: Network, rates: dict, loss, y: dict, batches, f0: dict | None,
                 feature_learning: bool, name: str):
        self.net, self.rates, self.loss, self.y = net, rates, loss, y
        self.batches, self.linear = batches, not feature_learning
        self.q = BuilderProgram(name)
        self.selects, self.moments = {}, {}
        self.terms = {k: [] for k in net.tensors}
        self.f0 = {}
        self.f0_values = f0

    # ------------------------------------------------------------ helpers
    def node(self, name, expr) -> str:
        """Materialise ``expr`` as the NONLIN ``name``."""
        self.q.add_inferred("nonlin", name, expr)
        return name

    def at(self, vec: str, j: int) -> sp.Symbol:
        """``vec[j]``: member j of a family vector, as a shared vector (SELECT)."""
        key = (vec, j)
        if key not in self.selects:
            name = f"{vec}_at{j}"
            self.q.add_select(name, vec, np.array([j]), "shared")
            self.selects[key] = name
        return symbol(self.selects[key])

    def avg(self, expr, name=None) -> sp.Symbol:
        """MOMENT ``avg(expr)`` (cached by expression)."""
        key = sp.srepr(expr)
        if key not in self.moments:
            name = name or self.q.fresh_name("th")
            self.q.add_inferred("moment", name, expr)
            self.moments[key] = name
        return symbol(self.moments[key])

    def members(self, vec: str, j: int) -> np.ndarray:
        """The members of ``vec``'s family owned by input ``j`` (``[j]`` in the inputs
        family; every position of image j in a CNN's family)."""
        family = self.q.node(vec).family
        return np.array([j]) if family == INPUTS else np.flatnonzero(self.net.owner(family) == j)

    def select(self, name: str, vec: str, index, family: str) -> str:
        """Materialise the SELECT ``name := vec[index]`` in ``family``."""
        self.q.add_select(name, vec, index, family)
        return name

    def chi(self, t: int, j: int, f_sym) -> sp.Expr:
        return self.loss.grad_at(f_sym, self.y[j]) / len(self.batches[t])

    def kappa(self, st):
        """The auxiliary vector ``κ`` of the input layer ``st``: covariance
        ``η(λ_U σ_U² ξᵀξ'/d + λ_b σ_b²)`` with itself and with the κ of every earlier input
        layer sharing its weight (none when the layer is frozen)."""
        rw, rb = self.rates[st.weight], self.rates[st.bias]
        if not (rw or rb):
            return
        cross = {f"k_{o.name}": rw * st.data @ o.data.T + rb for o in self.net.steps
                 if isinstance(o, EmbedStep) and o.weight == st.weight and f"k_{o.name}" in self.q}
        self.q.vector(f"k_{st.name}", cov=rw * st.data @ st.data.T + rb, cross=cross or None,
                      family=st.family)

    # ------------------------------------------------------------ initial program
    def initial(self):
        q, net = self.q, self.net
        if net.families:
            q.declare_inputs(net.num_inputs)
            for fam, owner in net.families.items():
                q.family(fam, owner)
        for st in net.steps:
            T = net.tensors
            if isinstance(st, MatrixStep):
                q.matrix(st.name, var=T[st.name].var)
            elif isinstance(st, BiasStep):
                q.bias(st.name, var=T[st.name].var)
            elif isinstance(st, EmbedStep):
                q.embed(st.data, var=T[st.weight].var, bias_var=T[st.bias].var, name=st.name,
                        weight=st.weight, family=st.family)
                self.kappa(st)
            elif isinstance(st, SelectStep):
                self.select(st.name, st.args[0], st.index, st.family)
            elif isinstance(st, MatMulStep):
                q.add_matmul(st.name, st.matrix, st.args[0], st.transpose)
            elif isinstance(st, MomentStep):
                q.add_inferred("moment", st.name, st.expr)
            else:
                q.add_nonlin(st.name, st.expr, st.args, st.scalars)
        q.vector("v_0", cov=net.tensors["v"].var)
        if self.f0_values is not None:
            for j in sorted({j for b in self.batches for j in b}):
                q.add_scalar(f"f0_{j}", float(self.f0_values.get(j, 0.0)))
                self.f0[j] = f"f0_{j}"

    # ------------------------------------------------------------ backward pass
    def backward(self, t: int, cur: dict, v: str) -> dict:
        """Backward vectors ``d̃x`` of every vector at step t (``cur``: its forward vectors)."""
        acc = {self.net.readout: [symbol(v)]}
        grads = {}
        for st in reversed(self.net.steps):
            if isinstance(st, MatrixStep) or st.name not in acc:
                continue
            if isinstance(st, MomentStep):
                scalars.pull_moment(self, st, cur, acc)
                continue
            g = self.node(f"g{st.name}_{t}", sp.Add(*acc.pop(st.name)))
            grads[st.name] = g
            if isinstance(st, NonlinStep):
                sub = scalars.renamed(st, cur)
                for a in st.args:
                    d = derivative(st.expr, a).xreplace(sub)
                    if d != 0:
                        acc.setdefault(a, []).append(d * symbol(g))
                scalars.pull_into_scalars(self, st, g, cur, acc)
            elif isinstance(st, SelectStep):  # the transpose of the selection
                x = st.args[0]
                fam = self.q.node(x).family
                shared = self.q.node(g).family == SHARED   # the same for every member
                acc.setdefault(x, []).append(sp.Add(*[
                    symbol(self.select(self.q.fresh_name("s"), g,
                                       np.where(back >= 0, 0, -1) if shared else back, fam))
                    for back in st.back]))
            elif isinstance(st, MatMulStep):
                x = st.args[0]
                h = self.q.fresh_name("h")
                self.q.add_matmul(h, st.matrix, g, not st.transpose)
                parts = [symbol(h)]
                if not self.linear:
                    parts += self.update_terms(st.matrix, g, not st.transpose)
                acc.setdefault(x, []).append(sp.Add(*parts))
        return grads

    def update_terms(self, W: str, x: str, transpose: bool) -> list:
        """``n^ρ (W_t − W_0) x`` (or with ``W_tᵀ``) from the recorded updates of W; for an
        input layer's weight ``x`` is its ``κ`` and the terms are the layer's shift."""
        out = []
        for coef, left, right in self.terms[W]:
            a, b = (right, left) if transpose else (left, right)
            out.append(coef * symbol(a) * self.avg(symbol(b) * symbol(x)))
        return out

    # ------------------------------------------------------------ one update
    def record(self, t: int, cur: dict, grads: dict, fvals: dict):
        """Record the updates of step t (batch ``B_t``) with ``fvals[j]`` the outputs."""
        net, r = self.net, self.rates
        for j in self.batches[t]:
            c = -self.chi(t, j, fvals[j])
            for st in net.steps:
                if st.name not in grads or not isinstance(st, (MatMulStep, EmbedStep, BiasStep)):
                    continue
                g = grads[st.name]
                # one term per member j owns: a tensor applied to a family sums over them
                for a in self.members(g, j):
                    if isinstance(st, MatMulStep) and r[st.matrix]:
                        dg, h = self.at(g, a), self.at(cur[st.args[0]], a)
                        left, right = (h, dg) if st.transpose else (dg, h)
                        self.terms[st.matrix].append((c * r[st.matrix], left.name, right.name))
                    elif isinstance(st, EmbedStep) and f"k_{st.name}" in self.q:
                        self.terms[st.weight].append((c, self.at(g, a).name,
                                                      self.at(f"k_{st.name}", a).name))
                    elif isinstance(st, BiasStep) and r[st.name]:
                        self.terms[st.name].append((c * r[st.name], self.at(g, a).name))
            if r["v"]:
                self.terms["v"].append((c * r["v"], self.at(cur[net.readout], j).name))
            if r["v_b"]:
                self.terms["v_b"].append(c * r["v_b"])

    def vector_sum(self, key) -> sp.Expr:
        return sp.Add(*[c * symbol(g) for c, g in self.terms[key]])

    # ------------------------------------------------------------ forward pass
    def forward(self, t: int, cur0: dict, cur: dict) -> dict:
        """Forward vectors at step t after the recorded updates: the vectors themselves
        (feature learning) or their δ-vectors (kernel regime; None where zero)."""
        new = {}
        for st in self.net.steps:
            n = st.name
            if isinstance(st, MatrixStep):
                continue
            if isinstance(st, SelectStep):  # linear: the δ-vector (or vector) selected
                x = new[st.args[0]]
                if x is None or x == cur0[st.args[0]]:
                    new[n] = None if self.linear else cur0[n]
                else:
                    new[n] = self.select(f"{'d' if self.linear else ''}{n}_{t}", x, st.index,
                                         st.family)
                continue
            if isinstance(st, MomentStep):
                new[n] = scalars.moment_forward(self, st, t, cur0, new)
                continue
            if isinstance(st, EmbedStep):
                d = sp.Add(*self.update_terms(st.weight, f"k_{n}", False))
                base = symbol(n)
            elif isinstance(st, BiasStep):
                d = self.vector_sum(n)
                base = symbol(n)
            elif isinstance(st, MatMulStep):
                x = st.args[0]
                parts = []
                if self.linear:
                    if new.get(x) is not None:
                        h = self.q.fresh_name("h")
                        self.q.add_matmul(h, st.matrix, new[x], st.transpose)
                        parts.append(symbol(h))
                    parts += self.update_terms(st.matrix, cur0[x], st.transpose)
                else:
                    h = self.q.fresh_name("h")
                    self.q.add_matmul(h, st.matrix, new[x], st.transpose)
                    parts = [symbol(h)] + self.update_terms(st.matrix, new[x], st.transpose)
                d, base = sp.Add(*parts), sp.S.Zero
            else:
                if self.linear:
                    d = scalars.linear_change(st, cur0, new)
                else:
                    d = st.expr.xreplace(scalars.renamed(st, new))
                base = sp.S.Zero
            if self.linear:
                new[n] = None if d == 0 else self.node(f"d{n}_{t}", d)
            elif d == 0:
                new[n] = cur0[n]
            else:
                new[n] = self.node(f"{n}_{t}", base + d)
        return new

    # ------------------------------------------------------------ outputs
    def output_expr(self, t: int, xL, cur0L, v: str | None):
        """ψ of the output MOMENT at step t and its bias shift."""
        bias = sp.Add(*self.terms["v_b"])
        if self.linear:
            parts = []
            if xL is not None:
                parts.append(symbol("v_0") * symbol(xL))
            if v is not None:
                parts.append(symbol(v) * symbol(cur0L))
            return sp.Add(*parts), bias
        return symbol(v) * symbol(xL), bias

    def output(self, t, name, psi, bias, select=None):
        if psi == 0:
            return None if bias == 0 else bias
        if select is not None:
            psi = psi.xreplace({s: self.at(s.name, select) for s in psi.free_symbols
                                if self.q.node(s.name).family == "inputs"})
        return self.avg(psi, name) + bias

    def build(self) -> Unrolled:
        self.initial()
        net, T = self.net, len(self.batches)
        L = net.readout
        cur0 = {st.name: st.name for st in net.steps if not isinstance(st, MatrixStep)}
        cur, v, outputs = dict(cur0), "v_0", []
        vectors = [dict(cur0)]
        grads = self.backward(0, cur0, "v_0")
        delta = {}
        for t in range(T + 1):
            if self.linear:
                xL = delta.get(L)
                dv = None if not self.terms["v"] else self.node(f"dv_{t}", self.vector_sum("v"))
                psi, bias = self.output_expr(t, xL, L, dv)
            else:
                psi, bias = self.output_expr(t, cur[L], L, v)
            out = self.output(t, f"f_{t}", psi, bias) if (t or not self.linear) else None
            outputs.append(out)
            if t == T:
                break
            fvals = {}
            for j in self.batches[t]:
                o = (self.output(t, f"f_{t}_at{j}", psi, bias, select=j)
                     if t or not self.linear else None)
                if self.linear:
                    f0 = symbol(self.f0[j]) if j in self.f0 else sp.S.Zero
                    fvals[j] = f0 + (o if o is not None else 0)
                else:
                    fvals[j] = o
            if not self.linear and t:
                grads = self.backward(t, cur, v)
            self.record(t, cur, grads, fvals)
            if self.linear:
                delta = self.forward(t + 1, cur0, cur)
            else:
                cur = self.forward(t + 1, cur0, cur)
                vectors.append(dict(cur))
                if self.terms["v"]:
                    v = self.node(f"v_{t + 1}", symbol("v_0") + self.vector_sum("v"))
        return Unrolled(self.q, outputs, dict(self.f0), vectors)


def unroll(net: Network, rates: dict, loss, y: dict, batches, feature_learning: bool,
           f0: dict | None = None, name: str | None = None) -> Unrolled:
    """Build the program of ``len(batches)`` gradient-descent steps (module docstring).

    Parameters
    ----------
    net : the network (:func:`.structure.read_network`).
    rates : tensor name → ``η λ σ²`` in the limit (0 for tensors frozen there).
    loss : :class:`.losses.Loss`.
    y : input index → target.
    batches : one array of input indices per step.
    feature_learning : ``s = 1`` (True) or the kernel regime (False).
    f0 : input index → conditioned initial output (``s = 0``); None: initial outputs 0.

    Returns
    -------
    Unrolled

    Raises
    ------
    TrainingError : nothing in the network is trained.
    """
    if not any(rates.values()):
        raise TrainingError("no tensor of the network trains in this limit (all learning "
                            "rates are 0 or frozen by the parametrization)")
    b = _Builder(net, rates, loss, y, batches, f0, feature_learning,
                 name or f"{net.name}_trained")
    return b.build()
