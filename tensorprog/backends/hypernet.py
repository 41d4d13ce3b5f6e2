"""The actual finite-width hypernetwork h(x, z) = g(z; f(x)) (Littwin, Galanti, Wolf, Yang,
*On Infinite-Width Hypernetworks*, Eqs. 2–3; the limit program is ``programs/hypernet.py``, built
from the blocks of :mod:`tensorprog.nn.hypernet`).  Part of the finite-width backend: it draws
from the backend's per-seed streams (:class:`~tensorprog.backends.sampling.SeedStreams`), chunks
the seeds with :mod:`tensorprog.chunking` and returns a :class:`~tensorprog.Simulation`.

The finite-width hypernetwork (:func:`simulate_hypernet`, :class:`HyperNet`), in NumPy,
vectorised over seeds (leading axis):

    f:  y¹ = W¹ x/√d_x,  q^l = √2 relu(y^l),  y^{l+1} = W^{l+1} q^l/√n,  f(x) = y^L ∈ R^P
    g:  g¹ = V¹ z/√d_z,  a^l = √2 relu(g^l),  g^{l+1} = V^{l+1} a^l/√m,  h = g^H
        (vec V¹, …, vec V^H) = f(x),   V¹: m×d_z,  V^l: m×m,  V^H: 1×m

(g_depth = 1: V¹ is 1×d_z; f_depth = 1: f(x) = W¹x/√d_x.)  All W are N(0, 1) (NTK
parametrization) and are the only parameters.  Per seed it returns the outputs, the exact
finite-width hyperkernel ``K^h_ij = Σ_w ∂h_i/∂w ∂h_j/∂w`` by backprop — through g into f's
outputs (``δ_i = ∂h_i/∂f(x_i)``), then through f — without forming any gradient matrix:

* last layer W^L (P × k, k = n, input ``A = q^{L−1}/√n``): ``(δ_i·δ_j)(A_iᵀA_j)``, with
  ``δ_i·δ_j = Σ_l (dg^l_i·dg^l_j)(a^{l−1}_i·a^{l−1}_j)/fan_in_l`` (g's own finite-width kernel);
* body layer W^l: ``(dy^l_i·dy^l_j)(q^{l−1}_i·q^{l−1}_j)/fan_in_l``, from
  ``e_i = W^Lᵀ δ_i`` (∂h_i/∂A) backpropagated through f;

and the per-seed NNGP sample ``(A_iᵀA_j)(a^{H−1}_i·a^{H−1}_j)/fan_in_H``: the covariance of h
over the rows of W^L that produce g's readout, everything else fixed (its seed mean is the
finite-width NNGP E[h_i h_j] exactly; cf. :class:`tensorprog.Simulation`).

``sampler``: ``"explicit"`` draws every W (the last one alone is P × n normals per seed,
P ≈ (g_depth − 2)·m²) and multiplies by it.  ``"conditional"`` (the default) draws the same
network's relevant quantities *exactly in distribution* at a cost linear in n (f's outputs,
the P weights of g, are still drawn in full).  For a layer W with input A (k × N_x, one
column per distinct x), each row of W splits into its projection on span A, fixed by the
forward product, and an independent orthogonal part.  With
``AᵀA = UΛUᵀ`` and ``B = A U Λ^{−1/2}`` (orthonormal columns), ``Ξ = W B`` has iid N(0, 1)
entries and ``W A = Ξ Λ^{1/2} Uᵀ``; ``Wᵀ dy_j = B Ξᵀ dy_j + (I − BBᵀ) η_j`` with η Gaussian,
``Cov(η_i, η_j) = (dy_i·dy_j) I``, independent of everything the forward pass and the layers
above used (:class:`ConditionalLayer`, applied to every layer of f).  f really produces g's
weights ``F = W^L A`` in both modes; "conditional" never materialises W, whose entries beyond
W A matter only through Wᵀ dy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..chunking import chunk_bounds, chunk_size
from ..errors import ProgramError
from ..linalg import eigen_sqrt
from .sampling import SeedStreams
from .simulate import Simulation

__all__ = ["HyperNet", "HypernetSimulation", "simulate_hypernet", "hypernet_outputs",
           "hypernet_kernels", "check_pairs", "ExplicitLayer", "ConditionalLayer",
           "explicit_layers", "run_layers", "SAMPLERS"]

SQRT2 = np.sqrt(2.0)
SAMPLERS = ("conditional", "explicit")


@dataclass(frozen=True)
class HyperNet:
    """Shapes of a hypernetwork: f of width n and depth L on x ∈ R^{d_x}, g of width m and
    depth H on z ∈ R^{d_z} (see the module docstring)."""

    d_x: int
    d_z: int
    n: int
    m: int
    f_depth: int = 4
    g_depth: int = 4

    def __post_init__(self):
        for key in ("d_x", "d_z", "n", "m", "f_depth", "g_depth"):
            v = getattr(self, key)
            try:
                ok = not isinstance(v, bool) and int(v) == v and v >= 1
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ProgramError(f"HyperNet: {key} must be an integer ≥ 1, got {v!r}")
            object.__setattr__(self, key, int(v))

    @property
    def g_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of V¹ … V^H."""
        H, m = self.g_depth, self.m
        if H == 1:
            return [(1, self.d_z)]
        return [(m, self.d_z)] + [(m, m)] * (H - 2) + [(1, m)]

    @property
    def num_outputs(self) -> int:
        """P, the number of weights of g = the output dimension of f."""
        return sum(o * i for o, i in self.g_shapes)

    @property
    def f_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of W¹ … W^L."""
        L, n, P = self.f_depth, self.n, self.num_outputs
        if L == 1:
            return [(P, self.d_x)]
        return [(n, self.d_x)] + [(n, n)] * (L - 2) + [(P, n)]

    @property
    def num_parameters(self) -> int:
        return sum(o * i for o, i in self.f_shapes)

    def sample(self, rng: np.random.Generator) -> list[np.ndarray]:
        """One seed's parameters W¹ … W^L, N(0, 1) entries."""
        return [rng.standard_normal(s) for s in self.f_shapes]


