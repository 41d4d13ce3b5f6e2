"""The same training run at finite width n: explicit weights, NumPy, many seeds at once.

Every tensor is held as its parameter ``w ~ N(0, n^{-2b})`` with the multiplier
``σ n^{-a}/√F_c`` and trained by ``w ← w − η λ n^{-c} ∂L/∂w`` (:mod:`.parametrization`), so a
gauge-transformed pair of parametrizations computes the same numbers (exactly so when the
width is a power of 4).  Arrays carry a leading seed axis; seeds are processed in chunks that
fit in memory, and every seed draws its weights from its own generator, so results do not
depend on the chunking.  A vector is held for every member of its family (the N inputs, or a
CNN's N·P (image, position) pairs); the backward pass runs on every input with the loss
derivative of the inputs outside the batch set to 0, so a tensor's gradient is the sum over
all the members it acts on (every position of every image in the batch) and a SELECT's backward
is its transpose.
"""
from __future__ import annotations

import numpy as np

from ..functions import lambdify
from ..ir.program import symbol
from . import scalars
from .structure import (BiasStep, EmbedStep, MatMulStep, MatrixStep, MomentStep, Network,
                        NonlinStep, SelectStep, derivative)

_CHUNK_BYTES = 256 * 2**20


def _shape(net: Network, tensor, n: int) -> tuple:
    role = tensor.role
    if role == "input":
        step = next(st for st in net.steps
                    if isinstance(st, EmbedStep) and st.weight == tensor.name)
        return (n, step.data.shape[1])
    return {"hidden": (n, n), "bias": (n,), "output": (n,), "output_bias": ()}[role]


def _draw(net: Network, par, n: int, seeds) -> dict:
    """Parameters ``w`` of every tensor for each seed: ``{name: (S, ...)}``."""
    seeds = list(seeds)
    out = {k: np.empty((len(seeds),) + _shape(net, t, n)) for k, t in net.tensors.items()}
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng([int(seed), 20240917])
        for name, tensor in net.tensors.items():
            b = float(par.abc(tensor.role)[1])
            w = out[name][i]
            if w.ndim:
                rng.standard_normal(out=w)
                w *= float(n) ** (-b)
            else:
                out[name][i] = rng.standard_normal() * float(n) ** (-b)
    return out


