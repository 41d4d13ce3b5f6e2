"""CNN study: the compiler's CNN kernels against the standard CNN-kernel recursion, the finite
CNN converging to them, a picture of the program, and timings.  Writes
``docs/img/validate_cnn.png`` and ``docs/img/program_cnn.png`` and prints the numbers quoted in
``docs/architectures/cnn.md``.

Run ``python benchmarks/study_cnn.py`` (about 5–8 minutes on two CPU cores; ``--quick`` for a
smoke run that writes to a temporary directory instead of docs/img).

A. Reference: ``tp.nngp``/``tp.ntk`` against the independent recursion of
   ``tests/programs/test_cnn.py`` (``Conv(W_std, b_std)`` NTK parametrization, Relu,
   ``GlobalAvgPool``/``Flatten``, ``Dense``) for 1-D and 2-D, both paddings, both readouts,
   depth 1–3: the largest relative error.
B. Validation sweeps (``tp.validate``, widths 64…2048, 100 seeds) of a 1-D CNN (circular
   padding, global average pooling) and a 2-D CNN (zero padding, flatten readout), both with a
   hidden convolution (one n×n matrix per filter tap): per-draw error slopes and z-scores.
C. Timings: building the program and ``tp.nngp``/``tp.ntk`` for a 1-D CNN on N = 100 inputs
   of 8 positions (and N = 25, 50 for the scaling).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tensorprog as tp  # noqa: E402


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cnn = _load(ROOT / "programs" / "cnn.py", "programs_cnn")
reference = _load(ROOT / "tests" / "programs" / "test_cnn.py", "test_cnn").reference_kernels

WVAR, BVAR = 2.0, 0.1


def images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------- A. reference
def part_a(quick: bool) -> list[str]:
    lines = ["| images | filter | depth | padding | readout | NNGP rel. err. | NTK rel. err. | "
             "time (s) |", "|:--|:--|--:|:--|:--|--:|--:|--:|"]
    worst = 0.0
    shapes = [((4, 8, 3), 3), ((3, 4, 4, 2), 3), ((3, 5, 2), 4), ((2, 3, 4, 1), (2, 3))]
    depths = (1, 2) if quick else (1, 2, 3)
    for shape, k in shapes:
        X = images(shape, seed=5)
        for depth in depths:
            for padding in ("circular", "zero"):
                for readout in ("gap", "flatten"):
                    p = cnn.build(X, depth=depth, filter_size=k, padding=padding,
                                  readout=readout, wvar=WVAR, bvar=BVAR)
                    start = time.perf_counter()
                    K, T = tp.nngp(p), tp.ntk(p)
                    seconds = time.perf_counter() - start
                    K_ref, T_ref = reference(X, depth, k, padding, readout, WVAR, BVAR)
                    eK = np.abs(K - K_ref).max() / np.abs(K_ref).max()
                    eT = np.abs(T - T_ref).max() / np.abs(T_ref).max()
                    worst = max(worst, eK, eT)
                    lines.append(f"| {shape} | {k} | {depth} | {padding} | {readout} | "
                                 f"{eK:.1e} | {eT:.1e} | {seconds:.2f} |")
    print(f"A. largest relative error against the reference recursion: {worst:.2e}")
    return lines


# ---------------------------------------------------------------------- B. validation
SWEEPS = {
    "cnn1d-circular-gap": dict(shape=(3, 6, 2), k=3, padding="circular", readout="gap"),
    "cnn2d-zero-flatten": dict(shape=(2, 3, 3, 1), k=(2, 2), padding="zero", readout="flatten"),
}


def part_b(quick: bool, out: Path) -> tuple[list[str], dict]:
    widths = (32, 64, 128) if quick else (64, 128, 256, 512, 1024, 2048)
    seeds = 20 if quick else 100
    reports = {}
    for name, cfg in SWEEPS.items():
        p = cnn.build(images(cfg["shape"], seed=2), depth=2, filter_size=cfg["k"],
                      padding=cfg["padding"], readout=cfg["readout"], wvar=WVAR, bvar=BVAR)
        p.name = name
        start = time.perf_counter()
        rep = tp.validate(p, widths=widths, seeds=seeds, backend="numpy", seed=1,
                          progress=lambda k, n, note: print(f"  {name}: {note} ({k}/{n})",
                                                             flush=True))
        print(f"B. {name}: {time.perf_counter() - start:.0f}s, passed={rep.passed}")
        reports[name] = rep
    lo, hi = widths[0], widths[-1]
    lines = [f"| program | quantity | per-draw slope | error at n={lo} | error at n={hi} | "
             f"max z at n={hi} | passed |", "|:--|:--|--:|--:|--:|--:|:--|"]
    for name, rep in reports.items():
        for q in ("nngp", "ntk"):
            rows = rep.rows(q)
            slope, se = rep.slopes[q]
            lines.append(f"| {name} | {q} | {slope:.3f} ± {se:.3f} | "
                         f"{rows[0].stats.draw_error:.3g} | {rows[-1].stats.draw_error:.3g} | "
                         f"{rows[-1].stats.max_z:.2f} | {rep.passed} |")
    plot(reports, out / "validate_cnn.png")
    return lines, reports


def plot(reports: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(5.2 * len(reports), 4.0), squeeze=False)
    for ax, (name, rep) in zip(axes[0], reports.items()):
        for color, q in (("C0", "nngp"), ("C1", "ntk")):
            rows = rep.rows(q)
            w = np.array([r.width for r in rows], dtype=float)
            e = np.array([r.stats.draw_error for r in rows])
            se = np.array([r.stats.draw_error_stderr for r in rows])
            em = np.array([r.stats.mean_error for r in rows])
            f = rep.fits[q]
            ax.errorbar(w, e, yerr=se, fmt="o", color=color,
                        label=f"{q} per draw: slope {f.slope:.3f} ± {f.stderr:.3f}")
            ax.plot(w, f.predict(w), "-", color=color, alpha=0.7)
            ax.plot(w, em, "s", mfc="none", color=color, alpha=0.7, label=f"{q} seed mean")
        w = np.array(rep.widths, dtype=float)
        e0 = rep.rows("nngp")[0].stats.draw_error
        ax.plot(w, e0 * (w / w[0]) ** -0.5, ":", color="k", label=r"$n^{-1/2}$")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width n")
        ax.set_ylabel("relative Frobenius error")
        ax.set_title(f"{name} ({rep.seeds} seeds)")
        ax.legend(fontsize=7)
    fig.suptitle("Finite-width CNNs against the compiler's NNGP kernel and NTK")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------- C. timings
def part_c(quick: bool) -> list[str]:
    lines = ["| N | readout | padding | build (s) | tp.nngp (s) | tp.ntk (s) |",
             "|--:|:--|:--|--:|--:|--:|"]
    sizes = (10, 25) if quick else (25, 50, 100)
    for N in sizes:
        X = images((N, 8, 3), seed=7)
        for readout, padding in (("gap", "circular"), ("flatten", "zero")):
            start = time.perf_counter()
            p = cnn.build(X, depth=2, filter_size=3, padding=padding, readout=readout,
                          wvar=WVAR, bvar=BVAR)
            t_build = time.perf_counter() - start
            start = time.perf_counter()
            tp.nngp(p)
            t_nngp = time.perf_counter() - start
            start = time.perf_counter()
            tp.ntk(p)
            t_ntk = time.perf_counter() - start
            lines.append(f"| {N} | {readout} | {padding} | {t_build:.3f} | {t_nngp:.2f} | "
                         f"{t_ntk:.2f} |")
            print(f"C. N={N} {readout} {padding}: build {t_build:.3f}s, nngp {t_nngp:.2f}s, "
                  f"ntk {t_ntk:.2f}s", flush=True)
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run into a temp dir")
    args = ap.parse_args(argv)
    out = Path(tempfile.mkdtemp()) if args.quick else ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    small = cnn.build(images((2, 4, 1)), depth=2, filter_size=3, padding="zero", readout="gap",
                      wvar=WVAR, bvar=BVAR)
    tp.render(small, out / "program_cnn.png",
              title="program cnn1d: 2 images × 4 positions, k = 3, depth 2, zero padding, GAP")
    print(str(small))

    sections = [("A. Against the standard CNN-kernel recursion", part_a(args.quick)),
                ("C. Timings (1-D, 8 positions, 3 channels, k = 3, depth 2)",
                 part_c(args.quick))]
    lines_b, _ = part_b(args.quick, out)
    sections.insert(1, ("B. Finite-width validation", lines_b))
    print()
    for title, lines in sections:
        print(f"### {title}\n")
        print("\n".join(lines))
        print()
    print(f"outputs in {out}; total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
