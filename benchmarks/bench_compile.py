"""Compiled kernels (``tp.compile``) against the most-used kernel library and a NumPy recursion.

Run ``python benchmarks/bench_compile.py`` (options: ``--sizes 500,2000,5000``,
``--cases mlp-relu,mlp-erf,cnn,rnn,attention``, ``--no-peer``).  In one run on one machine it
times, for each case and size N (inputs of dimension 32, float64):

* ``tensorprog``: ``kfn = tp.compile(p)`` once, then the NTK (and NNGP) on new inputs — the
  second call, ``kfn(X)``, is the one timed;
* ``numpy``: a hand-written NumPy recursion of the same kernel (MLPs);
* ``peer``: neural-tangents' analytic ``kernel_fn`` for the same network (MLPs and the CNN),
  jit-compiled on a first call of the same shape, run in its own virtual environment that
  this script creates under /tmp (pip-installing ``neural-tangents`` and ``jax[cpu]``, pinned
  to versions that import together); skipped with a message when that is not possible.

Each measurement runs in a fresh process, which also reports its peak resident memory.  The
table prints times and the ratios tensorprog / peer and tensorprog / numpy; with ``--repeat R``
every row is measured R times, the codes interleaved, and the medians are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

DEPTH = 10
DIM = 32
WVAR, BVAR = 2.0, 0.1
PEER_VENV = "/tmp/tensorprog-peer-venv"
PEER_PACKAGES = ["neural-tangents==0.6.5", "jax[cpu]==0.4.30", "tf2jax==0.3.6"]
CASES = ("mlp-relu", "mlp-erf", "cnn", "rnn", "attention")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- inputs
def inputs(case: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if case.startswith("mlp"):
        return rng.standard_normal((n, DIM))
    if case == "cnn":
        return rng.standard_normal((n, 8, 4))           # 8 positions, 4 channels
    return rng.standard_normal((n, 4, 8))               # sequences: 4 steps of dimension 8


def build(case: str, X):
    sys.path.insert(0, ROOT)
    from programs import attention, cnn, mlp, rnn

    if case.startswith("mlp"):
        return mlp.build(X, depth=DEPTH, wvar=WVAR, bvar=BVAR, activation=case[4:])
    if case == "cnn":
        return cnn.build(X, depth=2, filter_size=3, padding="circular", readout="gap",
                         wvar=WVAR, bvar=BVAR)
    if case == "rnn":
        return rnn.build(X, steps=X.shape[1])
    return attention.build(X)


# ---------------------------------------------------------------------------- the three codes
def run_tensorprog(case: str, n: int) -> dict:
    import tensorprog as tp

    t0 = time.perf_counter()
    kfn = tp.compile(build(case, inputs(case, 2, 0)))
    t1 = time.perf_counter()
    kfn(inputs(case, min(n, 50), 1))                               # a first call
    X = inputs(case, n, 2)
    t2 = time.perf_counter()
    out = kfn(X)
    t3 = time.perf_counter()
    np.save(os.path.join(tempfile.gettempdir(), f"tp-bench-{case}-{n}.npy"), out["ntk"])
    return {"derive": t1 - t0, "time": t3 - t2}


def numpy_recursion(X, activation: str):
    """The NNGP/NTK recursion of the depth-10 MLP written by hand (closed forms)."""
    K = WVAR * X @ X.T / X.shape[1] + BVAR
    T = K.copy()
    for _ in range(DEPTH + 1):
        d = np.sqrt(np.diag(K))
        if activation == "relu":
            c = np.clip(K / np.outer(d, d), -1.0, 1.0)
            th = np.arccos(c)
            E = np.outer(d, d) * (np.sqrt(1 - c * c) + (np.pi - th) * c) / (2 * np.pi)
            Ed = (np.pi - th) / (2 * np.pi)
        else:
            q = 1 + 2 * d * d
            Q = np.sqrt(np.outer(q, q))
            E = 2 / np.pi * np.arcsin(2 * K / Q)
            Ed = 4 / np.pi / np.sqrt(Q * Q - 4 * K * K)
        K, T = WVAR * E + BVAR, WVAR * E + BVAR + WVAR * Ed * T
    return K, T


def run_numpy(case: str, n: int) -> dict:
    if not case.startswith("mlp"):
        return {}
    numpy_recursion(inputs(case, min(n, 50), 1), case[4:])
    X = inputs(case, n, 2)
    t0 = time.perf_counter()
    _, T = numpy_recursion(X, case[4:])
    t1 = time.perf_counter()
    ref = np.load(os.path.join(tempfile.gettempdir(), f"tp-bench-{case}-{n}.npy"))
    return {"time": t1 - t0, "max_rel_diff": float(np.max(np.abs(ref - T)) / np.max(np.abs(T)))}


PEER_SCRIPT = r"""
import json, sys, time
import numpy as np
from jax import config
config.update("jax_enable_x64", True)
import neural_tangents as nt
from neural_tangents import stax
case, n, path, depth, wvar, bvar = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
W, b = wvar ** 0.5, bvar ** 0.5
if case.startswith("mlp"):
    act = stax.Relu() if case == "mlp-relu" else stax.Erf()
    layers = [stax.Dense(512, W, b)]
    for _ in range(depth):
        layers += [act, stax.Dense(512, W, b)]
    layers += [act, stax.Dense(1, W, b)]