def _take(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``x[index]`` along the member axis (S, members, n), ``-1`` the zero vector."""
    padded = np.concatenate([x, np.zeros(x.shape[:1] + (1,) + x.shape[2:])], axis=1)
    return padded[:, index]


def _apply(w: np.ndarray, x: np.ndarray, plain: bool) -> np.ndarray:
    """``w x`` (``plain``) or ``wᵀ x`` for every seed and input: ``w`` (S, n, n), ``x``
    (S, N, n) → (S, N, n).  The multiplier is applied to the (small) result, not to ``w``."""
    return np.einsum("sij,sNj->sNi" if plain else "sji,sNj->sNi", w, x)


class FiniteTrainer:
    """Gradient descent of ``net`` at width ``n`` under the abc-parametrization ``par``."""

    def __init__(self, net: Network, par, n: int, lr: float, loss, y: dict, batches):
        self.net, self.par, self.n, self.lr = net, par, int(n), float(lr)
        self.loss_grad = loss.numeric_grad()
        self.y, self.batches = y, batches
        self.mult, self.rate = {}, {}
        for name, t in net.tensors.items():
            a, _, c = (float(x) for x in par.abc(t.role))
            self.mult[name] = np.sqrt(t.var / t.fan_in) * float(n) ** (-a)
            self.rate[name] = (self.lr * t.lr) * float(n) ** (-c) if t.trainable else 0.0
        self.psi, self.dpsi = {}, {}
        for st in net.steps:
            if isinstance(st, (NonlinStep, MomentStep)):
                args = scalars.reads(st)
                names = [f"_a{i}" for i in range(len(args))]
                sub = {symbol(a): symbol(b) for a, b in zip(args, names)}
                expr = st.expr.xreplace(sub)
                self.psi[st.name] = lambdify(names, expr, np)
                self.dpsi[st.name] = [lambdify(names, derivative(st.expr, a).xreplace(sub), np)
                                      for a in args]

    def bytes_per_seed(self) -> int:
        n = self.n
        members = max([self.net.num_inputs] + [len(o) for o in self.net.families.values()])
        vectors = sum(1 for st in self.net.steps if not isinstance(st, MatrixStep))
        mats = len(self.net.matrices)
        return 8 * (3 * mats * n * n + 4 * vectors * members * n)

    # ------------------------------------------------------------------ passes
    def _forward(self, w: dict) -> tuple[dict, np.ndarray]:
        net, m = self.net, self.mult
        vals = {}
        for st in net.steps:
            if isinstance(st, EmbedStep):
                U, b = m[st.weight] * w[st.weight], m[st.bias] * w[st.bias]
                vals[st.name] = np.einsum("snd,Nd->sNn", U, st.data) + b[:, None, :]
            elif isinstance(st, SelectStep):
                vals[st.name] = _take(vals[st.args[0]], st.index)
            elif isinstance(st, BiasStep):
                vals[st.name] = (m[st.name] * w[st.name])[:, None, :]
            elif isinstance(st, MatMulStep):
                vals[st.name] = m[st.matrix] * _apply(w[st.matrix], vals[st.args[0]],
                                                      not st.transpose)
            elif isinstance(st, NonlinStep):
                args = scalars.reads(st)
                out = self.psi[st.name](*[vals[a] for a in args])
                vals[st.name] = np.broadcast_to(out, np.broadcast_shapes(
                    *[vals[a].shape for a in args]))
            elif isinstance(st, MomentStep):
                vals[st.name] = scalars.finite_moment(self.psi[st.name], st, vals)
        v, vb = m["v"] * w["v"], m["v_b"] * w["v_b"]
        f = np.einsum("sNn,sn->sN", vals[net.readout], v) + vb[:, None]
        return vals, f

    def _gradients(self, w: dict, vals: dict, f: np.ndarray, batch) -> dict:
        net, m = self.net, self.mult
        B = np.asarray(batch)
        yb = np.array([self.y[j] for j in batch])
        chi = np.zeros(f.shape)                     # ℓ'/|B| on the batch, 0 elsewhere
        chi[:, B] = self.loss_grad(f[:, B], yb[None, :]) / len(B)
        G = {net.readout: chi[:, :, None] * (m["v"] * w["v"])[:, None, :]}
        grads = {"v": np.einsum("sB,sBn->sn", chi, vals[net.readout]), "v_b": chi.sum(1)}
        for st in reversed(net.steps):
            g = G.pop(st.name, None)
            if g is None or isinstance(st, MatrixStep):
                continue
            if isinstance(st, (NonlinStep, MomentStep)):
                scalars.finite_pull(st, self.dpsi[st.name], vals, g, G, self.n)
            elif isinstance(st, SelectStep):  # the transpose of the selection
                G[st.args[0]] = G.get(st.args[0], 0) + sum(_take(g, back) for back in st.back)
            elif isinstance(st, MatMulStep):
                x = np.broadcast_to(vals[st.args[0]], g.shape)
                back = m[st.matrix] * _apply(w[st.matrix], g, st.transpose)
                G[st.args[0]] = G.get(st.args[0], 0) + back
                # Σ_B g_B x_Bᵀ (its transpose for a use of Wᵀ)
                dW = np.einsum("sBi,sBj->sji" if st.transpose else "sBi,sBj->sij", g, x)
                grads[st.matrix] = dW if st.matrix not in grads else grads[st.matrix] + dW
            elif isinstance(st, EmbedStep):
                # a shared input layer: its gradient is summed over its uses
                grads[st.weight] = grads.get(st.weight, 0) + np.einsum("sBi,Bd->sid", g,
                                                                       st.data)
                grads[st.bias] = grads.get(st.bias, 0) + g.sum(1)
            elif isinstance(st, BiasStep):
                grads[st.name] = g.sum(1)
        return grads

    def run(self, seeds, record=None) -> np.ndarray:
        """Outputs ``(S, steps + 1, N)`` of the run for each seed; ``record`` (a list of
        vector names) also returns ``{name: (S, steps + 1, N, n)}`` of those vectors."""
        out, kept = [], {k: [] for k in (record or [])}
        per = max(1, _CHUNK_BYTES // max(1, self.bytes_per_seed()))
        seeds = list(seeds)
        for start in range(0, len(seeds), per):
            w = _draw(self.net, self.par, self.n, seeds[start:start + per])
            fs, vs = [], {k: [] for k in kept}
            for t in range(len(self.batches) + 1):
                vals, f = self._forward(w)
                fs.append(f)
                for k in kept:  # a shared vector is repeated for every input
                    x = vals[k]
                    vs[k].append(np.broadcast_to(x, x.shape[:1] + (
                        x.shape[1] if x.shape[1] > 1 else self.net.num_inputs, self.n)).copy())
                if t == len(self.batches):
                    break
                grads = self._gradients(w, vals, f, self.batches[t])
                for name, g in grads.items():
                    if self.rate[name]:
                        # in place: g and w are this chunk's own arrays (n × n at most)
                        g = np.multiply(g, self.rate[name] * self.mult[name],
                                        out=g if np.ndim(g) else None)
                        w[name] = np.subtract(w[name], g, out=w[name] if np.ndim(w[name])
                                              else None)
            out.append(np.stack(fs, axis=1))
            for k in kept:
                kept[k].append(np.stack(vs[k], axis=1))
        fs = np.concatenate(out)
        if record:
            return fs, {k: np.concatenate(v) for k, v in kept.items()}
        return fs
