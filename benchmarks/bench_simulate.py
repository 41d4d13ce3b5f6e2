"""How fast the finite-width backend runs a program, against the same network written by hand.

Run ``python benchmarks/bench_simulate.py [--widths 256,512,1024,2048] [--seeds 32]``.

``tp.simulate`` instantiates the README MLP (input layer, 2 hidden n×n matrices with biases,
readout; relu) from its program: it writes the backward pass into the program, samples every
seed's parameters, runs the instructions as batched array operations and assembles the exact
finite-width NNGP sample and NTK from forward and backward vectors.  The baseline below is the
same computation written directly in NumPy (CuPy when a GPU is present): one batched draw of
each parameter, forward, backward, and the same Gram-matrix products for the NTK — what a
person would write for this one architecture.  Both use the same widths, seeds and inputs;
the ratio simulate/baseline is the cost of the generality (target ≤ 1.5).  Times are the best
of ``--repeats`` alternating runs after one warm-up run (which pays for sympy's code generation
once).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import tensorprog as tp
from tensorprog.backends.arrays import array_module, to_numpy

WVAR, BVAR, DEPTH = 2.0, 0.1, 2


def build(X):
    p = tp.Program("mlp")
    h = p.embed(X, var=WVAR, bias_var=BVAR)
    for l in range(1, DEPTH + 1):
        h = p.matrix(f"W{l}", var=WVAR) @ tp.relu(h) + p.bias(f"b{l}", var=BVAR)
    p.output(tp.relu(h), var=WVAR, bias_var=BVAR)
    return p


def baseline(X, n, S, xp, seed=0):
    """The MLP's NNGP samples and NTK for S seeds, written by hand (NTK parametrization)."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return xp.asarray(rng.standard_normal(shape))

    N, d = X.shape
    Xt = xp.asarray(X.T)
    U = normal(S, n, d) * np.sqrt(WVAR / d)
    b = [normal(S, n, 1) * np.sqrt(BVAR) for _ in range(DEPTH + 1)]
    W = [normal(S, n, n) * np.sqrt(WVAR / n) for _ in range(DEPTH)]
    v = normal(S, n, 1) * np.sqrt(WVAR)
    hs = [U @ Xt + b[0]]                            # pre-activations (S, n, N)
    for l in range(DEPTH):
        hs.append(W[l] @ xp.maximum(hs[-1], 0) + b[l + 1])
    x = xp.maximum(hs[-1], 0)

    def gram(a, c):
        return a.transpose(0, 2, 1) @ c / n

    K = WVAR * gram(x, x) + BVAR                    # NNGP sample = readout share
    T = K.copy()
    dh = v * (hs[-1] > 0)                           # √n ∂f/∂h at the last layer
    for l in range(DEPTH, 0, -1):
        T += BVAR * gram(dh, dh)                    # bias of layer l
        T += WVAR * gram(dh, dh) * gram(xp.maximum(hs[l - 1], 0), xp.maximum(hs[l - 1], 0))
        dh = (W[l - 1].transpose(0, 2, 1) @ dh) * (hs[l - 1] > 0)
    T += (WVAR * xp.asarray(X @ X.T) / d + BVAR) * gram(dh, dh)   # input layer U, b
    return to_numpy(K), to_numpy(T)


def check_agreement(p, X, xp, backend, n=64, S=400):
    """The two compute the same thing: seed means agree within their standard errors."""
    sim = tp.simulate(p, width=n, seeds=S, backend=backend, seed=1)
    K, T = baseline(X, n, S, xp, seed=2)
    for name, a, b in (("NNGP", sim.nngp_samples, K), ("NTK", sim.ntk_samples, T)):
        se = np.sqrt(a.var(axis=0, ddof=1) / S + b.var(axis=0, ddof=1) / S)
        z = float(np.max(np.abs(a.mean(axis=0) - b.mean(axis=0)) / se))
        print(f"agreement check at n={n}, {S} seeds: {name} max z = {z:.2f}")
        if z > 5:
            raise SystemExit(f"simulate and the baseline disagree on the {name} (z = {z:.1f})")


def best_of(fns, repeats):
    """Best time of each function over ``repeats`` rounds, run alternately (after a warm-up)
    so that a busy machine slows both alike."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="256,512,1024,2048")
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--inputs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args()
    xp = array_module(args.backend)
    X = np.random.default_rng(0).standard_normal((args.inputs, 16))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    p = build(X)
    print(f"backend {xp.__name__}; README MLP (depth {DEPTH}, relu, biases); "
          f"N={args.inputs} inputs; {args.seeds} seeds; best of {args.repeats}")
    print(f"{'width':>6} {'simulate (s)':>13} {'baseline (s)':>13} {'ratio':>6} "
          f"{'seeds/s (sim)':>14}")
    t0 = time.perf_counter()
    tp.simulate(p, width=8, seeds=1, backend=args.backend)
    print(f"(first call, including code generation: {time.perf_counter() - t0:.2f} s)")
    check_agreement(p, X, xp, args.backend)
    for n in [int(w) for w in args.widths.split(",")]:
        ts, tb = best_of([lambda: tp.simulate(p, width=n, seeds=args.seeds, backend=args.backend),
                          lambda: baseline(X, n, args.seeds, xp)], args.repeats)
        print(f"{n:>6} {ts:>13.3f} {tb:>13.3f} {ts / tb:>6.2f} {args.seeds / ts:>14.1f}")


if __name__ == "__main__":
    main()
