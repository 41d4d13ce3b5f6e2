"""Convergence study: the finite-width backend against the compiler's limits and against the
exact finite-width laws of docs/theory.md §6.  Writes ``docs/convergence.md`` and ``docs/img/*.png``.

Run ``python benchmarks/study_convergence.py`` (about 5–10 minutes on two CPU cores; ``--quick``
for a smoke run that writes to a temporary directory instead of docs/).

Part A — validation sweeps (``tp.validate``) over widths 64…4096 for the README MLP (relu and
erf), the canonical ZDOT program (``y = Wx, z = Wᵀ tanh(y), θ = avg(z·x)``) and a program with a
MOMENT (a layernorm ``x/√(avg(x²)+ε)``): per-draw and seed-mean errors, fitted slopes, z-scores.

Part B — finite-width laws that hold *exactly* at every width, measured with many seeds:

B1. ReLU at criticality (σ_w² = 2, σ_b² = 0), depth-2 MLP: ``E[K(x,x)] = K¹ = 2|x|²/d`` and the
    NTK diagonal ``E[Θ(x,x)] = L·K¹`` with L = 4 trained layers (U, W1, W2, v) — docs/theory.md §6.1's
    "(l+1)K⁰".  The off-diagonal entries have no such property (reported for contrast).
B2. Same network, one input: ``E[f⁴]/(3K²) = Π_l (1 + 5/n)`` over the 3 ReLU layers of width n
    that feed a sum (W1, W2, readout).  Given the body, f is Gaussian with variance the NNGP
    sample K_s, so ``E[f⁴] = 3E[K_s²]``: the estimator is ``mean(K_s²)/K²`` (K exact, by B1);
    the direct, noisier ``mean(f⁴)/(3K²)`` is reported beside it.
B3. Deep linear network (identity, σ_w² = 1, 3 hidden matrices): ``E[K_s²]/K² = (1 + 2/n)^4``
    over its 4 width-n layers feeding a sum (W1, W2, W3, readout).
"""
from __future__ import annotations

import os
import time

import numpy as np

from _common import Log, output_dirs, study_arguments

import tensorprog as tp  # noqa: E402
from tests.conftest import layernorm_program  # noqa: E402
from programs.mlp import build as build_mlp  # noqa: E402


