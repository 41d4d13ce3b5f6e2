"""Training study: one small network trained for three steps under the NTK parametrization, at
Yaida's s = 1/2 and under muP, its infinite-width limit against finite widths.

Run ``python benchmarks/study_training.py`` (about 5–9 minutes on two busy CPU cores; ``--quick``
for a smoke run writing to a temporary directory).  Writes ``docs/img/training_*.png`` and the
generated part of ``docs/training.md`` (between the ``<!-- study_training:begin -->`` /
``<!-- study_training:end -->`` markers; the rest of that page is hand-written).

The network: a tanh MLP with two hidden matrices (embed, W1, W2, readout; σ² = 1.5, no
biases) on two inputs in R³; input 0 is trained towards y = 1 with full-batch MSE at η = 1/2,
input 1 is a test point.  Every parametrization is the same program; only ``parametrization=``
of ``tp.train`` changes.

A. Limits: ``run.mean`` (and ``run.cov`` where f₀ is random), with timings; muP against the
   kernel prediction (the same program at s = 1/2, whose limit is kernel gradient descent from
   f₀ = 0).
B. ``run.validate`` over widths 256…4096 (fewer seeds at the widest): per-draw error against
   the limit started from the network's own f₀ (``run.mean_given``), seed-mean z-scores,
   fitted slopes.  Plots: trajectories, error against width.
C. Yaida's width exponent: the RMS movement of each hidden vector after one step,
   ``√(‖x₁ − x₀‖²/n)``, against the width, fitted per s; expected −(1 − s)/2.  Plot.
D. muP acceptance in one table: departure from the kernel prediction, ``run.feature_change``
   (limit and widest finite width), per-draw slope and the z-score at the widest width.
"""
from __future__ import annotations

import re
import time
import warnings

import numpy as np

from _common import Log, output_dirs, study_arguments

import tensorprog as tp  # noqa: E402
from tensorprog.backends.stats import loglog_fit  # noqa: E402

BEGIN, END = "<!-- study_training:begin -->", "<!-- study_training:end -->"
X = np.array([[0.7, -1.1, 0.4], [0.2, 0.9, -0.5]])   # input 0 trains, input 1 is a test point
Y, STEPS, LR = [1.0], 3, 0.5
HIDDEN = ("x1", "x2", "x3")
PARAMS = {   # key: (label, parametrization, tier of the limit, s)
    "ntk": ("NTK (s = 0)", tp.ntk_parametrization, "auto", 0.0),
    "half": ("Yaida s = 1/2", lambda: tp.yaida(0.5), "auto", 0.5),
    "mup": ("muP (s = 1)", tp.mup, "montecarlo", 1.0),
}
COLORS = {"ntk": "#1f77b4", "half": "#2ca02c", "mup": "#d62728"}


def network() -> tp.Program:
    """The studied MLP: embed, two hidden matrices, tanh, readout."""
    p = tp.Program("mlp")
    h = p.embed(X, var=1.5, bias_var=0.0)
    for l in (1, 2):
        h = p.matrix(f"W{l}", var=1.5) @ tp.tanh(h)
    p.output(tp.tanh(h), var=1.5, bias_var=0.0)
    return p


# ---------------------------------------------------------------------- A. limits
def limits(log):
    runs, secs = {}, {}
    for key, (label, par, tier, _) in PARAMS.items():
        t = time.perf_counter()
        run = tp.train(network(), Y, train=[0], steps=STEPS, lr=LR, parametrization=par(),
                       tier=tier)
        run.mean
        runs[key], secs[key] = run, time.perf_counter() - t
        log(f"limit {key}: {secs[key]:.1f}s, mean {run.mean.round(4).tolist()}")
    t = time.perf_counter()
    moves = runs["mup"].feature_change(list(HIDDEN))
    secs["feature_change"] = time.perf_counter() - t
    log(f"muP feature_change limits: {secs['feature_change']:.1f}s")
    return runs, secs, moves


