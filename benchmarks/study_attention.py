"""Attention study: the transformer programs of ``programs/attention.py`` at finite width against
their limits, the 1/√n logits at finite width, timings on N = 100 sequences, and the drawing.

Run ``python benchmarks/study_attention.py`` (about 6–9 minutes on two CPU cores; ``--quick``
for a smoke run writing to a temporary directory).  Writes ``docs/img/validate_attention.png``,
``docs/img/program_attention.png`` and the generated part of ``docs/architectures/attention.md``
(between the ``<!-- study:begin -->`` / ``<!-- study:end -->`` markers; the rest of that page is
hand-written).

A. ``tp.validate`` over widths 64…2048 for two transformer blocks (pre-LN, ReLU MLP, biases):
   one head with independent W_Q, W_K (the limit logits are 0: uniform attention) and two heads
   with W_Q = W_K (non-trivial softmax): NNGP, NTK and every MOMENT (LayerNorm moments, logits).
B. The 1/√n logit at finite width: the simulated 1/n logit ``ℓ = avg(q·k)`` and ``√n·ℓ = q·k/√n``
   over widths 64…1024.  The first concentrates (std ∝ n^{-1/2}); the second keeps the O(1)
   Gaussian fluctuation that the central limit theorem predicts (std σ_Q σ_K √(K_ss K_tt)), and
   with W_Q = W_K its mean grows like √n — why the compiler refuses ``scaling="1/sqrt(n)"``.
C. Build and kernel times (``tp.nngp``, ``tp.ntk``) on N = 100 sequences of T = 3 tokens.
D. ``tp.render`` of the attention sub-block (one head, T = 2, no MLP).
"""
from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path

import numpy as np

from _common import Log, output_dirs, study_arguments

import tensorprog as tp  # noqa: E402
from programs.attention import build  # noqa: E402

warnings.simplefilter("ignore", tp.PseudoLipschitzWarning)  # exp of scalars: see nn.attention

BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"
N_VAL, T_VAL, D_VAL = 3, 3, 4
PROGRAMS = {
    "independent": ("1 head, independent W_Q, W_K (limit logits 0)",
                    dict(heads=1, query_key="independent", bvar=0.1)),
    "shared-2head": ("2 heads, W_Q = W_K, logit scale 2",
                     dict(heads=2, query_key="shared", logit_scale=2.0, bvar=0.1)),
}


def sequences(N, T, d, seed=0):
    return np.random.default_rng(seed).standard_normal((N, T, d))


# ---------------------------------------------------------------------- A. validation
def run_validation(widths, seeds, log):
    X = sequences(N_VAL, T_VAL, D_VAL)
    out = {}
    for key, (title, kw) in PROGRAMS.items():
        t = time.perf_counter()
        p = build(X, **kw)
        lim = tp.limit(p)
        rep = tp.validate(p, widths=widths, seeds=seeds, backend="numpy", seed=2024,
                          progress=lambda k, K, note: log(f"  {key}: {note} ({k}/{K})"))
        out[key] = dict(title=title, kw=kw, program=p, report=rep, limit=lim,
                        seconds=time.perf_counter() - t)
        log(f"{key}: {out[key]['seconds']:.1f}s, passed={rep.passed}")
    return out