def check_pairs(X, Z):
    X, Z = np.asarray(X, dtype=float), np.asarray(Z, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    Z = Z[:, None] if Z.ndim == 1 else Z
    if X.ndim != 2 or Z.ndim != 2 or X.shape[0] != Z.shape[0] or X.shape[0] == 0:
        raise ProgramError(f"X and Z must be (N, d_x) and (N, d_z) with the same N, got "
                           f"{X.shape} and {Z.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Z))):
        raise ProgramError("X and Z must be finite")
    Xu, index = np.unique(X, axis=0, return_inverse=True)
    return X, Z, Xu, np.asarray(index).reshape(-1)


class ExplicitLayer:
    """A weight matrix W (out × in) held transposed, ``Wt`` (S, in, out)."""

    def __init__(self, Wt):
        self.Mt = Wt

    def forward(self, A):
        """``(W A)ᵀ`` (S, N_x, out) for the layer input A (S, in, N_x)."""
        return np.swapaxes(A, -1, -2) @ self.Mt

    def backward(self, apply, D):
        """``Wᵀ dy_j`` (S, in, N) for the per-pair output gradients that ``apply(Mt)`` contracts
        with (D, their Gram matrix, is not needed)."""
        return apply(self.Mt)


class ConditionalLayer:
    """The same matrix W, never drawn: only W A and Wᵀ dy are, exactly in distribution.

    Each row w of W (N(0, I)) splits into its projection on span(A), fixed by the forward pass
    ``Aᵀw``, and an independent orthogonal part.  With ``AᵀA = UΛUᵀ`` and ``B = AUΛ^{−1/2}``
    (orthonormal columns), ``Ξ = W B`` has iid N(0, 1) entries and ``W A = Ξ Λ^{1/2} Uᵀ``;
    ``Wᵀ dy_j = B Ξᵀ dy_j + (I − BBᵀ) η_j`` with η Gaussian, ``Cov(η_i, η_j) = (dy_i·dy_j) I``,
    independent of everything the forward pass and the layers above used.  ``Xit`` is Ξᵀ
    (S, N_x, out); ``eta`` the (S, in, N) normals for η (or a function ``eta(D, apply)`` — a
    test hook)."""

    def __init__(self, Xit, eta=None):
        self.Mt, self.eta = Xit, eta

    def forward(self, A):
        U, sq, isq = eigen_sqrt(np.swapaxes(A, -1, -2) @ A)
        self.B = (A @ U) * isq[:, None, :]                         # (S, in, N_x)
        return (U * sq[:, None, :]) @ self.Mt                      # rows ~ N(0, AᵀA)

    def backward(self, apply, D):
        t = apply(self.Mt)                                         # Ξᵀ dy_j  (S, N_x, N)
        if callable(self.eta):
            eta = self.eta(D, apply)
        else:
            Us, ms, _ = eigen_sqrt(D)
            eta = self.eta @ np.swapaxes(Us * ms[:, None, :], -1, -2)   # Cov = D_ij I
        B = self.B
        return B @ t + eta - B @ (np.swapaxes(B, -1, -2) @ eta)


def _g_blocks(net: HyperNet, Ft):
    """Split f's outputs Ft (S, N_x, P) into g's weights: a list of (S, N_x, out, in) views."""
    S, Nx, _ = Ft.shape
    out, off = [], 0
    for o, i in net.g_shapes:
        out.append(Ft[:, :, off:off + o * i].reshape(S, Nx, o, i))
        off += o * i
    return out


def _per_x(V, vectors, ia, transpose: bool):
    """``V(x_{ia[j]}) v_j`` (or ``Vᵀ``) for every pair j: V (S, N_x, o, i), vectors (S, N, ·);
    one matrix–matrix product per distinct x."""
    S, Nx, o, i = V.shape
    out = np.empty((S, vectors.shape[1], i if transpose else o))
    for a in range(Nx):
        sel = np.flatnonzero(ia == a)
        if sel.size == 0:
            continue
        vs = vectors[:, sel, :]
        out[:, sel, :] = vs @ V[:, a] if transpose else vs @ np.swapaxes(V[:, a], -1, -2)
    return out


def _g_pass(net: HyperNet, Vs, ia, Z):
    """Forward and backward through g, pair j using the weights Vs[·][:, ia[j]] generated from
    its x.  Returns the outputs (S, N), the per-layer (dg^l, a^{l−1}) with dg^l = ∂h/∂g^l
    (S, N, out), g's kernel D_ij = δ_i·δ_j (S, N, N) with δ_i = ∂h_i/∂(its weights), and
    a^{H−1} (S, N, fan_in_H)."""
    S = Vs[0].shape[0]
    N = Z.shape[0]
    a = np.broadcast_to(Z, (S,) + Z.shape)
    acts, pres = [a], []
    for l, V in enumerate(Vs):
        g = _per_x(V, a, ia, False) / np.sqrt(V.shape[-1])
        pres.append(g)
        if l < len(Vs) - 1:
            a = SQRT2 * np.maximum(g, 0.0)
            acts.append(a)
    h = pres[-1][..., 0]
    dg = np.ones((S, N, 1))
    layers = [None] * len(Vs)
    for l in range(len(Vs) - 1, -1, -1):
        V, a = Vs[l], acts[l]
        layers[l] = (dg, a)
        if l > 0:
            da = _per_x(V, dg, ia, True) / np.sqrt(V.shape[-1])
            dg = da * (SQRT2 * (pres[l - 1] > 0))
    D = sum((dg @ np.swapaxes(dg, -1, -2)) * (a @ np.swapaxes(a, -1, -2)) / a.shape[-1]
            for dg, a in layers)
    return h, layers, D, acts[-1]


def _contract(net: HyperNet, Mt, layers):
    """``Mᵀ δ_j`` for every pair j, with M given transposed, Mt (S, k, P) → (S, k, N), block by
    block: δ_j on the block of V^l is ``dg^l_j ⊗ a^{l−1}_j / √fan_in``.  Contracts with a^{l−1}
    first when k ≤ fan_in (Ξᵀ of the conditional sampler), else forms δ's block (P numbers per
    pair) and multiplies once."""
    S, k, P = Mt.shape
    out, off = None, 0
    for (o, i), (dg, a) in zip(net.g_shapes, layers):
        if k <= i:
            u = (Mt[:, :, off:off + o * i].reshape(S, k * o, i) @ np.swapaxes(a, -1, -2))
            t = np.einsum("skon,sno->skn", u.reshape(S, k, o, -1), dg)
        else:
            delta = (dg[:, :, :, None] * a[:, :, None, :]).reshape(S, dg.shape[1], o * i)
            t = Mt[:, :, off:off + o * i] @ np.swapaxes(delta, -1, -2)
        t = t / np.sqrt(i)
        out = t if out is None else out + t
        off += o * i
    return out


def run_layers(net: HyperNet, layers_f, Xu, ia, Z, S: int):
    """Outputs (S, N), NNGP samples (S, N, N) and the NTK share of each of f's layers for a
    chunk of S seeds; ``layers_f`` are f's L layers (explicit or conditional)."""
    A = np.broadcast_to(Xu.T / np.sqrt(Xu.shape[1]), (S,) + Xu.T.shape)
    As, ys = [], []
    for l, layer in enumerate(layers_f):
        As.append(A)
        Y = layer.forward(A)                                       # (S, N_x, out)
        if l < len(layers_f) - 1:
            y = np.swapaxes(Y, -1, -2)                             # y^{l+1} (S, n, N_x)
            ys.append(y)
            A = SQRT2 * np.maximum(y, 0.0) / np.sqrt(y.shape[1])
    Ft = np.ascontiguousarray(Y)                                   # f's outputs (S, N_x, P)
    h, g_layers, D, a_last = _g_pass(net, _g_blocks(net, Ft), ia, Z)

    def gram(A):                                                   # (S, N, N) over the pairs
        G = np.swapaxes(A, -1, -2) @ A
        return G[:, ia][:, :, ia]

    G_last = gram(As[-1])
    nngp = G_last * (a_last @ np.swapaxes(a_last, -1, -2)) / a_last.shape[-1]
    L = len(layers_f)
    parts = {f"W{L}": D * G_last}
    if L > 1:
        # e_j = W^Lᵀ δ_j = ∂h_j/∂A^L[:, ia[j]], then back through f's body
        e = layers_f[-1].backward(lambda Mt: _contract(net, Mt, g_layers), D)
        for l in range(L - 2, -1, -1):                             # W^{l+1}
            dy = e / np.sqrt(ys[l].shape[1]) * (SQRT2 * (ys[l][:, :, ia] > 0))
            Ddy = np.swapaxes(dy, -1, -2) @ dy
            parts[f"W{l + 1}"] = Ddy * gram(As[l])
            if l > 0:
                e = layers_f[l].backward(lambda Mt, dy=dy: Mt @ dy, Ddy)
    parts = {f"W{l}": parts[f"W{l}"] for l in range(1, L + 1)}
    return h, nngp, parts


def explicit_layers(params):
    return [ExplicitLayer(np.ascontiguousarray(np.swapaxes(W, -1, -2))) for W in params]


def hypernet_outputs(net: HyperNet, params, X, Z) -> np.ndarray:
    """``h(x_i, z_i)`` (S, N) for explicit parameters ``[W¹ … W^L]`` (each (S, out, in))."""
    X, Z, Xu, ia = check_pairs(X, Z)
    S = params[0].shape[0]
    A = np.broadcast_to(Xu.T / np.sqrt(Xu.shape[1]), (S,) + Xu.T.shape)
    for l, W in enumerate(params):
        y = W @ A
        A = SQRT2 * np.maximum(y, 0.0) / np.sqrt(y.shape[1])
    Ft = np.ascontiguousarray(np.swapaxes(y, -1, -2))
    return _g_pass(net, _g_blocks(net, Ft), ia, Z)[0]


def hypernet_kernels(net: HyperNet, params, X, Z):
    """``(outputs (S, N), nngp_samples (S, N, N), {"W1"…: NTK share (S, N, N)})`` for explicit
    parameters ``[W¹ … W^L]`` (each (S, out, in)); see the module docstring."""
    X, Z, Xu, ia = check_pairs(X, Z)
    return run_layers(net, explicit_layers(params), Xu, ia, Z, params[0].shape[0])


@dataclass(repr=False)
class HypernetSimulation(Simulation):
    """A :class:`~tensorprog.Simulation` of the hypernetwork (``program`` is None, ``width`` is
    f's width n): ``outputs`` (S, N) are h(x_i, z_i); ``nngp_samples`` (S, N, N) the covariance
    of h over the readout-producing rows of f's last layer, the rest fixed (seed mean =
    E[h_i h_j]); ``ntk_contributions`` {"W1" … "WL": (S, N, N)} each of f's layers' share of
    the exact hyperkernel, ``ntk_samples`` their sum.  ``net`` holds the shapes, ``sampler``
    the sampler used."""

    net: HyperNet | None = None
    sampler: str = "conditional"

    def __repr__(self) -> str:
        return (f"<Simulation of a hypernetwork: widths n={self.net.n}, m={self.net.m}, "
                f"{self.seeds} seeds, {self.sampler} sampler, {self.seconds:.2f}s>")


def _bytes_per_seed(net: HyperNet, N: int, Nx: int, sampler: str) -> int:
    """A generous estimate of the memory one seed needs (arrays of 8 bytes)."""
    P, m = net.num_outputs, net.m
    hidden = sum(i for _, i in net.f_shapes)
    k = max(i for _, i in net.f_shapes) if sampler == "explicit" else Nx
    vectors = 8 * hidden * (N + Nx) + 8 * m * N + 4 * N * N * (net.f_depth + 2)
    g = 3 * P * Nx + 2 * P * N + 2 * k * N
    if sampler == "explicit":
        weights = net.num_parameters
    else:
        weights = Nx * sum(o for o, _ in net.f_shapes) + N * hidden
    return 8 * (vectors + g + 2 * weights)


def simulate_hypernet(X, Z, n: int, m: int, f_depth: int = 4, g_depth: int = 4,
                      seeds: int = 100, seed=0, sampler: str = "conditional",
                      chunk: int | None = None, max_bytes: int = 256 << 20) -> HypernetSimulation:
    """The actual hypernetwork h(x, z) = g(z; f(x)) at widths (n, m), ``seeds`` draws.

    ``sampler="explicit"`` draws every weight of f (W¹ … W^L, transposed) and multiplies by
    it; ``"conditional"`` draws, layer by layer, only what f's products with its weights
    depend on (:class:`ConditionalLayer`): the same distribution of (h, NNGP sample, NTK) per
    seed, at a cost linear instead of quadratic in the widths.  In both, f's outputs are g's
    weights.  Seed s draws from ``SeedSequence(seed, spawn_key=(s,))`` (results do not depend
    on ``chunk``).  Pairs sharing an x share f's evaluation."""
    X, Z, Xu, ia = check_pairs(X, Z)
    if sampler not in SAMPLERS:
        raise ProgramError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    net = HyperNet(X.shape[1], Z.shape[1], n, m, f_depth, g_depth)
    seeds = int(seeds)
    if seeds < 1:
        raise ProgramError(f"seeds must be ≥ 1, got {seeds}")
    N, Nx = X.shape[0], Xu.shape[0]
    per_seed = _bytes_per_seed(net, N, Nx, sampler)
    if chunk is None:
        chunk = chunk_size(seeds, per_seed, max_bytes)
    streams = SeedStreams(np, seed, rng="numpy")
    start = time.perf_counter()
    outs, nngps, parts = [], [], {}
    for lo, hi in chunk_bounds(seeds, chunk):
        draws = []
        for s in range(lo, hi):
            normal = streams.stream(s)
            if sampler == "explicit":                   # Wᵀ of every layer
                draws.append([normal((i, o), np.float64) for o, i in net.f_shapes])
            else:                                       # Ξᵀ of every layer, then η's normals
                draws.append([normal((Nx, o), np.float64) for o, _ in net.f_shapes]
                             + [normal((i, N), np.float64) for _, i in net.f_shapes[1:]])
        stacked = [np.stack(arrs) for arrs in zip(*draws)]
        del draws
        L = net.f_depth
        if sampler == "explicit":
            layers = [ExplicitLayer(W) for W in stacked]
        else:
            layers = [ConditionalLayer(stacked[l], stacked[L + l - 1] if l > 0 else None)
                      for l in range(L)]
        h, K, pt = run_layers(net, layers, Xu, ia, Z, len(stacked[0]))
        outs.append(h)
        nngps.append(K)
        for key, v in pt.items():
            parts.setdefault(key, []).append(v)
        del stacked, layers
    return HypernetSimulation(
        program=None, width=net.n, seeds=seeds, backend="numpy", dtype=np.dtype(np.float64),
        seed=seed, chunk=chunk, bytes_per_seed=per_seed, seconds=time.perf_counter() - start,
        scalars={}, outputs=np.concatenate(outs), nngp_samples=np.concatenate(nngps),
        ntk_contributions={key: np.concatenate(v) for key, v in parts.items()},
        net=net, sampler=sampler)