def unit_inputs(N=3, d=5, seed=0):
    X = np.random.default_rng(seed).standard_normal((N, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


C_X = np.array([[1.0, 0.3, 0.1], [0.3, 2.0, 0.5], [0.1, 0.5, 1.5]])


def zdot_program():
    p = tp.Program("zdot")
    x = p.vector("x", C_X)
    W = p.matrix("W", var=1.5)
    z = W.T @ tp.tanh(W @ x)
    (z * x).mean(name="theta")
    return p



def deep_linear(X, depth):
    p = tp.Program("deep-linear")
    h = p.embed(X, var=1.0)
    for l in range(1, depth + 1):
        h = p.matrix(f"W{l}", var=1.0) @ tp.identity(h)
    p.output(tp.identity(h), var=1.0)
    return p


SWEEPS = {
    "mlp-relu": ("README MLP, relu (depth 2, σ_w²=2, σ_b²=0.1)",
                 lambda: build_mlp(unit_inputs(), depth=2, activation="relu")),
    "mlp-erf": ("README MLP, erf (depth 2, σ_w²=2, σ_b²=0.1)",
                lambda: build_mlp(unit_inputs(), depth=2, activation="erf")),
    "zdot": ("ZDOT program: y = Wx, z = Wᵀ tanh(y), θ = avg(z·x)", zdot_program),
    "layernorm": ("MOMENT program: layernorm x/√(avg(x²)+ε) between two matrices",
                  lambda: layernorm_program(unit_inputs(), out_bias_var=0.05)),
}


# ---------------------------------------------------------------------- part A
def run_sweeps(widths, seeds, img, log):
    out = {}
    for key, (title, make) in SWEEPS.items():
        t = time.perf_counter()
        rep = tp.validate(make(), widths=widths, seeds=seeds, backend="numpy", seed=2024,
                          progress=lambda k, K, note: log(f"  {key}: {note} ({k}/{K})"))
        path = img / f"convergence_{key}.png"
        rep.plot(str(path))
        out[key] = (title, rep, path, time.perf_counter() - t)
        log(f"{key}: {time.perf_counter() - t:.1f}s, passed={rep.passed}")
    return out


def sweep_section(results, docs):
    lines = ["## A. Validation sweeps", "",
             "Each program is run with `tp.validate(p, widths, seeds)` and compared with the "
             "compiler's limits (`tp.nngp`, `tp.ntk`, `tp.limit(p).scalar`).  *Per draw*: "
             "mean over seeds of ‖sample − limit‖_F/‖limit‖_F (± its standard error); "
             "*seed mean*: ‖mean − limit‖_F/‖limit‖_F; *noise floor*: what the seed-mean error "
             "would be with no bias, √(Σ Var/S)/‖limit‖_F; *max z*: the largest "
             "|mean − limit|/stderr over the entries.", "",
             "| program | quantity | per-draw slope | seed-mean slope | seed-mean regime | "
             "max z at largest width | checks |",
             "|:--|:--|---:|---:|:--|---:|:--|"]
    for key, (title, rep, path, secs) in results.items():
        for q in rep.quantities:
            s, se = rep.slopes[q]
            ms, mse = rep.mean_slopes[q]
            z = rep.rows(q)[-1].stats.max_z
            ok = all(c.passed for c in rep.checks if c.name.startswith(q + ":") and c.required)
            lines.append(f"| {key} | {q} | {s:+.3f} ± {se:.3f} | {ms:+.3f} ± {mse:.3f} | "
                         f"{rep.regime(q)} | {z:.2f} | {'pass' if ok else 'FAIL'} |")
    lines += ["", _sweep_reading(results), ""]
    for key, (title, rep, path, secs) in results.items():
        lines += [f"### {key}: {title}", "", f"![{key}](img/{path.name})", "",
                  f"({secs:.0f} s.)", ""]
        md = rep.to_markdown().split("\n")
        lines += [ln.replace("### ", "#### ") for ln in md[4:] if not ln.startswith("## ")]
        lines.append("")
    return lines


def _sweep_reading(results):
    slopes = [(k, q, *rep.slopes[q]) for k, (_, rep, _, _) in results.items()
              for q in rep.quantities]
    dev = max(abs(s + 0.5) / se for _, _, s, se in slopes)
    lo = min(s for *_, s, _ in slopes)
    hi = max(s for *_, s, _ in slopes)
    zs = [rep.rows(q)[-1].stats.max_z for _, rep, _, _ in results.values() for q in rep.quantities]
    regimes = {rep.regime(q) for _, rep, _, _ in results.values() for q in rep.quantities}
    passed = all(rep.passed for _, rep, _, _ in results.values())
    text = (f"**Reading.** Every per-draw slope lies in [{lo:.3f}, {hi:.3f}]; the largest "
            f"deviation from −1/2 is {dev:.1f} standard errors of the fit.  At the largest width "
            f"every seed mean is within {max(zs):.2f} standard errors of the limit (entry by "
            f"entry).  The seed-mean errors are in the regime(s) {sorted(regimes)}: ")
    if regimes == {"noise"}:
        text += ("with this many seeds the O(1/n) bias of the seed mean is below the sampling "
                 "noise ~1/√(nS) at every width, so the seed-mean slope measures the noise "
                 "(≈ −1/2) and says nothing about the 1/n bias; that part of docs/theory.md §5 is not "
                 "resolved here.")
    else:
        text += ("where a width is marked *bias* the seed-mean error exceeds twice its noise "
                 "floor; elsewhere it is noise-dominated, so the seed-mean slope is a mixture "
                 "and is not a measurement of the 1/n bias law.")
    text += f"  All validation checks {'passed' if passed else 'did NOT all pass'}."
    return text


# ---------------------------------------------------------------------- part B
def ratio_stats(values, denom):
    """mean(values)/denom and its standard error."""
    S = len(values)
    return values.mean() / denom, values.std(ddof=1) / np.sqrt(S) / denom


def run_laws(widths, seeds, img, log):
    X = np.array([[1.0, 0.0, 0.0, 0.0], [0.5, np.sqrt(0.75), 0.0, 0.0]])  # correlation 0.5
    d = X.shape[1]
    K1 = 2.0 * np.sum(X**2, axis=1) / d                                   # 2|x|²/d = 0.5
    relu = build_mlp(X, depth=2, wvar=2.0, bias=False, activation="relu")
    lin_depth = 3
    Xl = X[:1]
    lin = deep_linear(Xl, lin_depth)
    Kl = float(np.sum(Xl**2) / d)
    K_inf, T_inf = tp.nngp(relu), tp.ntk(relu)
    rows = []
    for n in widths:
        t = time.perf_counter()
        S = seeds(n)
        sim = tp.simulate(relu, width=n, seeds=S, backend="numpy", seed=(7, n))
        simL = tp.simulate(lin, width=n, seeds=S, backend="numpy", seed=(8, n))
        Kd, Td = sim.nngp_samples[:, 0, 0], sim.ntk_samples[:, 0, 0]
        row = dict(n=n, S=S)
        row["K"] = ratio_stats(Kd, K1[0])
        row["T"] = ratio_stats(Td, 4 * K1[0])
        off_K, off_T = sim.nngp_samples[:, 0, 1], sim.ntk_samples[:, 0, 1]
        row["Koff"] = ratio_stats(off_K, K_inf[0, 1])
        row["Toff"] = ratio_stats(off_T, T_inf[0, 1])
        row["f4"] = ratio_stats(Kd**2, K1[0] ** 2)
        row["f4_direct"] = ratio_stats(sim.outputs[:, 0] ** 4 / 3, K1[0] ** 2)
        row["f4_pred"] = (1 + 5 / n) ** 3
        KL = simL.nngp_samples[:, 0, 0]
        row["lin_mean"] = ratio_stats(KL, Kl)
        row["lin"] = ratio_stats(KL**2, Kl**2)
        row["lin_pred"] = (1 + 2 / n) ** (lin_depth + 1)
        row["secs"] = time.perf_counter() - t
        rows.append(row)
        log(f"  laws: n={n}, {S} seeds, {row['secs']:.1f}s")
    _plot_laws(rows, img / "finite_width_laws.png")
    return dict(rows=rows, K1=K1, K_inf=K_inf, T_inf=T_inf, lin_depth=lin_depth)


def _z(est, pred):
    return (est[0] - pred) / est[1]


def one_over_n(rows, key):
    """Weighted least-squares fit of ``mean/exact − 1 = c/n`` over the widths: (c, stderr)."""
    x = np.array([1.0 / r["n"] for r in rows])
    y = np.array([r[key][0] - 1 for r in rows])
    w = np.array([1.0 / r[key][1] ** 2 for r in rows])
    c = np.sum(w * x * y) / np.sum(w * x * x)
    return float(c), float(1 / np.sqrt(np.sum(w * x * x)))


def _plot_laws(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([r["n"] for r in rows], dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    ax = axes[0]
    for key, label, c in (("K", "E[K(x,x)]/K¹", "C0"), ("T", "E[Θ(x,x)]/(4K¹)", "C1"),
                          ("Koff", "E[K(x,x')]/K∞ (off-diag.)", "C2"),
                          ("Toff", "E[Θ(x,x')]/Θ∞ (off-diag.)", "C3")):
        ax.errorbar(n, [r[key][0] for r in rows], yerr=[r[key][1] for r in rows], fmt="o-",
                    color=c, label=label, ms=4)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width n")
    ax.set_title("B1: ReLU critical, means")
    ax.legend(fontsize=7)
    for ax, key, pred, title in ((axes[1], "f4", "f4_pred", "B2: E[f⁴]/(3K²) − 1, ReLU"),
                                 (axes[2], "lin", "lin_pred", "B3: E[K²]/K² − 1, deep linear")):
        ax.errorbar(n, [r[key][0] - 1 for r in rows], yerr=[r[key][1] for r in rows], fmt="o",
                    label="measured")
        if key == "f4":
            ax.plot(n, [r["f4_direct"][0] - 1 for r in rows], "x", color="C2",
                    label="direct mean(f⁴)/(3K²) − 1")
        ax.plot(n, [r[pred] - 1 for r in rows], "-", color="k", label="exact law")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width n")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def laws_section(res):
    rows = res["rows"]
    K1 = res["K1"][0]
    lines = ["## B. Exact finite-width laws (docs/theory.md §6)", "",
             "Network for B1/B2: `programs/mlp.py` with depth 2, relu, σ_w² = 2, no biases "
             "(critical); inputs x, x' in R⁴ of unit norm with correlation 0.5, so "
             f"K¹ = 2|x|²/d = {K1:.3f}.  B3: identity nonlinearity, σ² = 1, "
             f"{res['lin_depth']} hidden matrices, one input.  Each entry is a seed mean ± its "
             "standard error; z = (measured − exact)/stderr.  Limits: "
             f"K∞(x,x) = {res['K_inf'][0, 0]:.6f}, Θ∞(x,x) = {res['T_inf'][0, 0]:.6f} "
             f"(= 4K¹: docs/theory.md §6.1's (l+1)K⁰ with 4 trained layers U, W1, W2, v), "
             f"K∞(x,x') = {res['K_inf'][0, 1]:.6f}, Θ∞(x,x') = {res['T_inf'][0, 1]:.6f} "
             "(`tp.nngp`, `tp.ntk`).", "",
             "### B1. ReLU at criticality: means of the kernels, E[K(x,x)] = K¹ and "
             "E[Θ(x,x)] = 4K¹ at every width", "",
             "| n | seeds | E[K(x,x)]/K¹ | z | E[Θ(x,x)]/(4K¹) | z | "
             "E[K(x,x')]/K∞ | z | E[Θ(x,x')]/Θ∞ | z |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = []
        for key in ("K", "T", "Koff", "Toff"):
            m, se = r[key]
            cells += [f"{m:.4f} ± {se:.4f}", f"{_z(r[key], 1.0):+.1f}"]
        lines.append(f"| {r['n']} | {r['S']} | " + " | ".join(cells) + " |")
    zK = max(abs(_z(r["K"], 1)) for r in rows)
    zT = max(abs(_z(r["T"], 1)) for r in rows)
    zoff = max(max(abs(_z(r["Koff"], 1)), abs(_z(r["Toff"], 1))) for r in rows)
    fits = {k: one_over_n(rows, k) for k in ("K", "T", "Koff", "Toff")}
    names = {"K": "E[K(x,x)]", "T": "E[Θ(x,x)]", "Koff": "E[K(x,x')]", "Toff": "E[Θ(x,x')]"}
    lines += ["", "A 1/n correction fitted to each column (weighted least squares of "
              "ratio − 1 = c/n over the widths):", "",
              "| quantity | c | z = c/stderr |", "|:--|---:|---:|"]
    lines += [f"| {names[k]} | {c:+.3f} ± {se:.3f} | {c / se:+.1f} |"
              for k, (c, se) in fits.items()]
    diag_z = max(abs(fits[k][0] / fits[k][1]) for k in ("K", "T"))
    resolved = [names[k] for k in ("Koff", "Toff") if abs(fits[k][0] / fits[k][1]) > 4]
    off = (f"the off-diagonal {' and '.join(resolved)} show{'s' if len(resolved) == 1 else ''} "
           "a 1/n correction resolved at more than 4σ by the fit — the finite-width bias the "
           "diagonal does not have"
           if resolved else
           f"the off-diagonal means deviate by at most {zoff:.1f} standard errors and no 1/n "
           "correction is resolved by the fit with these seeds")
    lines += ["", f"**Reading.** Over all widths the diagonal means stay within "
              f"{max(zK, zT):.1f} standard errors of K¹ and 4K¹ and their fitted 1/n "
              f"coefficients are within {diag_z:.1f}σ of 0 "
              f"({'consistent with' if max(zK, zT, diag_z) < 4 else 'NOT consistent with'} "
              f"exactness at finite width); {off}.", "",
              "### B2. ReLU at criticality, one input: E[f⁴]/(3K²) = (1 + 5/n)³", "",
              "| n | seeds | mean(K_s²)/K² | direct mean(f⁴)/(3K²) | exact (1+5/n)³ | z |",
              "|---:|---:|---:|---:|---:|---:|"]
    lines += _law_rows(rows, "f4", "f4_direct", "f4", second_format=".3f")
    z4 = max(abs(_z(r["f4"], r["f4_pred"])) for r in rows)
    sig = [r["n"] for r in rows if (r["f4"][0] - 1) / r["f4"][1] > 4]
    lines += ["", f"**Reading.** The measured ratio is within {z4:.1f} standard errors of "
              f"(1+5/n)³ at every width; its excess over 1 (the O(L/n) non-Gaussianity) is "
              + ("resolved at more than 4σ at every width." if len(sig) == len(rows) else
                 f"resolved at more than 4σ for n ∈ {sig} and not at the other widths."), "",
              f"### B3. Deep linear network: E[K²]/K² = (1 + 2/n)^{res['lin_depth'] + 1}", "",
              "| n | seeds | E[K]/K | mean(K_s²)/K² | exact | z |", "|---:|---:|---:|---:|---:|---:|"]
    lines += _law_rows(rows, "lin_mean", "lin", "lin")
    zl = max(abs(_z(r["lin"], r["lin_pred"])) for r in rows)
    zm = max(abs(_z(r["lin_mean"], 1.0)) for r in rows)
    lines += ["", f"**Reading.** E[K]/K is within {zm:.1f} and the fourth-moment ratio within "
              f"{zl:.1f} standard errors of the exact values at every width.", "", "![finite-width laws](img/finite_width_laws.png)", ""]
    return lines



def _law_rows(rows, first: str, second: str, law: str, second_format: str = ".4f") -> list:
    """Table rows ``| n | seeds | first ± se | second ± se | exact | z |`` of a finite-width law:
    two measured (mean, standard error) columns, the exact value ``law_pred`` and the z-score
    of ``law`` against it."""
    out = []
    for r in rows:
        (a, sa), (b, sb) = r[first], r[second]
        out.append(f"| {r['n']} | {r['S']} | {a:.4f} ± {sa:.4f} | "
                   f"{b:{second_format}} ± {sb:{second_format}} | "
                   f"{r[law + '_pred']:.4f} | {_z(r[law], r[law + '_pred']):+.1f} |")
    return out


def main():
    args = study_arguments(__doc__)
    out, img = output_dirs(args)
    log = Log()

    if args.quick:
        sweep_widths, sweep_seeds = [32, 64, 128], 20
        law_widths, law_seeds = [8, 16, 32], (lambda n: 500)
    else:
        sweep_widths, sweep_seeds = [64, 128, 256, 512, 1024, 2048, 4096], 40
        law_widths, law_seeds = [8, 16, 32, 64, 128, 256], (lambda n: 4000)
    sweeps = run_sweeps(sweep_widths, sweep_seeds, img, log)
    laws = run_laws(law_widths, law_seeds, img, log)
    total = log.elapsed
    lines = ["# Convergence of the finite-width backend", "",
             "Generated by `python benchmarks/study_convergence.py` "
             f"({total / 60:.1f} min on {os.cpu_count()} CPU cores, NumPy backend, float64).  "
             f"Part A: widths {sweep_widths}, {sweep_seeds} seeds per width.  Part B: widths "
             f"{law_widths}, {law_seeds(law_widths[0])} seeds per width.  Every number below is "
             "measured by this run; the statements under *Reading* are computed from them.", ""]
    lines += sweep_section(sweeps, out)
    lines += laws_section(laws)
    (out / "convergence.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log(f"wrote {out / 'convergence.md'} and {img}/*.png")


if __name__ == "__main__":
    main()