def validation_lines(res, widths, seeds):
    lines = ["### A. Finite-width validation", "",
             f"`tp.validate(p, widths={list(widths)}, seeds={seeds})` on N = {N_VAL} sequences "
             f"of T = {T_VAL} tokens in R^{D_VAL} (`build(X, wvar=1, bvar=0.1, ...)`, one pre-LN "
             "block with a ReLU MLP, final LN, mean-pooled readout).  Per-draw error: mean over "
             "seeds of ‖sample − limit‖_F/‖limit‖_F (absolute where the limit is 0, e.g. the "
             "logits of the independent program and the LayerNorm means); max z: largest "
             "|seed mean − limit|/stderr over the entries at the largest width.", "",
             f"| program | quantity | per-draw error at n={widths[0]} | at n={widths[-1]} | "
             "per-draw slope | max z | checks |", "|:--|:--|---:|---:|---:|---:|:--|"]
    for key, r in res.items():
        rep = r["report"]
        for q in rep.quantities:
            if not (q in ("nngp", "ntk") or "_attn_l" in q):
                continue
            rows = rep.rows(q)
            s, se = rep.slopes[q]
            ok = all(c.passed for c in rep.checks if c.name.startswith(q + ":") and c.required)
            lines.append(f"| {key} | {q} | {rows[0].stats.draw_error:.4f} | "
                         f"{rows[-1].stats.draw_error:.4f} | {s:+.3f} ± {se:.3f} | "
                         f"{rows[-1].stats.max_z:.2f} | {'pass' if ok else 'FAIL'} |")
        others = [q for q in rep.quantities if q.startswith("scalar:") and "_attn_l" not in q]
        if others:
            sl = [rep.slopes[q][0] for q in others]
            zs = [rep.rows(q)[-1].stats.max_z for q in others]
            ok = all(c.passed for c in rep.checks if c.required and
                     any(c.name.startswith(q + ":") for q in others))
            lines.append(f"| {key} | {len(others)} LayerNorm moments | | | "
                         f"{min(sl):+.3f} … {max(sl):+.3f} | ≤ {max(zs):.2f} | "
                         f"{'pass' if ok else 'FAIL'} |")
    lines.append("")
    for key, r in res.items():
        rep, lim = r["report"], r["limit"]
        lines.append(f"- **{key}** ({r['title']}): {len(rep.quantities)} quantities, "
                     f"{'all checks passed' if rep.passed else 'SOME CHECKS FAILED'}, "
                     f"{r['seconds']:.0f} s; limit tiers {sorted(lim.tiers_used)}, largest "
                     f"error estimate {lim.max_error:.1e}.")
    all_slopes = [s for r in res.values() for s, _ in r["report"].slopes.values()]
    all_z = [r["report"].rows(q)[-1].stats.max_z for r in res.values()
             for q in r["report"].quantities]
    lines += ["", f"Over both programs every per-draw slope lies in [{min(all_slopes):.3f}, "
              f"{max(all_slopes):.3f}] (docs/theory.md §5 expects −1/2) and every seed mean at "
              f"n = {widths[-1]} is within {max(all_z):.2f} standard errors of its limit.", "",
              "![validation](../img/validate_attention.png)", ""]
    return lines


# ---------------------------------------------------------------------- B. 1/√n at finite width
def run_sqrt_n(widths, seeds, log):
    X = sequences(2, 2, D_VAL, seed=1)
    w = 1.0
    out = {}
    # member 0 (token 0 of sequence 0) attending to token 1 (independent: limit 0) and to itself
    # (W_Q = W_K: limit σ² K_y(0, 0) ≈ 1, the clearest √n growth)
    for qk, name in (("independent", "b1_attn_l1_1"), ("shared", "b1_attn_l1_0")):
        p = build(X, mlp=False, wvar=w, query_key=qk)
        lim = tp.limit(p)
        y2 = np.diag(lim.cov("b1_ln1"))
        rows = []
        for n in widths:
            sim = tp.simulate(p, width=n, seeds=seeds, backend="numpy", seed=(11, n))
            ell = sim.scalars[name][:, 0]
            rows.append(dict(n=n, std=ell.std(ddof=1), std_sqrt=(np.sqrt(n) * ell).std(ddof=1),
                             mean_sqrt=(np.sqrt(n) * ell).mean(),
                             se_mean_sqrt=(np.sqrt(n) * ell).std(ddof=1) / np.sqrt(seeds)))
            log(f"  1/√n logits ({qk}): n={n}")
        out[qk] = dict(rows=rows, limit=float(lim.scalar(name)[0]),
                       clt_std=w * np.sqrt(y2[0] * y2[1]))
    return out


