"""Finite-width training runs against their infinite-width limit, over widths."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.stats import error_stats, loglog_fit


@dataclass
class TrajectoryRow:
    """One width: the relative error of a single draw of the trajectory (mean over seeds ±
    standard error; only where the limit is deterministic), of the seed mean, and the largest
    z-score ``|mean − limit|/stderr`` over steps and inputs."""

    width: int
    draw_error: float
    draw_error_stderr: float
    mean_error: float
    max_z: float
    seconds: float


@dataclass
class TrajectoryReport:
    """:meth:`TrainingRun.validate`: ``rows`` per width, the log-log ``slope`` of the per-draw
    error (−1/2 expected; None where the limit is random), ``passed`` when the seed mean is
    within ``z_threshold`` standard errors of the limit at the largest width."""

    rows: list
    slope: object
    z_threshold: float

    @property
    def passed(self) -> bool:
        return bool(self.rows[-1].max_z <= self.z_threshold)

    def to_markdown(self) -> str:
        lines = ["| width | per-draw error | seed-mean error | max z | seconds |",
                 "|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            draw = "—" if np.isnan(r.draw_error) else \
                f"{r.draw_error:.4g} ± {r.draw_error_stderr:.2g}"
            lines.append(f"| {r.width} | {draw} | {r.mean_error:.4g} | {r.max_z:.2f} | "
                         f"{r.seconds:.1f} |")
        if self.slope is not None:
            lines.append(f"\nper-draw error slope {self.slope.slope:.3f} ± "
                         f"{self.slope.stderr:.3f} (−0.5 expected)")
        return "\n".join(lines)


def validate_run(run, widths, seeds: int, seed: int = 0, z_threshold: float = 4.0):
    """Simulate ``run`` at each width and compare with its limit (see
    :class:`TrajectoryReport`).  With random initial outputs (s = 0) the outputs of one draw
    are random in the limit too, so only the seed mean is compared (its z-scores use the
    limit covariance's own spread through the seeds' standard error)."""
    import time

    rows = []
    deterministic = not run.regime.random_outputs
    for n in widths:
        t0 = time.time()
        sim = run.simulate(int(n), seeds=seeds, seed=seed)
        st = error_stats(sim.samples, run.mean)
        draw = st.draw_error if deterministic else float("nan")
        draw_se = st.draw_error_stderr if deterministic else float("nan")
        rows.append(TrajectoryRow(int(n), draw, draw_se, st.mean_error, st.max_z,
                                  time.time() - t0))
    slope = None
    if deterministic and len(rows) > 1:
        slope = loglog_fit([r.width for r in rows], [r.draw_error for r in rows],
                           [r.draw_error_stderr for r in rows])
    return TrajectoryReport(rows, slope, z_threshold)