# ---------------------------------------------------------------------- B. finite width
def sweeps(runs, widths, seeds, log):
    reports = {}
    for key, run in runs.items():
        t = time.perf_counter()
        reports[key] = run.validate(widths=widths, seeds=seeds, seed=100, record=HIDDEN)
        log(f"validate {key}: {time.perf_counter() - t:.1f}s, slope "
            f"{reports[key].slope.slope:.3f} ± {reports[key].slope.stderr:.3f}, "
            f"max z at {widths[-1]}: {reports[key].rows[-1].max_z:.2f}")
    return reports


def rms_movement(sim, name, step=1, inp=0):
    """Per-seed RMS movement √(‖x_step − x_0‖²/n) of ``name`` at input ``inp``."""
    return np.sqrt(sim.movement(name)[:, step, inp])


def exponents(reports):
    """``{(key, name): (widths, means, stderrs, Fit)}`` of the step-1 RMS movement."""
    out = {}
    for key, rep in reports.items():
        for name in HIDDEN:
            w, m, se = [], [], []
            for sim in rep.runs:
                r = rms_movement(sim, name)
                w.append(sim.width)
                m.append(r.mean())
                se.append(r.std(ddof=1) / np.sqrt(len(r)))
            out[key, name] = (np.array(w), np.array(m), np.array(se), loglog_fit(w, m, se))
    return out