def sqrt_n_lines(res, seeds):
    ind, sh = res["independent"], res["shared"]
    lines = ["### B. The 1/√n logit at finite width", "",
             "Same simulation, two readings of one logit "
             f"({seeds} seeds per width, σ_Q² = σ_K² = 1, LayerNorm'd inputs so "
             "K_ss ≈ K_tt ≈ 1): the 1/n logit ℓ = avg(q·k) (what the program computes) and the "
             "1/√n logit √n·ℓ = q·k/√n.  Independent W_Q, W_K: token 0 attending to token 1 of "
             "its sequence; CLT prediction for the 1/√n logit: std σ_Qσ_K√(K_ss K_tt) = "
             f"{ind['clt_std']:.4f}.  W_Q = W_K: token 0 attending to itself.", "",
             "| n | indep.: std ℓ (1/n) | indep.: std √n·ℓ (1/√n) | W_Q = W_K: mean √n·ℓ | "
             "√n·ℓ̊ |", "|---:|---:|---:|---:|---:|"]
    for a, b in zip(ind["rows"], sh["rows"]):
        lines.append(f"| {a['n']} | {a['std']:.4f} | {a['std_sqrt']:.4f} | "
                     f"{b['mean_sqrt']:.2f} ± {b['se_mean_sqrt']:.2f} | "
                     f"{np.sqrt(b['n']) * sh['limit']:.2f} |")
    r0, r1 = ind["rows"][0], ind["rows"][-1]
    lines += ["", f"**Reading.** From n = {r0['n']} to {r1['n']} the std of the 1/n logit falls "
              f"by {r0['std'] / r1['std']:.2f}× (√(n ratio) = {np.sqrt(r1['n'] / r0['n']):.2f}: "
              "a law of large numbers, limit 0) while the 1/√n logit keeps std between "
              f"{min(r['std_sqrt'] for r in ind['rows']):.3f} and "
              f"{max(r['std_sqrt'] for r in ind['rows']):.3f} ≈ the CLT value: a random variable "
              "at every width, hence no MOMENT and no deterministic limit.  With W_Q = W_K "
              f"(limit ℓ̊ = {sh['limit']:.4f}) the 1/√n logit's mean grows like √n·ℓ̊.  "
              "`build(..., scaling=\"1/sqrt(n)\")` therefore raises a `ProgramError`.", ""]
    return lines


# ---------------------------------------------------------------------- C. timings
TIMINGS = [("1 head, 1 block, independent", dict(heads=1, blocks=1)),
           ("2 heads, 1 block, W_Q = W_K", dict(heads=2, blocks=1, query_key="shared")),
           ("1 head, 2 blocks, W_Q = W_K", dict(heads=1, blocks=2, query_key="shared"))]


def run_timings(N, T, log):
    X = sequences(N, T, 8, seed=2)
    rows = []
    for title, kw in TIMINGS:
        t0 = time.perf_counter()
        p = build(X, **kw)
        t1 = time.perf_counter()
        K = tp.nngp(p)
        t2 = time.perf_counter()
        Th = tp.ntk(p)
        t3 = time.perf_counter()
        rows.append(dict(title=title, nodes=len(p.order), build=t1 - t0, nngp=t2 - t1,
                         ntk=t3 - t2, eigK=np.linalg.eigvalsh(K).min(),
                         eigT=np.linalg.eigvalsh(Th).min()))
        log(f"  timing {title}: nngp {t2 - t1:.1f}s, ntk {t3 - t2:.1f}s")
    return rows


def timing_lines(rows, N, T):
    lines = ["### C. Timings", "",
             f"N = {N} sequences of T = {T} tokens in R⁸ (a family of {N * T} token vectors), "
             f"{os.cpu_count()} CPU cores.  `tp.ntk` includes deriving the backward program and "
             "its limit.", "",
             "| program | instructions | build (s) | `tp.nngp` (s) | `tp.ntk` (s) | "
             "min eig NNGP | min eig NTK |", "|:--|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['title']} | {r['nodes']} | {r['build']:.2f} | {r['nngp']:.1f} | "
                     f"{r['ntk']:.1f} | {r['eigK']:.2e} | {r['eigT']:.2e} |")
    return lines + [""]


