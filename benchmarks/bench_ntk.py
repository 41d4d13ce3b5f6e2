"""How long the infinite-width kernels take: an MLP of depth 10 on N = 1000 inputs.

Run ``python benchmarks/bench_ntk.py``.  Every expectation is one vectorised call over all
N² input pairs (no Python loop over pairs); the baseline in the same run is the plain NumPy
recursion of docs/theory.md §3 for the same network (closed-form arc-cosine kernels), so the ratio
says what the generality of the compiler costs.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import tensorprog as tp


def build(X, depth):
    p = tp.Program("mlp")
    h = p.embed(X, var=2.0, bias_var=0.1)
    for l in range(1, depth + 1):
        h = p.matrix(f"W{l}", 2.0) @ tp.relu(h) + p.bias(f"b{l}", 0.1)
    p.output(tp.relu(h), var=2.0, bias_var=0.1)
    return p


def recursion(X, depth):
    K = 2.0 * X @ X.T / X.shape[1] + 0.1
    T = K.copy()
    for _ in range(depth + 1):
        d = np.sqrt(np.diag(K))
        th = np.arccos(np.clip(K / np.outer(d, d), -1, 1))
        E = np.outer(d, d) * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)
        Ed = (np.pi - th) / (2 * np.pi)
        K, T = 2.0 * E + 0.1, 2.0 * E + 0.1 + 2.0 * Ed * T
    return K, T


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--depth", type=int, default=10)
    args = ap.parse_args()
    X = np.random.default_rng(0).standard_normal((args.inputs, 16))
    t0 = time.perf_counter()
    p = build(X, args.depth)
    t1 = time.perf_counter()
    K = tp.nngp(p)
    t2 = time.perf_counter()
    T = tp.ntk(p)
    t3 = time.perf_counter()
    Tp = tp.ntk(p, method="paths")
    t4 = time.perf_counter()
    Kr, Tr = recursion(X, args.depth)
    t5 = time.perf_counter()
    err = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
    print(f"MLP depth {args.depth}, N = {args.inputs} inputs ({args.inputs**2:,} pairs)")
    print(f"  build            {t1 - t0:8.3f} s")
    print(f"  tp.nngp          {t2 - t1:8.3f} s   rel. err vs recursion {err(K, Kr):.1e}")
    print(f"  tp.ntk backprop  {t3 - t2:8.3f} s   rel. err vs recursion {err(T, Tr):.1e}")
    print(f"  tp.ntk paths     {t4 - t3:8.3f} s   rel. diff vs backprop {err(Tp, T):.1e}")
    print(f"  NumPy recursion  {t5 - t4:8.3f} s   (baseline; ntk backprop / baseline = "
          f"{(t3 - t2) / (t5 - t4):.0f}×)")


if __name__ == "__main__":
    main()