# ---------------------------------------------------------------------- plots
def _width_axis(ax, widths):
    """Log width axis ticked at the simulated widths."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("width n")


def plot_trajectories(runs, reports, path, show_widths):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharey=True)
    steps = np.arange(STEPS + 1)
    kernel = runs["half"].mean
    shades = dict(zip(show_widths, (0.35, 0.6, 0.85)))
    for ax, (key, (label, *_)) in zip(axes, PARAMS.items()):
        run, rep = runs[key], reports[key]
        for inp, (ls, mk, name) in enumerate((("-", "o", "train"), ("--", "s", "test"))):
            ax.plot(steps, run.mean[:, inp], ls, color="k", lw=2, label=f"limit, {name} input")
            sd = np.sqrt(np.clip(run.cov[:, inp, inp], 0, None))
            if sd.max() > 0:
                ax.fill_between(steps, run.mean[:, inp] - sd, run.mean[:, inp] + sd,
                                color="k", alpha=0.08 if inp else 0.12, lw=0)
            if key == "mup":
                ax.plot(steps, kernel[:, inp], ls, color="0.55", lw=1.2,
                        label="kernel prediction (s = 1/2)" if inp == 0 else None)
            for j, sim in enumerate(s for s in rep.runs if s.width in shades):
                off = (j - 1) * 0.07
                ax.errorbar(steps + off, sim.mean[:, inp], yerr=2 * sim.stderr[:, inp],
                            fmt=mk, ms=4.5, capsize=2.5, color=COLORS[key],
                            alpha=shades[sim.width],
                            label=f"n = {sim.width} (mean ± 2 s.e.)" if inp == 0 else None)
        ax.axhline(Y[0], color="0.3", lw=0.8, ls=":")
        ax.set_title(label)
        ax.set_xlabel("step t")
        ax.set_xticks(steps)
        ax.legend(fontsize=7.5, loc="center right", bbox_to_anchor=(1.0, 0.58))
    axes[0].set_ylabel("output f_t (train: solid, test: dashed)")
    fig.suptitle("Three gradient-descent steps of one tanh MLP: infinite-width limit (black; "
                 "band ±1 sd over initialisations) and finite widths", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_errors(reports, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for key, rep in reports.items():
        label = PARAMS[key][0]
        w = np.array([r.width for r in rep.rows])
        e = np.array([r.draw_error for r in rep.rows])
        se = np.array([r.draw_error_stderr for r in rep.rows])
        fit = rep.slope
        axes[0].errorbar(w, e, yerr=2 * se, fmt="o", capsize=3, color=COLORS[key],
                         label=f"{label}: slope {fit.slope:+.3f} ± {fit.stderr:.3f}")
        axes[0].plot(w, fit.predict(w), "-", color=COLORS[key], lw=1)
        z = [r.max_z for r in rep.rows]
        axes[1].plot(w, z, "o-", color=COLORS[key], label=label)
    guide = w.astype(float)
    for power, key, scale in ((0.5, "mup", 0.6), (0.25, "half", 1.35)):
        axes[0].plot(guide, scale * reports[key].rows[0].draw_error * (guide / guide[0])
                     ** -power, ":", color="0.4" if power == 0.5 else "0.65",
                     label=f"n^(-{power:g})")
    axes[0].set(yscale="log", ylabel="per-draw relative error ‖f − f_lim‖/‖f_lim‖",
                title="one network against the limit from its own f₀")
    axes[0].legend(fontsize=8)
    zmax = max(r.max_z for rep in reports.values() for r in rep.rows)
    axes[1].axhline(4, color="0.3", ls=":", lw=1)
    axes[1].set(ylabel="max |mean − limit| / s.e.", ylim=(0, max(5.0, 1.1 * zmax)),
                title="seed mean against the limit mean (z-score; 4 dotted)")
    axes[1].legend(fontsize=8)
    for ax in axes:
        _width_axis(ax, list(w))
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_movement(fits, moves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(HIDDEN), figsize=(15, 4.4), sharey=True)
    for ax, name in zip(axes, HIDDEN):
        for key, (label, _, _, s) in PARAMS.items():
            w, m, se, fit = fits[key, name]
            ax.errorbar(w, m, yerr=2 * se, fmt="o", capsize=3, color=COLORS[key],
                        label=f"{label}: {fit.slope:+.3f} ± {fit.stderr:.3f} "
                              f"(−(1−s)/2 = {-(1 - s) / 2:+.2f})")
            ax.plot(w, fit.predict(w), "-", color=COLORS[key], lw=1)
        lim = np.sqrt(moves[name][1, 0])
        ax.axhline(lim, color=COLORS["mup"], ls="--", lw=1, label=f"muP limit {lim:.4f}")
        ax.set(yscale="log", title=f"hidden vector {name}: fitted width exponents")
        _width_axis(ax, list(w))
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo / 8, hi * 1.3)   # room for the legend below the data
        ax.legend(fontsize=7.5, loc="lower left")
    axes[0].set_ylabel("RMS movement after one step  √(‖x₁ − x₀‖²/n)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------- the page
def section(runs, secs, moves, reports, fits, widths, seeds, total):
    kernel = runs["half"].mean
    mup = runs["mup"]
    rel = [float(np.linalg.norm(mup.mean[t] - kernel[t]) / np.linalg.norm(kernel[t]))
           for t in range(1, STEPS + 1)]
    big = reports["mup"].runs[-1]
    lines = [BEGIN, "",
             f"*Generated by `benchmarks/study_training.py` in {total / 60:.1f} minutes on two "
             "CPU cores.*", "",
             "### A. The limits", "",
             "| parametrization | f_t, train input (t = 0…3) | f_t, test input | "
             "sd over initialisations (t = 3) | limit error | seconds |",
             "|:--|:--|:--|:--|---:|---:|"]
    for key, (label, *_) in PARAMS.items():
        run = runs[key]
        sd = np.sqrt(np.clip(np.diagonal(run.cov[-1]), 0, None))
        lines.append(f"| {label} | {_vec(run.mean[:, 0])} | {_vec(run.mean[:, 1])} | "
                     f"{_vec(sd)} | {run.limit_error:.1g} | {secs[key]:.1f} |")
    lines += ["", "muP against the kernel prediction (the s = 1/2 limit), relative difference "
              "of the outputs at steps 1, 2, 3: " + ", ".join(f"{r:.1%}" for r in rel) + ".",
              f"`run.feature_change` of the three hidden vectors in muP took "
              f"{secs['feature_change']:.0f} s.", "",
              "### B. Finite widths against the limit", "",
              f"Widths {', '.join(map(str, widths))} with {', '.join(map(str, seeds))} seeds. "
              "*Per draw*: mean over seeds of ‖f − f_lim‖/‖f_lim‖ over the whole trajectory "
              "(both inputs, every step), where f_lim is the limit started from the network's "
              "own initial outputs (`run.mean_given`); *seed mean*: the same for the mean over "
              "seeds against `run.mean`; *max z*: the largest |mean − limit|/s.e.", ""]
    for key, (label, *_) in PARAMS.items():
        lines += [f"**{label}**", "", reports[key].to_markdown(), ""]
    lines += ["![trajectories](img/training_trajectories.png)", "",
              "![error against width](img/training_error_vs_width.png)", "",
              "### C. Width exponent of the feature movement (Yaida's family)", "",
              "RMS movement of each hidden vector after one step at the training input, "
              "√(‖x₁ − x₀‖²/n), mean over seeds ± standard error, and the weighted log-log fit "
              "(slope ± its standard error, inflated by √(χ²/dof) when the points scatter more "
              "than their error bars).", "",
              "| vector | s | " + " | ".join(f"n = {w}" for w in widths) +
              " | fitted exponent | −(1−s)/2 | |deviation| |",
              "|:--|---:|" + "---:|" * len(widths) + "---:|---:|---:|"]
    for name in HIDDEN:
        for key, (label, _, _, s) in PARAMS.items():
            w, m, se, fit = fits[key, name]
            dev = abs(fit.slope + (1 - s) / 2)
            lines.append(f"| {name} | {s:g} | " + " | ".join(f"{a:.4g}" for a in m) +
                         f" | {fit.slope:+.3f} ± {fit.stderr:.3f} | {-(1 - s) / 2:+.2f} | "
                         f"{dev:.3f} |")
    lines += ["", "![feature movement](img/training_feature_movement.png)", "",
              "### D. muP: features move by Θ(1), and finite widths converge to the limit", "",
              "| vector | limit ‖x_t − x_0‖²/n, t = 1, 2, 3 | width " + str(big.width) +
              " (mean ± s.e.) |", "|:--|:--|:--|"]
    for name in HIDDEN:
        fin = big.movement(name)[:, 1:, 0]
        se = fin.std(axis=0, ddof=1) / np.sqrt(fin.shape[0])
        lines.append(f"| {name} | {_vec(moves[name][1:, 0])} | " +
                     ", ".join(f"{a:.4f} ± {b:.4f}" for a, b in zip(fin.mean(0), se)) + " |")
    rep = reports["mup"]
    lines += ["", f"Departure from the kernel prediction: {max(rel):.1%} at step "
              f"{int(np.argmax(rel)) + 1} (> 5 % required).  Per-draw error slope "
              f"{rep.slope.slope:+.3f} ± {rep.slope.stderr:.3f} over widths "
              f"{widths[0]}…{widths[-1]} (−0.5 ± 0.1 required); seed mean at n = "
              f"{widths[-1]}: max z = {rep.rows[-1].max_z:.2f} (≤ 4 required).", "", END]
    return "\n".join(lines)


def _vec(a) -> str:
    return ", ".join(f"{x:.4f}" for x in np.asarray(a))


def write(doc, text):
    old = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if BEGIN in old and END in old:
        new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: text, old,
                     flags=re.S)
    else:
        new = old + "\n" + text + "\n"
    doc.write_text(new, encoding="utf-8")


def main():
    args = study_arguments(__doc__)
    out, img = output_dirs(args)
    log = Log()
    warnings.simplefilter("ignore", tp.AccuracyWarning)
    if args.quick:
        widths, seeds = [128, 256, 512], [16, 16, 8]
    else:
        widths, seeds = [256, 512, 1024, 2048, 4096], [64, 64, 32, 16, 8]
    runs, secs, moves = limits(log)
    reports = sweeps(runs, widths, seeds, log)
    fits = exponents(reports)
    for (key, name), (_, _, _, fit) in fits.items():
        log(f"exponent {key} {name}: {fit.slope:+.3f} ± {fit.stderr:.3f}")
    show = [widths[0], widths[len(widths) // 2], widths[-1]]
    plot_trajectories(runs, reports, img / "training_trajectories.png", show)
    plot_errors(reports, img / "training_error_vs_width.png")
    plot_movement(fits, moves, img / "training_feature_movement.png")
    text = section(runs, secs, moves, reports, fits, widths, seeds, log.elapsed)
    write(out / "training.md", text)
    print(text)
    log(f"done; wrote {out / 'training.md'} and {img}/training_*.png")


if __name__ == "__main__":
    main()
