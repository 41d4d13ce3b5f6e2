"""Finite-width training runs against their infinite-width limit, over widths."""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ..backends.stats import error_stats, loglog_fit
from ..errors import TrainingError


@dataclass
class TrajectoryRow:
    """One width: the relative error of a single draw of the trajectory (mean over seeds ±
    standard error), of the seed mean, and the largest z-score ``|mean − limit|/σ`` over steps
    and inputs, σ² the squared standard error of the seed mean plus that of the limit
    (:attr:`TrainingRun.mean_error`, 0 when every expectation is exact)."""

    width: int
    draw_error: float
    draw_error_stderr: float
    mean_error: float
    max_z: float
    seconds: float


@dataclass
class TrajectoryReport:
    """:meth:`TrainingRun.validate`: ``rows`` per width, the log-log ``slope`` of the per-draw
    error and the ``expected_slope`` (:func:`expected_slope`), ``passed`` when the seed mean is
    within ``z_threshold`` standard errors of the limit at the largest width; ``runs`` the
    :class:`FiniteRun` of every width."""

    rows: list
    slope: object
    z_threshold: float
    runs: list = field(default_factory=list)
    expected_slope: float = -0.5

    @property
    def passed(self) -> bool:
        return bool(self.rows[-1].max_z <= self.z_threshold)

    def to_markdown(self) -> str:
        lines = ["| width | per-draw error | seed-mean error | max z | seconds |",
                 "|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            lines.append(f"| {r.width} | {r.draw_error:.4g} ± {r.draw_error_stderr:.2g} | "
                         f"{r.mean_error:.4g} | {r.max_z:.2f} | {r.seconds:.1f} |")
        if self.slope is not None:
            lines.append(f"\nper-draw error slope {self.slope.slope:.3f} ± "
                         f"{self.slope.stderr:.3f} ({self.expected_slope:g} expected)".replace("(-", "(−"))
        return "\n".join(lines)


def expected_slope(s) -> float:
    """Width exponent of the per-draw error in Yaida's family: ``−min(s, 1 − s)/2`` for
    0 < s < 1 (initial outputs of size ``n^{-s/2}``, features moving by ``n^{-(1−s)/2}`` per
    coordinate, which the outputs feel at that relative order), −1/2 at both ends (s = 0
    compared given f₀; s = 1 the features' movement is part of the limit)."""
    s = float(s)
    return -0.5 if s in (0.0, 1.0) else -min(s, 1.0 - s) / 2


def validate_run(run, widths, seeds: int, seed: int = 0, z_threshold: float = 4.0, record=()):
    """Simulate ``run`` at each width and compare with its limit (see
    :class:`TrajectoryReport`).  ``seeds`` is one number of seeds, or one per width (fewer
    seeds where the widest networks are expensive).

    The per-draw error compares each network with the limit started from the network's own
    initial outputs (:meth:`TrainingRun.mean_given`): with random initial outputs (s = 0) the
    limit of one draw is random too, and deterministic given ``f_0`` (TP IIb App. D.1.1); for
    s > 0 it is the limit mean.  The seed mean and its z-scores are compared with the limit's
    mean over initialisations.
    """
    import time

    counts = [seeds] * len(widths) if isinstance(seeds, numbers.Integral) else list(seeds)
    if len(counts) != len(widths):
        raise TrainingError(f"validate: seeds= gives {len(counts)} seed counts for "
                            f"{len(widths)} widths; pass one number, or one per width")
    rows, runs = [], []
    for n, S in zip(widths, counts):
        t0 = time.time()
        sim = run.simulate(int(n), seeds=S, seed=seed, record=record)
        own = run.mean_given(sim.samples[:, 0])
        per = error_stats(sim.samples - own, np.zeros(own.shape[1:]))
        scale = float(np.linalg.norm(run.mean)) or 1.0
        st = error_stats(sim.samples, run.mean)
        sigma = np.sqrt(sim.stderr ** 2 + run.mean_error ** 2)
        dev = np.abs(sim.mean - run.mean)
        z = np.where(dev <= 1e-12 * scale, 0.0, dev / np.where(sigma > 0, sigma, np.inf))
        rows.append(TrajectoryRow(int(n), per.draw_error / scale, per.draw_error_stderr / scale,
                                  st.mean_error, float(z.max()), time.time() - t0))
        runs.append(sim)
    slope = None
    if len(rows) > 1:
        slope = loglog_fit([r.width for r in rows], [r.draw_error for r in rows],
                           [r.draw_error_stderr for r in rows])
    return TrajectoryReport(rows, slope, z_threshold, runs, expected_slope(run.regime.s))
