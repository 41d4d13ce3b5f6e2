"""``tp.simulate``: the program itself, instantiated at finite width n (docs/theory.md §5).

The program's graph is walked node by node at width n, for many seeds at once (leading seed
axis, batched matmul), on NumPy or CuPy with the same code (:mod:`.arrays`).  A network program
(one with an output) is first extended by its backward pass
(:func:`tensorprog.kernels.backward_program`, scaled gradients ``dx = √n ∂f/∂x``) and the whole
augmented program is instantiated, its readout vector ``v`` being one of its initial vectors.
From the forward and backward vectors come the exact finite-width NNGP sample and NTK of each
seed (:mod:`.empirical`), the network's outputs and every scalar of the program.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import ProgramError, PseudoLipschitzWarning
from ..ir.instructions import Embedding
from ..ir.program import Program
from ..kernels.backprop import backward_program
from .arrays import (array_module, available_bytes, check_dtype, chunk_bounds, is_cupy,
                     plan_chunks, positive_int, to_numpy)
from .interpreter import evaluate_moments, parse_moments, run_instructions
from ..kernels.terms import evaluate_terms, ntk_terms, readout_term
from ..resources import Progress, check_simulation
from .empirical import Grams, network_outputs
from .sampling import SeedStreams, draw_initial, plan_initial

#: Temporaries of one NONLIN evaluation and of the sampler, in units of one (n × N) vector.
_WORKSPACE_VECTORS = 8


@dataclass
class Simulation:
    """Finite-width statistics of a program over ``seeds`` independent draws at width ``width``.

    Made by :func:`simulate` (``docs/theory.md`` §5.1).  Arrays have the seeds on their leading
    axis and are NumPy arrays, whatever the backend.

    Attributes
    ----------
    program : Program
        The program simulated.
    width, seeds : int
        The width n and the number S of independent draws.
    backend : str
        ``"numpy"`` or ``"cupy"``.
    dtype : numpy.dtype
        The floating-point type of the run.
    seed : int or tuple
        The root seed (seed index s draws from ``SeedSequence(seed, spawn_key=(s,))``).
    chunk, bytes_per_seed : int
        Seeds run at once, and the estimated peak memory of one seed.
    seconds : float
        Wall time of the run.
    nngp_samples : numpy.ndarray, shape (S, N, N), or None
        Per seed, the NNGP kernel *conditional on the body*: ``σ_v² x(ξ_i)·x(ξ_j)/n + σ_b²``,
        the covariance of f over the readout layer's randomness with the body fixed.  Its mean
        over seeds is an unbiased estimate of the finite-width NNGP ``E[f(ξ_i) f(ξ_j)]``, and its
        fluctuation is that of the body alone (the readout's own sampling noise is removed).
        None for a program without output.
    outputs : numpy.ndarray, shape (S, N), or None
        The network itself, ``f(ξ_i) = v·x(ξ_i)/√n + b_out`` with the sampled readout.
    ntk_contributions : dict of str to numpy.ndarray, shape (S, N, N)
        Each trained parameter's share ``⟨∂f(ξ_i)/∂w, ∂f(ξ_j)/∂w⟩`` of the exact finite-width
        NTK (keys as in :func:`tensorprog.ntk_contributions`); ``ntk_samples`` is their sum.
    scalars : dict of str to numpy.ndarray, shape (S, m)
        Every scalar of the program (MOMENTs and initial scalars; m = N for a scalar per input,
        1 for a shared one) and the extra ``moments=`` asked for.
    readout_vector : str or None
        The name of the readout vector ``v`` in the program extended by its backward pass.
    parameters : dict of str to numpy.ndarray, or None
        With ``keep_parameters=True``: every sampled parameter — matrices (S, n, n) with their
        σ²/n variance (a generated matrix: (S, N, n, n), the matrix each input sees),
        input-layer weights ``U`` (S, n, d) and biases ``"<weight>.bias"`` (S, n),
        initial vectors (S, n) shared or (S, n, N) per input (the readout vector is
        ``readout_vector``), and ``"readout.bias"`` (S,).

    Example
    -------
    >>> sim = tp.simulate(tp.demo_program(), width=256, seeds=20, backend="numpy")
    >>> sim
    <Simulation of 'demo': width 256, 20 seeds, numpy, ...s>
    >>> sim.ntk_samples.shape, sorted(sim.ntk_contributions), sim.outputs.shape
    ((20, 2, 2), ['U_h1', 'W', 'readout'], (20, 2))
    """

    program: Program
    width: int
    seeds: int
    backend: str
    dtype: np.dtype
    seed: object
    chunk: int
    bytes_per_seed: int
    seconds: float
    scalars: dict[str, np.ndarray]
    nngp_samples: np.ndarray | None = None
    ntk_contributions: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: np.ndarray | None = None
    readout_vector: str | None = None
    parameters: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ kernels
    def _need_output(self, what):
        if self.nngp_samples is None:
            raise ProgramError(f"{what}: program {self.program.name!r} has no output; add one "
                               "with p.output(x, var=..., bias_var=...)")

    @cached_property
    def ntk_samples(self) -> np.ndarray:
        """(S, N, N): the exact finite-width NTK of every seed (sum over trained parameters)."""
        self._need_output("ntk_samples")
        return sum(self.ntk_contributions.values(),
                   np.zeros_like(self.nngp_samples))

    @property
    def nngp(self) -> np.ndarray:
        """(N, N): seed mean of :attr:`nngp_samples`."""
        self._need_output("nngp")
        return self.nngp_samples.mean(axis=0)

    @property
    def nngp_stderr(self) -> np.ndarray:
        """(N, N): standard error of :attr:`nngp` (std over seeds / √S)."""
        self._need_output("nngp_stderr")
        return _stderr(self.nngp_samples)

    @property
    def ntk(self) -> np.ndarray:
        """(N, N): seed mean of :attr:`ntk_samples`."""
        return self.ntk_samples.mean(axis=0)

    @property
    def ntk_stderr(self) -> np.ndarray:
        """(N, N): standard error of :attr:`ntk` (std over seeds / √S)."""
        return _stderr(self.ntk_samples)

    @property
    def output_cov(self) -> np.ndarray:
        """(N, N): ``(1/S) Σ_s f_s(ξ_i) f_s(ξ_j)``, the empirical covariance of the outputs
        across seeds about their exact mean 0 (f is odd in the readout ``v``, so ``E f = 0``);
        an unbiased estimate of the finite-width NNGP, noisier than :attr:`nngp`."""
        self._need_output("output_cov")
        return self.outputs.T @ self.outputs / self.seeds

    # ------------------------------------------------------------------ scalars
    def _scalar(self, name):
        if name not in self.scalars:
            raise ProgramError(f"no scalar {name!r} in this simulation; scalars: "
                               f"{sorted(self.scalars)}")
        return self.scalars[name]

    def scalar_mean(self, name: str) -> np.ndarray:
        """The seed mean of scalar ``name``, to compare with ``tp.limit(p).scalar(name)``.

        Parameters
        ----------
        name : str
            A scalar of the program, or an extra ``moments=`` name.

        Returns
        -------
        numpy.ndarray, shape (m,)
            One mean per member of the scalar's family.

        Raises
        ------
        ProgramError
            When the simulation has no such scalar, listing those it has.

        Example
        -------
        >>> p = tp.demo_program(moment=True)
        >>> tp.simulate(p, width=256, seeds=20, backend="numpy").scalar_mean("th").round(2)
        array([0.55, 0.55])
        >>> tp.limit(p).scalar("th")
        array([0.55, 0.55])
        """
        return self._scalar(name).mean(axis=0)

    def scalar_stderr(self, name: str) -> np.ndarray:
        """The standard error of :meth:`scalar_mean` (std over seeds / √S).

        Parameters
        ----------
        name : str
            A scalar of the program (or an extra ``moments=`` name).

        Returns
        -------
        numpy.ndarray
            Of the shape of :meth:`scalar_mean`; compare ``|mean − θ̊|`` with a few of it.

        Raises
        ------
        ProgramError
            As :meth:`scalar_mean` does.

        Example
        -------
        >>> sim = tp.simulate(tp.demo_program(moment=True), width=256, seeds=20, backend="numpy")
        >>> sim.scalar_stderr("th").round(3)      # the seeds' standard deviation / √20
        array([0.023, 0.029])
        """
        return _stderr(self._scalar(name))

    def __repr__(self) -> str:
        return (f"<Simulation of {self.program.name!r}: width {self.width}, {self.seeds} seeds, "
                f"{self.backend}, {self.seconds:.2f}s>")


def _stderr(samples: np.ndarray) -> np.ndarray:
    S = samples.shape[0]
    if S < 2:
        return np.full(samples.shape[1:], np.nan)
    return samples.std(axis=0, ddof=1) / np.sqrt(S)


def _append(store: dict, arrays: dict) -> None:
    """Append one chunk's arrays, as host arrays, to the lists in ``store``."""
    for k, v in arrays.items():
        store.setdefault(k, []).append(to_numpy(v))


def bytes_per_seed(q: Program, width: int, dtype, keep_parameters: bool = False) -> int:
    """Estimated peak memory of one seed: every matrix (n²), input-layer weight (n(d+1)),
    vector (n·m) and scalar of the (augmented) program, plus workspace for temporaries."""
    n, item = int(width), np.dtype(dtype).itemsize
    N = q.num_inputs or 1
    matrices = sum(n * n * (N if q.is_generated(m.name) else 1) for m in q.nodes("matrix"))
    vectors = sum(n * q.family_size(v.family) for v in q.nodes() if v.is_vector)
    weights = sum(n * (q.data[v.data].shape[1] + 1)
                  for v in q.nodes("vector") if isinstance(v, Embedding))
    scalars = sum(q.family_size(s.family) for s in q.nodes() if s.is_scalar)
    grams = 4 * len(q.order) * N * N
    total = matrices + vectors + weights + scalars + grams + _WORKSPACE_VECTORS * n * N
    if keep_parameters:
        total += matrices + weights
    return int(total * item)


def simulate(p: Program, width: int, seeds: int = 1, backend: str = "auto", dtype=np.float64,
             seed=0, chunk: int | None = None, keep_parameters: bool = False,
             moments: dict | None = None, rng: str = "auto") -> Simulation:
    """Run program ``p`` at width ``width`` for ``seeds`` independent draws (docs/theory.md §5).

    Every initial matrix, vector and input layer is sampled at width n and the instructions are
    executed in program order (``docs/theory.md`` §5.1); for a network program the backward pass
    is run too, giving the exact finite-width NNGP sample and NTK of each draw.  The Master
    Theorem (TP IIb Thm. B.4) says these converge to the compiler's limits as n grows.

    Parameters
    ----------
    p : Program
        The program.
    width : int
        The width n.
    seeds : int
        The number of independent draws.
    backend : "auto" | "numpy" | "cupy"
        Array module; "auto" uses CuPy when it imports and a GPU is present.
    dtype : numpy.float64 or numpy.float32
    seed : int or tuple of ints
        Seed index s draws from ``SeedSequence(seed, spawn_key=(s,))``: results do not depend
        on ``chunk``.
    chunk : int or None
        Seeds run at once; None plans it from the available memory (:mod:`.arrays`).
    keep_parameters : bool
        Keep every sampled parameter in :attr:`Simulation.parameters` (for independent checks).
    moments : dict, optional
        Extra empirical moments ``{name: ψ}`` (sympy expression or string over the augmented
        program's variables): ``(1/n) Σ_α ψ(…)`` lands in :attr:`Simulation.scalars`.
    rng : "auto" | "numpy" | "device"
        Where random numbers are drawn (see :mod:`.sampling`); "numpy" makes the CuPy backend
        draw exactly the networks the NumPy backend draws.

    Returns
    -------
    Simulation

    Raises
    ------
    ProgramError
        When ``p`` is not a program or an argument is invalid.
    ResourceError
        When one seed does not fit in memory.

    Example
    -------
    >>> p = tp.demo_program()
    >>> sim = tp.simulate(p, width=256, seeds=20, backend="numpy")
    >>> abs(sim.nngp - tp.nngp(p)) < 4 * sim.nngp_stderr
    array([[ True,  True],
           [ True,  True]])
    >>> abs(sim.ntk - tp.ntk(p)) < 4 * sim.ntk_stderr
    array([[ True,  True],
           [ True,  True]])
    """
    if not isinstance(p, Program):
        raise ProgramError(f"simulate needs a tensorprog Program, got {type(p).__name__}")
    width = positive_int(width, "width")
    seeds = positive_int(seeds, "seeds")
    if chunk is not None:
        chunk = positive_int(chunk, "chunk")
    dt = check_dtype(dtype)
    xp = array_module(backend)
    p.validate()
    if p.num_inputs is None:
        raise ProgramError(f"program {p.name!r} has no inputs: add p.embed(X, ...) or a vector "
                           "family first")
    start = time.perf_counter()

    if p.readout is not None:
        with warnings.catch_warnings():
            # derivatives such as erf' = 2exp(-x²)/√π are bounded; the program's own
            # nonlinearities were already checked when it was built
            warnings.simplefilter("ignore", PseudoLipschitzWarning)
            bw = backward_program(p)
        q, v_name, network, restore = bw.program, bw.readout_vector, bw.network, bw.restore
        terms = ntk_terms(bw)
        nngp_term = readout_term(bw.network)
        readout_bias_var = p.readout.bias_var
    else:
        q, v_name, terms, nngp_term, readout_bias_var = p, None, [], None, 0.0
        network, restore = p, {}
    extra = parse_moments(q, moments)
    plan = plan_initial(q, readout_bias_var)
    streams = SeedStreams(xp, seed, rng)
    per_seed = bytes_per_seed(q, width, dt, keep_parameters)
    device = "GPU" if is_cupy(xp) else "host"
    chunk = plan_chunks(seeds, per_seed, available_bytes(xp), width, chunk, device)
    check_simulation(q, width, seeds, p.num_inputs, len(terms) + 1, dt.itemsize)

    # a lifted network (inputs interacting, tensorprog.kernels.lift) holds a copy of each member
    # per output that reads it; the program's own scalars are the copies their owners hold
    scalar_names = {s.name: restore.get(s.family) for s in p.nodes() if s.is_scalar}
    scalars, ntk_parts, nngp, outputs = {}, {}, [], []
    kept: dict | None = {} if keep_parameters else None
    progress = Progress(f"simulating {p.name!r} at width {width}", seeds)
    for lo, hi in chunk_bounds(seeds, chunk):
        progress(lo)
        S = hi - lo
        values, readout_bias = draw_initial(plan, streams, range(lo, hi), width, dt, kept)
        run_instructions(q, values, width, S, xp, dt)
        moments_ = {s: values[s] if r is None else values[s][..., r]
                    for s, r in scalar_names.items()}
        moments_.update(evaluate_moments(extra, values, width, S, xp, dt))
        _append(scalars, {k: v[:, 0, :] for k, v in moments_.items()})
        if nngp_term is not None:
            grams = Grams(values, width, xp, q, S, dt)
            nngp.append(to_numpy(evaluate_terms([nngp_term], grams)["readout"]))
            _append(ntk_parts, evaluate_terms(terms, grams))
            outputs.append(to_numpy(network_outputs(network, values, v_name, readout_bias, width, xp)))
        del values, moments_
        if is_cupy(xp):
            xp.get_default_memory_pool().free_all_blocks()
    progress(seeds)
    progress.close()

    sim = Simulation(
        program=p, width=width, seeds=seeds, backend=xp.__name__, dtype=dt, seed=seed,
        chunk=chunk, bytes_per_seed=per_seed, seconds=0.0,
        scalars={k: np.concatenate(v) for k, v in scalars.items()},
        nngp_samples=np.concatenate(nngp) if nngp else None,
        ntk_contributions={k: np.concatenate(v) for k, v in ntk_parts.items()},
        outputs=np.concatenate(outputs) if outputs else None, readout_vector=v_name,
        parameters=None if kept is None else {k: np.stack(v) for k, v in kept.items()})
    sim.seconds = time.perf_counter() - start
    return sim
