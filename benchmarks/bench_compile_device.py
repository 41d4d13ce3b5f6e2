"""Compiled kernels in float32 and on the GPU against float64 on the CPU.

``python benchmarks/bench_compile_device.py`` (CPU: float32 against float64) or
``python benchmarks/bench_compile_device.py --device gpu --cases mlp-relu-3 --sizes 20000``
(CuPy; ``pip install ".[gpu]"``).  For every case and size N it times the second call of
``kfn(X)`` (NTK and NNGP together, after ``tp.compile`` and a first call on other inputs) in
float64 on the CPU and in each ``--dtypes`` on ``--device``, and compares the kernels: the
largest difference relative to the largest entry of the float64 kernel, and the largest
entrywise relative difference.  Above ``--subset`` inputs the CPU reference is computed on a
random subset of that many inputs only (a compiled kernel is pair-local, so it is the block of
the whole kernel on those rows and columns) and its time is not measured.  Prints one table.

Cases: ``mlp-relu-3``, ``mlp-relu-10``, ``mlp-erf-3``, ``mlp-erf-10`` (depth 3 or 10, inputs of
dimension 32, wvar 2, bvar 0.1), ``cnn`` and ``rnn`` (those of ``bench_compile.py``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_compile import BVAR, DIM, WVAR, build, inputs  # noqa: E402

CASES = ("mlp-relu-3", "mlp-relu-10", "mlp-erf-3", "mlp-erf-10", "cnn", "rnn")


def compiled(case: str):
    """``(kfn, X(n, seed))`` of a case: the compiled kernel and its inputs."""
    import tensorprog as tp
    from programs import mlp

    if case.startswith("mlp"):
        _, act, depth = case.split("-")
        data = lambda n, seed: np.random.default_rng(seed).standard_normal((n, DIM))
        p = mlp.build(data(2, 0), depth=int(depth), wvar=WVAR, bvar=BVAR, activation=act)
        return tp.compile(p), data
    data = lambda n, seed: inputs(case, n, seed)
    return tp.compile(build(case, inputs(case, 2, 0))), data


def timed(kfn, X, **kw):
    t0 = time.perf_counter()
    out = kfn(X, **kw)
    return out, time.perf_counter() - t0


def differences(ref: dict, out: dict, rows=None) -> tuple[float, float]:
    """Largest |Δ| / max|K| and largest entrywise |Δ|/|K| over the NNGP and NTK."""
    scaled = entry = 0.0
    for g, K in ref.items():
        A = out[g].astype(np.float64)
        if rows is not None:
            A = A[np.ix_(rows, rows)]
        d = np.abs(A - K)
        scaled = max(scaled, float(d.max() / np.abs(K).max()))
        entry = max(entry, float(np.max(d / np.maximum(np.abs(K), 1e-300))))
    return scaled, entry


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    ap.add_argument("--dtypes", default="float32", help="comma-separated, e.g. float64,float32")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--sizes", default="500")
    ap.add_argument("--subset", type=int, default=2000,
                    help="above this N the CPU reference is a random subset of inputs")
    args = ap.parse_args(argv)
    if args.device == "gpu":
        import tensorprog as tp
        from tensorprog.plan.devices import gpu_module

        try:
            gpu_module()
        except tp.ResourceError as exc:
            sys.exit(f"skipped: {exc}")
    rows = []
    for case in args.cases.split(","):
        kfn, data = compiled(case)
        for n in map(int, args.sizes.split(",")):
            kfn(data(min(n, 50), 1))                               # a first call
            for dtype in args.dtypes.split(","):
                kfn(data(min(n, 50), 1), device=args.device, dtype=dtype)
            X = data(n, 2)
            sub = None
            if n > args.subset:
                sub = np.sort(np.random.default_rng(3).choice(n, args.subset, replace=False))
                ref, t_ref = kfn(X[sub]), None
            else:
                ref, t_ref = timed(kfn, X)
            for dtype in args.dtypes.split(","):
                out, t = timed(kfn, X, device=args.device, dtype=dtype)
                scaled, entry = differences(ref, out, sub)
                rows.append((case, n, args.device, dtype, t, t_ref, scaled, entry))
                print(f"# {case} N={n} {args.device} {dtype}: {t:.2f} s", flush=True)
    print(f"\n| case | N | device | dtype | time | CPU float64 | ratio | max |Δ|/max|K| | "
          f"max |Δ/K| |\n|---|---|---|---|---|---|---|---|---|")
    for case, n, dev, dt, t, t_ref, scaled, entry in rows:
        ref = "–" if t_ref is None else f"{t_ref:.2f} s"
        ratio = "–" if t_ref is None else f"{t / t_ref:.2f}"
        print(f"| {case} | {n} | {dev} | {dt} | {t:.2f} s | {ref} | {ratio} | {scaled:.1e} | "
              f"{entry:.1e} |")


if __name__ == "__main__":
    main()
