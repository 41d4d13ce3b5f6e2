"""How deep a program the limit handles: ReLU MLPs of depth 100 … 10 000, NNGP and NTK.

Run ``python benchmarks/bench_depth.py --depths 100,1000,10000``.  Every row is a fresh
process (so that no derivation is reused from an earlier row) computing one kernel of the
README's MLP (``programs/mlp.py``: σ_w² = 2, σ_b² = 0.1) on 3 inputs in R⁴, timed from the
built program to the kernel, and compared with the hand recursion of docs/theory.md §3
(``tests/kernels/reference.py``, which shares no code with the compiler).  ``--methods``
chooses among ``nngp``, ``ntk`` (backprop) and ``paths`` (path sums).  Numbers go in
docs/performance.md ("Deep programs").
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import ROOT

ROW = r"""
import json, sys, time
import numpy as np
sys.setrecursionlimit(1000)          # the derivation is iterative: no deep recursion needed
import tensorprog as tp
from programs import mlp
from tests.kernels.reference import mlp_kernels
depth, method = int(sys.argv[1]), sys.argv[2]
X = np.random.default_rng(0).standard_normal((3, 4))
p = mlp.build(X, depth=depth)
start = time.perf_counter()
if method == "nngp":
    K = tp.nngp(p)
else:
    K = tp.ntk(p, method="paths" if method == "paths" else "backprop")
seconds = time.perf_counter() - start
ref = mlp_kernels(X, depth, 2.0, 0.1, "relu")[0 if method == "nngp" else 1]
print(json.dumps({"depth": depth, "method": method, "seconds": seconds,
                  "rel_error": float(np.max(np.abs(K - ref)) / np.max(np.abs(ref))),
                  "K00": float(K[0, 0])}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="100,1000,10000")
    ap.add_argument("--methods", default="nngp,ntk,paths")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    print(f"{'depth':>6} {'kernel':>6} {'seconds':>9} {'rel. error':>11}  (vs the hand recursion)")
    for depth in [int(d) for d in args.depths.split(",")]:
        for method in args.methods.split(","):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", ROW, str(depth), method], cwd=ROOT,
                                 env=env, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{depth:>6} {method:>6} failed after {time.perf_counter() - start:.0f} s:"
                      f" {out.stderr.strip().splitlines()[-1]}", flush=True)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{depth:>6} {method:>6} {row['seconds']:>9.1f} {row['rel_error']:>11.2e}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