# ---------------------------------------------------------------------- plots
def plot(res, sqrt_n, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = ["nngp", "ntk", "scalar:b1_attn_l1_1"]
    fig, axes = plt.subplots(2, 4, figsize=(18, 7.4))
    for row, (key, r) in zip(axes, res.items()):
        rep = r["report"]
        for ax, q in zip(row, qs):
            rs = rep.rows(q)
            w = np.array([x.width for x in rs], dtype=float)
            e = np.array([x.stats.draw_error for x in rs])
            se = np.array([x.stats.draw_error_stderr for x in rs])
            f = rep.fits[q]
            ax.errorbar(w, e, yerr=se, fmt="o", color="C0", label="per draw")
            ax.plot(w, f.predict(w), "-", color="C0",
                    label=f"fit: slope {f.slope:.3f} ± {f.stderr:.3f}")
            ref = np.exp(np.mean(np.log(e) + 0.5 * np.log(w))) * w ** -0.5
            ax.plot(w, ref, ":", color="k", label=r"$n^{-1/2}$")
            ax.plot(w, [x.stats.mean_error for x in rs], "s", mfc="none", color="C1",
                    label="seed mean")
            ax.plot(w, [x.stats.noise_floor for x in rs], "--", color="C1", alpha=0.6,
                    label="noise floor")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("width n")
            ax.set_ylabel("relative error" if rs[0].stats.relative else "absolute error")
            label = q.replace("scalar:", "logit ")
            ax.set_title(f"{key}: {label}", fontsize=10)
            ax.legend(fontsize=7)
    ax = axes[0, 3]
    ind = sqrt_n["independent"]
    n = np.array([x["n"] for x in ind["rows"]], dtype=float)
    ax.plot(n, [x["std"] for x in ind["rows"]], "o-", label="std of ℓ = q·k/n")
    ax.plot(n, [x["std_sqrt"] for x in ind["rows"]], "s-", label="std of q·k/√n")
    ax.axhline(ind["clt_std"], color="k", ls=":", label="CLT std σ_Qσ_K√(K_ss K_tt)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width n")
    ax.set_title("independent W_Q, W_K: logit fluctuations", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[1, 3]
    sh = sqrt_n["shared"]
    ax.errorbar(n, [x["mean_sqrt"] for x in sh["rows"]],
                yerr=[x["se_mean_sqrt"] for x in sh["rows"]], fmt="s", label="mean of q·k/√n")
    ax.plot(n, np.sqrt(n) * sh["limit"], "-", color="k", label="√n · ℓ̊ (diverges)")
    ax.plot(n, [x["mean_sqrt"] / np.sqrt(x["n"]) for x in sh["rows"]], "o", color="C2",
            label="mean of ℓ = q·k/n")
    ax.axhline(sh["limit"], color="C2", ls=":", label="ℓ̊ (tp.limit)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width n")
    ax.set_title("W_Q = W_K: mean of the self-logit", fontsize=10)
    ax.legend(fontsize=7)
    fig.suptitle("Transformer block (pre-LN, ReLU MLP): finite width vs the compiler's limit; "
                 "right: why 1/√n logits have no deterministic limit")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_doc(doc: Path, lines):
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    body = "\n".join(lines)
    text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END),
                  lambda _: f"{BEGIN}\n{body}\n{END}", text, flags=re.S)
    doc.write_text(text, encoding="utf-8")


def main():
    args = study_arguments(__doc__)
    out, img = output_dirs(args)
    log = Log()

    if args.quick:
        widths, seeds, sq_widths, sq_seeds, N, T = [32, 64, 128], 20, [32, 64, 128], 50, 10, 3
    else:
        widths, seeds = [64, 128, 256, 512, 1024, 2048], 64
        sq_widths, sq_seeds, N, T = [64, 128, 256, 512, 1024], 200, 100, 3
    res = run_validation(widths, seeds, log)
    sq = run_sqrt_n(sq_widths, sq_seeds, log)
    timings = run_timings(N, T, log)
    plot(res, sq, img / "validate_attention.png")
    small = build(sequences(2, 2, D_VAL), heads=1, mlp=False, final_ln=False)
    tp.render(small, img / "program_attention.png",
              title="self-attention sub-block: 1 head, T = 2 tokens, residual, mean-pooled "
                    "readout")
    total = log.elapsed
    lines = [f"Generated by `python benchmarks/study_attention.py` ({total / 60:.1f} min on "
             f"{os.cpu_count()} CPU cores, NumPy backend, float64); every number in this "
             "section is measured by that run.", ""]
    lines += validation_lines(res, widths, seeds)
    lines += sqrt_n_lines(sq, sq_seeds)
    lines += timing_lines(timings, N, T)
    write_doc(out / "architectures" / "attention.md", lines)
    log(f"wrote {out / 'architectures' / 'attention.md'}, {img}/validate_attention.png, "
        f"{img}/program_attention.png")


if __name__ == "__main__":
    main()
