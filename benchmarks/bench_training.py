"""How long the infinite-width limit of a muP training run takes, against steps and inputs.

Run ``python benchmarks/bench_training.py [--steps 1,2,3] [--inputs 2+1,4+2,8+4]
[--tiers particles,montecarlo] [--timeout 900]``.

The network is a 2-hidden-layer tanh MLP (inputs in R³, σ² = 1.5, no biases) trained by
full-batch gradient descent on the MSE in muP (``tp.mup()``, lr = 2): ``tp.train`` unrolls the
run into a NETSOR⊤+ program and ``run.mean`` takes its limit.  Every case runs in a fresh
process (no cache shared between cases) and reports the wall-clock and CPU seconds of
``tp.train`` + ``run.mean``, the process's peak resident memory, the number of instructions of the
unrolled program and ``run.limit_error``: on the particle tier (``tier="particles"``, the
default of feature-learning runs) the largest standard error of an output over independent
replicas of the whole evaluation (end to end); on the evaluator's tiers (``"montecarlo"``,
``"auto"``) the largest error estimate of one expectation, not propagated.  Cases are run in
the order given, every tier for each size; once a case exceeds ``--timeout`` the larger ones
of that tier are skipped.  The table is printed as Markdown; measured tables, with the
profile of where the time goes, are in ``docs/performance.md`` ("The training limit").
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def case(steps: int, train: int, test: int, tier: str) -> dict:
    """Time one limit (run in the child process)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    import tensorprog as tp
    from tests.conftest import build_mlp

    X = np.random.default_rng(1).standard_normal((train + test, 3))
    p = build_mlp(X, depth=2, wvar=1.5, bvar=0.1, phi=tp.tanh, bias=False)
    y = np.random.default_rng(2).standard_normal(train)
    wall, cpu = time.perf_counter(), time.process_time()
    run = tp.train(p, y, train=list(range(train)), steps=steps, lr=2.0,
                   parametrization=tp.mup(), tier=tier)
    run.mean
    return dict(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu,
                instructions=len(run.program.order), error=run.limit_error,
                memory=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="1,2,3")
    ap.add_argument("--inputs", default="2+1,4+2,8+4", help="train+test sizes")
    ap.add_argument("--tiers", default="particles,montecarlo")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        steps, train, test, tier = args.case.split(",")
        print(json.dumps(case(int(steps), int(train), int(test), tier)))
        return
    sizes = [tuple(int(v) for v in s.split("+")) for s in args.inputs.split(",")]
    print("| steps | train+test | tier | instructions | wall s | CPU s | peak MB | max error |")
    print("|---:|---:|:--|---:|---:|---:|---:|---:|")
    over = set()
    for steps in (int(s) for s in args.steps.split(",")):
        for train, test in sizes:
            for tier in args.tiers.split(","):
                if tier in over:
                    continue
                cmd = [sys.executable, __file__, "--case", f"{steps},{train},{test},{tier}"]
                try:
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                         timeout=args.timeout, cwd=ROOT)
                except subprocess.TimeoutExpired:
                    print(f"| {steps} | {train}+{test} | {tier} | | > {args.timeout:.0f} | | | |",
                          flush=True)
                    over.add(tier)
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {steps} | {train}+{test} | {tier} | {r['instructions']} | "
                      f"{r['wall']:.1f} | {r['cpu']:.1f} | {r['memory']:.0f} | "
                      f"{r['error']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
