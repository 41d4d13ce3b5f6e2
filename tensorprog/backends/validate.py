"""``tp.validate``: the compiler's limits against the same program run at finite widths.

For every width of a sweep the program is simulated (:func:`.simulate.simulate`) and each
quantity the compiler derives — the NNGP kernel ``tp.nngp(p)``, the NTK ``tp.ntk(p)`` and the
limit ``tp.limit(p).scalar(θ)`` of every MOMENT θ — is compared with its finite-width samples
(docs/theory.md §5):

* the relative Frobenius error of a single draw, mean over seeds ± standard error, which falls
  like ``n^{-1/2}`` (the fluctuations of a width-n network are O(n^{-1/2}));
* the error of the seed mean.  Its *bias* part falls like ``n^{-1}``, but with S seeds it also
  carries the sampling noise ``~ 1/√(nS)``; the report gives the noise floor at every width and
  says which of the two dominates ("bias" or "noise" regime) rather than claiming n^{-1};
* log-log slopes of both, with standard errors (:func:`.stats.loglog_fit`);
* a z-score check at the largest width: every entry of the seed mean within ``z_threshold``
  (default 4) standard errors of the limit.  A wrong limit (e.g. the gradient-independence
  answer for a program that needs ZDOT) fails here.

The checks that decide :attr:`ValidationReport.passed` are the per-draw slope, the z-score and
the resolution; the seed-mean slope is reported, and checked against −1 only where every width
is in the bias regime (informational).  None of them can pass vacuously:

* the sweep must hold at least :data:`MIN_WIDTHS` widths spanning a factor of at least
  :data:`MIN_SPAN`, with at least :data:`MIN_SEEDS` seeds per width (else a
  :class:`~tensorprog.errors.ProgramError` before anything runs — two widths always fit a
  line, and one seed has no standard error);
* the per-draw slope passes when within ``max(slope_tolerance, 3·stderr)`` of −1/2, and fails
  as *not resolved* when ``3·stderr`` exceeds :data:`MAX_SLOPE_TOLERANCE` (0.25): a wider
  window would accept the slope ≈ 0 of an error that has stopped falling, which is what a wrong
  limit gives once the width is large;
* the z-score check can only catch a wrong limit that the seeds resolve, so ``z_threshold ×``
  the noise floor of the seed mean at the largest width (the smallest relative error the
  z-score would flag) must be at most ``resolution`` (default 20%).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ProgramError
from ..ir.program import Program
from .arrays import positive_int
from .simulate import simulate
from .stats import ErrorStats, Fit, error_stats, loglog_fit

KERNELS = ("nngp", "ntk")
#: The smallest sweep :func:`validate` accepts: widths, their largest/smallest ratio, seeds.
MIN_WIDTHS = 3
MIN_SPAN = 4
MIN_SEEDS = 10
#: The widest window around −1/2 the per-draw slope check may use (see the module docstring).
MAX_SLOPE_TOLERANCE = 0.25


@dataclass
class Row:
    """One quantity at one width."""

    quantity: str
    width: int
    seeds: int
    stats: ErrorStats
    seconds: float

    def as_dict(self) -> dict:
        s = self.stats
        return dict(quantity=self.quantity, width=self.width, seeds=self.seeds,
                    draw_error=s.draw_error, draw_error_stderr=s.draw_error_stderr,
                    mean_error=s.mean_error, noise_floor=s.noise_floor, regime=s.regime,
                    max_z=s.max_z, relative=s.relative, seconds=self.seconds)


@dataclass
class Check:
    """A named pass/fail statement; ``required`` checks decide :attr:`ValidationReport.passed`."""

    name: str
    passed: bool
    detail: str
    required: bool = True


@dataclass
class ValidationReport:
    """Result of :func:`validate`: errors per width, their log-log slopes and the checks.

    See ``docs/theory.md`` §5.2 for how convergence is judged.

    Attributes
    ----------
    program : str
        The program's name.
    widths : list of int
        The sweep.
    seeds : int
        Draws per width.
    backend : str
        ``"numpy"`` or ``"cupy"``.
    table : list of Row
        One row per (quantity, width): the error statistics (:class:`~.stats.ErrorStats`).
    fits, mean_fits : dict of str to Fit
        Log-log fits (:class:`~.stats.Fit`) of the per-draw and of the seed-mean error.
    checks : list of Check
        Named pass/fail statements; the ``required`` ones decide :attr:`passed`.
    limits : dict of str to numpy.ndarray
        The limits the simulation was compared with.
    z_threshold : float
        The z-score threshold used.
    notes : list of str
        What the default choice of quantities skipped.

    Example
    -------
    >>> report = tp.validate(tp.demo_program(), widths=[32, 64, 128, 256], seeds=40,
    ...                      backend="numpy", quantities=["nngp"])
    >>> report.passed, report.quantities
    (True, ['nngp'])
    >>> print(report.to_markdown().splitlines()[-1])
    **Overall: PASSED**
    """

    program: str
    widths: list[int]
    seeds: int
    backend: str
    table: list[Row]
    fits: dict[str, Fit]
    mean_fits: dict[str, Fit]
    checks: list[Check]
    limits: dict[str, np.ndarray]
    z_threshold: float
    notes: list[str] = field(default_factory=list)

    @property
    def quantities(self) -> list[str]:
        """The quantities validated (``"nngp"``, ``"ntk"``, ``"scalar:θ"``), in table order."""
        return list(dict.fromkeys(r.quantity for r in self.table))

    @property
    def slopes(self) -> dict[str, tuple[float, float]]:
        """``{quantity: (slope, stderr)}`` of the per-draw error against width (expected −1/2)."""
        return {q: (f.slope, f.stderr) for q, f in self.fits.items()}

    @property
    def mean_slopes(self) -> dict[str, tuple[float, float]]:
        """``{quantity: (slope, stderr)}`` of the seed-mean error against width."""
        return {q: (f.slope, f.stderr) for q, f in self.mean_fits.items()}

    @property
    def passed(self) -> bool:
        """Whether every required check passed."""
        return all(c.passed for c in self.checks if c.required)

    def rows(self, quantity: str) -> list[Row]:
        """The table rows of one quantity, by width.

        Parameters
        ----------
        quantity : str
            One of :attr:`quantities`.

        Returns
        -------
        list of Row

        Example
        -------
        >>> sweep = tp.validate(tp.demo_program(), widths=[32, 64, 128, 256], seeds=40,
        ...                     backend="numpy", quantities=["nngp"])
        >>> [row.width for row in sweep.rows("nngp")]
        [32, 64, 128, 256]
        """
        return [r for r in self.table if r.quantity == quantity]

    def regime(self, quantity: str) -> str:
        """Which term dominates the seed-mean error over the sweep.

        Parameters
        ----------
        quantity : str
            A validated quantity (:attr:`quantities`), such as ``"nngp"``.

        Returns
        -------
        str
            ``"bias"`` (falls like 1/n), ``"noise"`` (the seeds' sampling noise ~ 1/√(nS)) or
            ``"mixed"`` when it differs between widths.

        Example
        -------
        >>> tp.validate(tp.demo_program(), widths=[32, 64, 128, 256], seeds=40,
        ...             backend="numpy", quantities=["nngp"]).regime("nngp")
        'noise'
        """
        regimes = {r.stats.regime for r in self.rows(quantity)}
        return regimes.pop() if len(regimes) == 1 else "mixed"

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict:
        """The report as plain data, ready for JSON.

        Non-finite numbers become None.

        Returns
        -------
        dict
            Program, sweep, per-width rows, slopes, checks, limits, notes and the overall verdict.

        Example
        -------
        >>> d = tp.validate(tp.demo_program(), widths=[32, 64, 128, 256], seeds=40,
        ...                 backend="numpy", quantities=["nngp"]).to_dict()
        >>> d["passed"], d["widths"], d["slopes"]["nngp"]["points"]
        (True, [32, 64, 128, 256], 4)
        """
        def fit(f: Fit) -> dict:
            return {"slope": _finite(f.slope), "stderr": _finite(f.stderr),
                    "points": f.points}

        return {
            "program": self.program, "widths": list(self.widths), "seeds": self.seeds,
            "backend": self.backend, "z_threshold": self.z_threshold, "passed": self.passed,
            "rows": [{k: _finite(v) for k, v in r.as_dict().items()} for r in self.table],
            "slopes": {q: fit(f) for q, f in self.fits.items()},
            "mean_slopes": {q: fit(f) for q, f in self.mean_fits.items()},
            "checks": [{"name": c.name, "passed": bool(c.passed), "detail": c.detail,
                        "required": c.required} for c in self.checks],
            "limits": {q: np.asarray(v, dtype=float).tolist() for q, v in self.limits.items()},
            "notes": list(self.notes)}

    def to_markdown(self) -> str:
        """The report as Markdown: a table of errors per quantity, the slopes and the checks.

        Returns
        -------
        str

        Example
        -------
        >>> text = tp.validate(tp.demo_program(), widths=[32, 64, 128, 256], seeds=40,
        ...                    backend="numpy", quantities=["nngp"]).to_markdown()
        >>> print(text.splitlines()[0])
        ## Finite-width validation of `demo`
        """
        lines = [f"## Finite-width validation of `{self.program}`", "",
                 f"Widths {', '.join(map(str, self.widths))}; {self.seeds} seeds per width; "
                 f"backend {self.backend}.  Errors are relative Frobenius errors "
                 "‖simulation − limit‖_F / ‖limit‖_F (absolute where the limit is 0).", ""]
        for q in self.quantities:
            rows = self.rows(q)
            kind = "relative" if rows[0].stats.relative else "absolute"
            lines += [f"### {q} ({kind} error)", "",
                      "| width | per-draw error | seed-mean error | noise floor | regime | "
                      "max z | time (s) |",
                      "|---:|---:|---:|---:|:--|---:|---:|"]
            for r in rows:
                s = r.stats
                lines.append(f"| {r.width} | {s.draw_error:.4g} ± {s.draw_error_stderr:.2g} | "
                             f"{s.mean_error:.4g} | {s.noise_floor:.4g} | {s.regime} | "
                             f"{s.max_z:.2f} | {r.seconds:.1f} |")
            lines.append("")
        lines += ["### Log-log slopes (error ∝ width^slope)", "",
                  "| quantity | per-draw slope | expected | seed-mean slope | seed-mean regime |",
                  "|:--|---:|---:|---:|:--|"]
        for q in self.quantities:
            f, m = self.fits[q], self.mean_fits[q]
            lines.append(f"| {q} | {_pm(f)} | −0.5 | {_pm(m)} | {self._regime_text(q)} |")
        lines += ["", "### Checks", ""]
        for c in self.checks:
            mark = "PASS" if c.passed else "FAIL"
            extra = "" if c.required else " (informational)"
            lines.append(f"- **{mark}** {c.name}{extra}: {c.detail}")
        for note in self.notes:
            lines.append(f"- note: {note}")
        lines += ["", f"**Overall: {'PASSED' if self.passed else 'FAILED'}**"]
        return "\n".join(lines)

    def _regime_text(self, q: str) -> str:
        return {"bias": "bias-dominated (expect −1)",
                "noise": "noise-dominated (expect ≈ −0.5, ~1/√(nS))",
                "mixed": "noise at some widths, bias at others"}[self.regime(q)]

    def plot(self, path: str) -> str:
        """Plot the error against width on log-log axes, one panel per quantity.

        Per-draw errors with their fitted line and the n^{-1/2} reference, seed-mean errors and
        their noise floor.  Writes a PNG (matplotlib, Agg backend).

        Parameters
        ----------
        path : str
            The file to write.

        Returns
        -------
        str
            ``path``.

        Raises
        ------
        ImportError
            When matplotlib is missing.

        Example
        -------
        >>> tp.validate(tp.demo_program(), widths=[32, 64, 128, 256], seeds=40, backend="numpy",
        ...             quantities=["nngp"]).plot("validation.png")
        'validation.png'
        """
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:  # pragma: no cover - matplotlib is a dependency
            raise ImportError("ValidationReport.plot needs matplotlib (pip install matplotlib)"
                              ) from e
        qs = self.quantities
        cols = min(3, len(qs))
        rows_ = -(-len(qs) // cols)
        fig, axes = plt.subplots(rows_, cols, figsize=(4.6 * cols, 3.8 * rows_), squeeze=False)
        for ax, q in zip(axes.ravel(), qs):
            rs = self.rows(q)
            w = np.array([r.width for r in rs], dtype=float)
            e = np.array([r.stats.draw_error for r in rs])
            se = np.array([r.stats.draw_error_stderr for r in rs])
            em = np.array([r.stats.mean_error for r in rs])
            nf = np.array([r.stats.noise_floor for r in rs])
            ax.errorbar(w, e, yerr=se, fmt="o", color="C0", label="per draw")
            f = self.fits[q]
            if np.isfinite(f.slope):
                ax.plot(w, f.predict(w), "-", color="C0",
                        label=f"fit: slope {f.slope:.3f} ± {f.stderr:.3f}")
            if np.all(e > 0):
                ref = np.exp(np.mean(np.log(e) + 0.5 * np.log(w))) * w ** -0.5
                ax.plot(w, ref, ":", color="k", label=r"$n^{-1/2}$ reference")
            ax.plot(w, em, "s", mfc="none", color="C1", label="seed mean")
            ax.plot(w, nf, "--", color="C1", alpha=0.6, label="noise floor of mean")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("width n")
            ax.set_ylabel("relative error" if rs[0].stats.relative else "absolute error")
            ax.set_title(q)
            ax.legend(fontsize=7)
        for ax in axes.ravel()[len(qs):]:
            ax.axis("off")
        fig.suptitle(f"{self.program}: {self.seeds} seeds per width")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _finite(value):
    """``value`` for JSON: a float that is not finite becomes None."""
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _pm(f: Fit) -> str:
    return "n/a" if not np.isfinite(f.slope) else f"{f.slope:.3f} ± {f.stderr:.3f}"


# ---------------------------------------------------------------------- limits
def _scalar_names(p: Program) -> list[str]:
    return [n.name for n in p.nodes("moment")]


def resolve_quantities(p: Program, quantities) -> tuple[list[str], list[str]]:
    """Quantity keys (``"nngp"``, ``"ntk"``, ``"scalar:θ"``) to validate, and notes about what
    the default skipped."""
    notes = []
    explicit = quantities is not None
    if isinstance(quantities, str):
        quantities = (quantities,)
    quantities = tuple(quantities) if explicit else ("nngp", "ntk", "scalars")
    out = []
    for q in quantities:
        if q in KERNELS:
            if p.readout is None:
                if explicit:
                    raise ProgramError(f"cannot validate {q!r}: program {p.name!r} has no output")
                notes.append(f"{q} skipped: the program has no output")
                continue
            out.append(q)
        elif q == "scalars":
            names = _scalar_names(p)
            if not names and explicit:
                raise ProgramError(f"program {p.name!r} has no MOMENT scalars to validate")
            out += [f"scalar:{s}" for s in names]
        else:
            name = q[7:] if q.startswith("scalar:") else q
            if name not in _scalar_names(p):
                raise ProgramError(
                    f"unknown quantity {q!r}: use 'nngp', 'ntk', 'scalars' or the name of a "
                    f"MOMENT of the program ({_scalar_names(p)})")
            out.append(f"scalar:{name}")
    if not out:
        raise ProgramError(f"nothing to validate in program {p.name!r}: it has neither an output "
                           "nor MOMENT scalars")
    return list(dict.fromkeys(out)), notes


def compiler_limits(p: Program, quantities: list[str], given: dict | None = None) -> dict:
    """The limit of every quantity: from ``given`` (keys as in :func:`resolve_quantities`, or
    ``{"scalars": {θ: value}}``) where present, else from the compiler."""
    given = _given_limits(given, quantities)
    out, lim = {}, None
    for q in quantities:
        if q in given:
            out[q] = np.asarray(given[q], dtype=float)
            continue
        if q == "nngp":
            from ..kernels import nngp
            out[q] = np.asarray(nngp(p), dtype=float)
        elif q == "ntk":
            from ..kernels import ntk
            out[q] = np.asarray(ntk(p), dtype=float)
        else:
            if lim is None:
                from ..limit import Limit
                lim = Limit(p)
            out[q] = np.asarray(lim.scalar(q[7:]), dtype=float)
    return out


def _given_limits(given: dict | None, quantities: list[str]) -> dict:
    """``given`` keyed by quantity (``{"scalars": {θ: v}}`` unfolded), every key validated."""
    given = dict(given or {})
    for name, value in given.pop("scalars", {}).items():
        given.setdefault(f"scalar:{name}", value)
    unknown = sorted(set(given) - set(quantities))
    if unknown:
        raise ProgramError(f"limits given for {unknown}, which are not validated here; "
                           f"quantities: {quantities}")
    return given


def check_sweep(widths: list[int], seeds: int) -> None:
    """Refuse a sweep too small for its checks to mean anything (see the module docstring).

    Parameters
    ----------
    widths : sorted list of distinct positive ints
    seeds : int

    Raises
    ------
    ProgramError
        With fewer than :data:`MIN_WIDTHS` widths, a span below :data:`MIN_SPAN` or fewer
        than :data:`MIN_SEEDS` seeds, saying what to use instead.
    """
    if len(widths) < MIN_WIDTHS or widths[-1] < MIN_SPAN * widths[0]:
        lo = max(widths[0], 16)
        example = ",".join(str(lo * 2**k) for k in range(MIN_WIDTHS))
        raise ProgramError(
            f"widths {widths} are too few to fit a convergence rate: validate needs at least "
            f"{MIN_WIDTHS} distinct widths whose largest is at least {MIN_SPAN}× the smallest "
            f"(two widths always fit a line), e.g. {example}")
    if seeds < MIN_SEEDS:
        raise ProgramError(
            f"seeds={seeds} is too few for a standard error: validate needs at least "
            f"{MIN_SEEDS} seeds per width (100 or more for a sharp check)")


def _samples(sim, q: str) -> np.ndarray:
    if q == "nngp":
        return sim.nngp_samples
    if q == "ntk":
        return sim.ntk_samples
    return sim.scalars[q[7:]]


# ---------------------------------------------------------------------- validate
def validate(p: Program, widths=(64, 128, 256, 512, 1024), seeds: int = 100,
             backend: str = "auto", quantities=None, limits: dict | None = None,
             dtype=np.float64, seed: int = 0, z_threshold: float = 4.0,
             slope_tolerance: float = 0.1, resolution: float = 0.2,
             progress=None) -> ValidationReport:
    """Sweep ``widths`` and compare the simulation with the compiler's limits.

    Every quantity (the NNGP kernel, the NTK, the MOMENT limits) is simulated at each width
    (:func:`simulate`) and its error against the limit fitted on log-log axes; the checks are
    described in ``docs/theory.md`` §5.2 and the module docstring.

    Parameters
    ----------
    p : Program
        The program.
    widths : sequence of int
        At least :data:`MIN_WIDTHS` widths, the largest at least :data:`MIN_SPAN` × the smallest.
    seeds : int
        Draws per width (at least :data:`MIN_SEEDS`).
    backend : "auto" | "numpy" | "cupy"
        As for :func:`simulate`.
    quantities : iterable of "nngp", "ntk", "scalars" (all MOMENTs) or MOMENT names
        Default: all of them that the program has.
    limits : dict, optional
        Limits to use instead of the compiler's, keyed "nngp", "ntk", "scalar:θ" (or
        ``{"scalars": {θ: value}}``), e.g. to check that a wrong limit is caught.
    dtype : numpy.float64 or numpy.float32
        As for :func:`simulate`.
    seed : int
        Root seed of the sweep.
    z_threshold : float
        Largest allowed ``|seed mean − limit| / stderr`` over the entries at the largest width.
    slope_tolerance : float
        The per-draw slope passes when within ``max(slope_tolerance, 3·stderr)`` of −1/2
        (never wider than :data:`MAX_SLOPE_TOLERANCE`).
    resolution : float
        Largest relative error of a limit that the z-score check may miss: ``z_threshold ×``
        the seed mean's noise floor at the largest width must not exceed it.
    progress : callable, optional
        Called as ``progress(done, total, note)`` after every width.

    Returns
    -------
    ValidationReport

    Raises
    ------
    ProgramError
        On bad arguments, or a sweep too small to judge (:func:`check_sweep`).

    Example
    -------
    >>> p = tp.demo_program()
    >>> report = tp.validate(p, widths=[32, 64, 128, 256], seeds=40, backend="numpy",
    ...                      quantities=["nngp"])
    >>> report.passed, round(report.slopes["nngp"][0], 2)
    (True, -0.5)
    >>> wrong = tp.validate(p, widths=[32, 64, 128, 256], seeds=40, backend="numpy",
    ...                     quantities=["nngp"], limits={"nngp": 1.2 * tp.nngp(p)})
    >>> wrong.passed
    False
    """
    try:
        widths = sorted({positive_int(w, "every width") for w in widths})
    except TypeError:
        raise ProgramError(f"widths must be a list of positive integers, got {widths!r}") from None
    if not widths:
        raise ProgramError("widths must hold at least one width")
    seeds = positive_int(seeds, "seeds")
    for name, value in (("z_threshold", z_threshold), ("slope_tolerance", slope_tolerance),
                        ("resolution", resolution)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                or not np.isfinite(value):
            raise ProgramError(f"{name} must be a positive number, got {value!r}")
    if slope_tolerance > MAX_SLOPE_TOLERANCE:
        raise ProgramError(f"slope_tolerance={slope_tolerance} would accept an error that has "
                           f"stopped falling; use at most {MAX_SLOPE_TOLERANCE}")
    qs, notes = resolve_quantities(p, quantities)
    _given_limits(limits, qs)
    check_sweep(widths, seeds)
    lims = compiler_limits(p, qs, limits)
    table, used_backend = [], None
    for k, n in enumerate(widths):
        start = time.perf_counter()
        sim = simulate(p, width=n, seeds=seeds, backend=backend, dtype=dtype, seed=(seed, n))
        used_backend = sim.backend
        seconds = time.perf_counter() - start
        for q in qs:
            table.append(Row(q, n, seeds, error_stats(_samples(sim, q), lims[q]), seconds))
        del sim
        if progress is not None:
            progress(k + 1, len(widths), f"width {n}")
    fits, mean_fits, checks = {}, {}, []
    for q in qs:
        rows = [r for r in table if r.quantity == q]
        w = [r.width for r in rows]
        fits[q] = loglog_fit(w, [r.stats.draw_error for r in rows],
                             [r.stats.draw_error_stderr for r in rows])
        mean_fits[q] = loglog_fit(w, [r.stats.mean_error for r in rows])
        checks += _checks(q, rows, fits[q], mean_fits[q], z_threshold, slope_tolerance,
                          resolution)
    return ValidationReport(p.name, widths, seeds, used_backend, table, fits, mean_fits, checks,
                            lims, z_threshold, notes)


def _checks(q, rows, fit: Fit, mean_fit: Fit, z_threshold, tol, resolution) -> list[Check]:
    out = []
    name = f"{q}: per-draw error ∝ n^-1/2"
    span = f"over widths {rows[0].width}…{rows[-1].width}"
    if all(r.stats.draw_error <= 1e-12 for r in rows):
        out.append(Check(name, True, f"exact at every width {span}"))
    elif not np.isfinite(fit.slope) or not np.isfinite(fit.stderr):
        out.append(Check(name, False, f"no slope could be fitted {span} (errors of zero or "
                                      "without a standard error at most widths)"))
    elif 3 * fit.stderr > MAX_SLOPE_TOLERANCE:
        out.append(Check(name, False, f"slope {fit.slope:.3f} ± {fit.stderr:.3f} {span} is not "
                                      f"resolved (3·stderr > {MAX_SLOPE_TOLERANCE}): use more "
                                      "widths, a wider span or more seeds"))
    else:
        allowed = max(tol, 3 * fit.stderr)
        out.append(Check(name, abs(fit.slope + 0.5) <= allowed,
                         f"slope {fit.slope:.3f} ± {fit.stderr:.3f} {span} "
                         f"(allowed |slope + 0.5| ≤ {allowed:.3f})"))
    last = rows[-1]
    out.append(Check(
        f"{q}: seed mean within {z_threshold:g} standard errors of the limit at n={last.width}",
        last.stats.max_z <= z_threshold,
        f"max |mean − limit|/stderr = {last.stats.max_z:.2f} over the entries"))
    kind = "relative" if last.stats.relative else "absolute"
    smallest = z_threshold * last.stats.noise_floor
    out.append(Check(
        f"{q}: the seeds resolve a {kind} error of {resolution:g} at n={last.width}",
        bool(np.isfinite(smallest) and smallest <= resolution),
        f"the z-score check flags {kind} errors above {z_threshold:g} × noise floor = "
        f"{smallest:.3g}" + ("" if smallest <= resolution else
                             "; use more seeds (the floor falls like 1/√seeds)")))
    if len(rows) >= 3 and all(r.stats.regime == "bias" for r in rows) and \
            np.isfinite(mean_fit.slope):
        allowed = max(tol, 3 * mean_fit.stderr)
        out.append(Check(
            f"{q}: seed-mean error (bias-dominated) ∝ n^-1", abs(mean_fit.slope + 1) <= allowed,
            f"slope {mean_fit.slope:.3f} ± {mean_fit.stderr:.3f}", required=False))
    return out