else:
    conv = lambda: stax.Conv(64, (3,), padding="CIRCULAR", W_std=W, b_std=b,
                             dimension_numbers=("NWC", "WIO", "NWC"))
    layers = [conv(), stax.Relu(), conv(), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1, W, b)]
import jax
_, _, kernel_fn = stax.serial(*layers)
kernel_fn = jax.jit(kernel_fn, static_argnames="get")
X1, X2 = np.load(path + ".warm.npy"), np.load(path + ".npy")
kernel_fn(X1, None, ("nngp", "ntk"))
t0 = time.perf_counter()
out = kernel_fn(X2, None, ("nngp", "ntk"))
T = np.asarray(out.ntk)
t1 = time.perf_counter()
np.save(path + ".peer.npy", T)
import resource
print(json.dumps({"time": t1 - t0, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peer_python(venv: str = PEER_VENV) -> str | None:
    """The peer's interpreter, its virtual environment created on first use (None: skipped)."""
    py = os.path.join(venv, "bin", "python")
    probe = [py, "-c", "import neural_tangents, jax"]
    if os.path.exists(py) and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    try:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True,
                       capture_output=True, timeout=600)
        subprocess.run([py, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True,
                       capture_output=True, timeout=1800)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"peer skipped: could not install {PEER_PACKAGES} ({exc})")
        return None
    return py if subprocess.run(probe, capture_output=True).returncode == 0 else None


def run_peer(case: str, n: int, py: str | None) -> dict:
    if py is None or case not in ("mlp-relu", "mlp-erf", "cnn"):
        return {}
    path = os.path.join(tempfile.gettempdir(), f"tp-bench-peer-{case}-{n}")
    np.save(path + ".warm.npy", inputs(case, n, 1))       # jit-compiled for this shape
    np.save(path + ".npy", inputs(case, n, 2))
    cmd = [py, "-c", PEER_SCRIPT, case, str(n), path, str(DEPTH), str(WVAR), str(BVAR)]
    res = _measure(cmd)
    if "time" in res:
        T = np.load(path + ".peer.npy")
        ref = np.load(os.path.join(tempfile.gettempdir(), f"tp-bench-{case}-{n}.npy"))
        res["max_rel_diff"] = float(np.max(np.abs(ref - T)) / np.max(np.abs(T)))
    return res


# ---------------------------------------------------------------------------- driver
def _measure(cmd) -> dict:
    """Run ``cmd`` in a fresh process; it prints one JSON line with its peak memory."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:80]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(results: list) -> dict:
    """The run of median time among repeated measurements of one code (the first otherwise)."""
    timed = sorted((r for r in results if r.get("time") is not None), key=lambda r: r["time"])
    return timed[(len(timed) - 1) // 2] if timed else results[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,2000,5000")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each row this many times, interleaved; print the medians")
    ap.add_argument("--peer-venv", default=PEER_VENV, help="virtual environment of the peer")
    ap.add_argument("--one", nargs=3, metavar=("CODE", "CASE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        code, case, n = args.one
        fn = {"tensorprog": run_tensorprog, "numpy": run_numpy}[code]
        out = fn(case, int(n))
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return
    py = None if args.no_peer else peer_python(args.peer_venv)
    me = os.path.abspath(__file__)
    print(f"{'case':10} {'N':>6} | {'tensorprog s':>12} {'MB':>6} | {'numpy s':>8} | "
          f"{'peer s':>8} {'MB':>6} | {'tp/peer':>7} {'tp/numpy':>8} | max rel diff")
    for case in args.cases.split(","):
        for n in map(int, args.sizes.split(",")):
            runs = []
            for _ in range(args.repeat):          # interleaved: the three codes see one load
                tp_ = _measure([sys.executable, me, "--one", "tensorprog", case, str(n)])
                if "error" in tp_:
                    break
                npy = _measure([sys.executable, me, "--one", "numpy", case, str(n)]) \
                    if case.startswith("mlp") else {}
                runs.append((tp_, npy, run_peer(case, n, py)))
            if "error" in tp_:
                print(f"{case:10} {n:>6} | tensorprog failed: {tp_['error']}")
                continue
            tp_, npy, peer = (_median([r[i] for r in runs]) for i in range(3))
            fmt = lambda r, k="time": f"{r[k]:.3f}" if r.get(k) is not None else "-"
            mb = lambda r: f"{r['peak_mb']:.0f}" if r.get("peak_mb") else "-"
            ratio = lambda r: f"{tp_['time'] / r['time']:.2f}" if r.get("time") else "-"
            diffs = " ".join(f"{k}:{r['max_rel_diff']:.1e}" for k, r in
                             (("numpy", npy), ("peer", peer)) if "max_rel_diff" in r)
            note = f" peer error: {peer['error']}" if "error" in peer else ""
            print(f"{case:10} {n:>6} | {fmt(tp_):>12} {mb(tp_):>6} | {fmt(npy):>8} | "
                  f"{fmt(peer):>8} {mb(peer):>6} | {ratio(peer):>7} {ratio(npy):>8} | "
                  f"{diffs}{note}", flush=True)


if __name__ == "__main__":
    main()
