"""``tp.train``: a gradient-descent run of a network program, in the infinite-width limit and at
finite width."""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ..errors import TrainingError
from ..ir.program import INPUTS, SHARED, Program, symbol
from ..limit import Limit as BaseLimit
from ..limit.particles import ParticleLimit, standard_error
from .evaluation import TrainingLimit as Limit
from .finite import FiniteTrainer
from .losses import make_loss
from .parametrization import AbcParametrization, ntk_parametrization, resolve
from .structure import MatrixStep, MomentStep, read_network
from .unroll import unroll


@dataclass
class FiniteRun:
    """A run at finite width: ``samples`` (S, steps + 1, N) outputs per seed, their ``mean``,
    ``cov`` (steps + 1, N, N) over seeds and the standard error ``stderr`` of the mean;
    ``vectors`` holds the hidden vectors asked for with ``record=``, ``{name: (S, steps + 1, N,
    n)}``."""

    width: int
    samples: np.ndarray
    vectors: dict = field(default_factory=dict)

    def movement(self, name: str) -> np.ndarray:
        """``‖x_t − x_0‖²/n`` of the recorded hidden vector ``name`` per seed, step and input:
        an (S, steps + 1, N) array (see :meth:`TrainingRun.feature_change`).

        Raises
        ------
        TrainingError
            ``name`` was not recorded (``simulate(..., record=[name])``).
        """
        if name not in self.vectors:
            raise TrainingError(f"movement: the vector {name!r} was not recorded; pass "
                                f"record=[{name!r}] to simulate or validate")
        x = self.vectors[name]
        return ((x - x[:, :1]) ** 2).mean(axis=-1)

    @property
    def mean(self) -> np.ndarray:
        return self.samples.mean(axis=0)

    @property
    def stderr(self) -> np.ndarray:
        return standard_error(self.samples, axis=0)

    @property
    def cov(self) -> np.ndarray:
        d = self.samples - self.mean
        return np.einsum("sti,stj->tij", d, d) / (self.samples.shape[0] - 1)


def _indices(values, N: int, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise TrainingError(f"train: {what} must be a non-empty list of input indices, got "
                            f"{values!r}")
    if arr.min() < 0 or arr.max() >= N:
        bad = int(arr.max() if arr.max() >= N else arr.min())
        raise TrainingError(f"train: {what} holds index {bad} outside [0, {N}) (the program "
                            f"has {N} inputs)")
    if len(set(arr.tolist())) != arr.size:
        raise TrainingError(f"train: {what} repeats an index")
    return arr.astype(int)


class TrainingRun:
    """A gradient-descent run of a program (:func:`train`).  ``mean`` (steps + 1, N) and
    ``cov`` (steps + 1, N, N) are the limit outputs over initialisations, ``program`` the
    unrolled NETSOR⊤+ program; :meth:`simulate` and :meth:`validate` run it at finite width."""

    def __init__(self, program: Program, y, train, steps, lr, loss, parametrization, batches,
                 tier, strict=False):
        N = program.num_inputs
        self.net = read_network(program)
        self.parametrization = parametrization or ntk_parametrization()
        if not isinstance(self.parametrization, AbcParametrization):
            raise TrainingError("parametrization must be a preset such as "
                                "tp.ntk_parametrization(), tp.mup() or tp.yaida(s)")
        self.regime = resolve(self.parametrization)
        self.train_idx = _indices(list(range(N)) if train is None else train, N, "train")
        y = np.asarray(y, dtype=float)
        if y.ndim != 1 or len(y) != len(self.train_idx):
            raise TrainingError(f"train: targets y have shape {y.shape} but {len(self.train_idx)}"
                                " training inputs were given; pass one target per training "
                                "input, in the order of train=")
        if not np.all(np.isfinite(y)):
            raise TrainingError("train: targets y contain NaN or infinity")
        self.y = {int(j): float(v) for j, v in zip(self.train_idx, y)}
        if not isinstance(lr, numbers.Real) or not np.isfinite(lr) or lr <= 0:
            raise TrainingError(f"train: the learning rate lr={lr!r} must be a finite number > 0")
        self.lr = float(lr)
        if batches is None:
            if not isinstance(steps, numbers.Integral) or steps < 0:
                raise TrainingError(f"train: steps={steps!r} must be a whole number ≥ 0")
            batches = [self.train_idx] * int(steps)
        else:
            if steps is not None and len(batches) != steps:
                raise TrainingError(f"train: batches= holds {len(batches)} index arrays but "
                                    f"steps={steps}; give one batch per step")
            batches = [_indices(b, N, f"batch {k}") for k, b in enumerate(batches)]
            for k, b in enumerate(batches):
                extra = sorted(set(b.tolist()) - set(self.y))
                if extra:
                    raise TrainingError(f"train: batch {k} holds inputs {extra} that are not "
                                        "training inputs (train=)")
        self.batches = batches
        self.steps = len(batches)
        self.loss = make_loss(loss)
        # feature learning: the particle evaluator is the default (docs/performance.md)
        self.tier = "particles" if tier == "auto" and self.regime.feature_learning else tier
        self.strict = bool(strict)
        self.program_in = program
        self.rates = self._rates()
        self.unrolled = unroll(self.net, self.rates, self.loss, self.y, self.batches,
                               self.regime.feature_learning,
                               f0={} if self.regime.random_outputs else None)
        self._mean = self._cov = self._gain = None
        self._mean_error = self._cov_error = None
        self._error = 0.0

    def _rates(self) -> dict:
        """``η λ σ² / F_c`` of every tensor in the limit (0 when frozen or not trained)."""
        active = self.regime.active
        return {name: (self.lr * t.lr * t.var / t.fan_in
                       if t.trainable and active[t.role] else 0.0)
                for name, t in self.net.tensors.items()}

    @property
    def program(self) -> Program:
        """The unrolled training run as a NETSOR⊤+ program (print it for the textual form)."""
        return self.unrolled.program

    # ------------------------------------------------------------------ limit
    def _limit(self, q: Program):
        """The limit of the unrolled program ``q`` on the run's tier: the particle evaluator
        (:mod:`tensorprog.limit.particles`, the same draws for every program of the run), or
        the Master-Theorem evaluator, where the kernel regime's products of δ-sums are
        distributed (.evaluation) and the feature-learning program's vectors, nonlinear, are
        taken as they are."""
        if self.tier == "particles":
            return ParticleLimit(q)
        lim = (BaseLimit if self.regime.feature_learning else Limit)(q, tier=self.tier)
        self._error = max(self._error, lim.max_error_so_far)  # the outputs are limit scalars
        return lim

    def _deltas(self, f0: dict | None, unrolled=None) -> np.ndarray:
        """Limit outputs (R, steps + 1, N) of the program (``unrolled``, default the run's
        own), conditioned on ``f0`` when given: one row per replica of the particle tier, one
        row on the other tiers."""
        un = unrolled or self.unrolled
        q = un.program
        if f0 is not None:
            q = q.copy()
            for j, name in un.f0.items():
                q.replace(name, value=float(f0.get(j, 0.0)))
        return self._outputs(self._limit(q), un)

    def _outputs(self, lim, unrolled=None) -> np.ndarray:
        """The outputs f_t (R replicas × one row per output of ``unrolled``, default the
        run's own, × N) as scalars of an evaluated unrolled program."""
        unrolled = unrolled or self.unrolled
        N = self.net.num_inputs
        R = lim.R if isinstance(lim, ParticleLimit) else 1
        out = np.zeros((R, len(unrolled.outputs), N))
        for t, o in enumerate(unrolled.outputs):
            if o is not None:
                out[:, t] = _value(o, lim, N)
        return out

    def _set_mean(self, replicas: np.ndarray) -> None:
        """Deterministic outputs from their (R, steps + 1, N) replicas: the mean and, over
        several replicas, its standard error (end to end: every estimate of the program
        propagated)."""
        N = self.net.num_inputs
        self._mean = replicas.mean(axis=0)
        self._cov = np.zeros((self.steps + 1, N, N))
        self._cov_error = np.zeros_like(self._cov)
        if len(replicas) > 1:
            self._mean_error = standard_error(replicas, axis=0)
            self._error = max(self._error, float(self._mean_error.max(initial=0.0)))

    def _jacobian(self, unrolled=None) -> tuple[np.ndarray, np.ndarray]:
        """``(Δ, J)``: the outputs (steps + 1, N) at ``f_0 = 0`` and their derivatives
        (steps + 1, N, N) in the initial outputs of the training points (columns of other
        inputs 0), from the affine limit of an MSE-like loss (evaluated at each unit vector)."""
        un = unrolled or self.unrolled
        base = self._deltas({}, un)
        N = self.net.num_inputs
        J = np.zeros(base.shape + (N,))
        for j in sorted(un.f0):
            J[..., j] = self._deltas({j: 1.0}, un) - base
        return base, J

    def _evaluate(self):
        N = self.net.num_inputs
        if not self.regime.random_outputs:
            self._set_mean(self._deltas(None))
            return
        K = self.nngp()
        if self.loss.affine:
            base, J = self._jacobian()           # (R, …): replicas on the particle tier
            A = np.eye(N)[None] + J
            self._mean, self._gain = base.mean(axis=0), A.mean(axis=0)
            half = self._gain @ K
            self._cov = half @ self._gain.transpose(0, 2, 1)
            if len(base) > 1:  # first order in each replica's deviation from the mean gain
                spread = A @ half.transpose(0, 2, 1)
                self._mean_error = standard_error(base, axis=0)
                self._cov_error = standard_error(spread + spread.transpose(0, 1, 3, 2),
                                                  axis=0)
                self._error = max(self._error, float(self._mean_error.max()),
                                  float(self._cov_error.max()))
            self._check_rate(J.mean(axis=0))
        else:
            raise TrainingError(
                f"train: the loss {self.loss.name} has a derivative that is not affine in f; "
                "with random initial outputs (s = 0) the trained outputs are not Gaussian and "
                "tensorprog evaluates them for MSE-like losses only; use s > 0 (e.g. "
                "tp.yaida(s=0.5)) or the MSE")

    def _check_rate(self, J: np.ndarray) -> None:
        """MSE in the NTK limit: a step on batch B is ``f ← f − (η/|B|) Θ[:, B] (f_B − y_B)``,
        stable iff ``η < 2|B|/λ_max(Θ_BB)`` (:func:`tensorprog.predict.check_learning_rate`);
        every distinct batch of the schedule is checked.  Θ (the NTK with the tensors'
        learning-rate multipliers, as this run trains) is read off the first step,
        ``J_1[:, j] = −(η/|B_0|) Θ[:, j]`` for ``j ∈ B_0``; when a later batch leaves ``B_0``,
        off a one-step full-batch run on the training points."""
        from ..errors import PredictionError
        from ..predict.rates import warn_or_raise
        from ..predict.spectrum import Spectrum

        if self.steps == 0 or self.loss.name != "mse":
            return
        first = np.asarray(self.batches[0])
        if any(set(b.tolist()) - set(first.tolist()) for b in self.batches):
            first = np.sort(self.train_idx)
            probe = unroll(self.net, self.rates, self.loss, self.y, [first], False, f0={},
                           name=f"{self.net.name}_ntk")
            J = self._jacobian(probe)[1].mean(axis=0)
        theta = -len(first) / self.lr * J[1]
        checked = set()
        for k, b in enumerate(self.batches):
            key = tuple(sorted(b.tolist()))
            if key in checked:
                continue
            checked.add(key)
            block = theta[np.ix_(key, key)]
            where = ("train" if len(key) == len(self.train_idx)
                     else f"train: batch {k} (inputs {list(key)})")
            try:
                spec = Spectrum.of((block + block.T) / 2, "the NTK block", where)
                warn_or_raise(self.lr, spec, self.strict, where)
            except PredictionError as e:
                raise TrainingError(str(e)) from None

    def nngp(self) -> np.ndarray:
        """Covariance (N, N) of the initial outputs in the limit (0 unless s = 0)."""
        from ..kernels import nngp

        if not self.regime.random_outputs:
            return np.zeros((self.net.num_inputs,) * 2)
        K = nngp(self.program_in, tier="auto" if self.tier == "particles" else self.tier)
        if not self.regime.random_bias:
            K = K - self.net.tensors["v_b"].var
        return K

    @property
    def mean(self) -> np.ndarray:
        """(steps + 1, N): the limit outputs f_t on every input, mean over initialisations."""
        if self._mean is None:
            self._evaluate()
        return self._mean

    def mean_given(self, f0) -> np.ndarray:
        """The limit trajectory of networks whose initial outputs are ``f0``.

        With random initial outputs (s = 0) the limit is a deterministic function of ``f0``
        (TP IIb App. D.1.1): ``f_t = mean_t + (I + J_t) f0`` with the Jacobian ``J_t`` of the
        conditioned program (see ``docs/training.md``), so one finite network can be compared
        with the limit started from its own ``f_0``.  For s > 0 the initial outputs vanish in
        the limit and the result is :attr:`mean` for every row.

        Parameters
        ----------
        f0 : array_like
            (N,) or (S, N) initial outputs on every input of the program.

        Returns
        -------
        np.ndarray
            (steps + 1, N), or (S, steps + 1, N) for a batch of ``f0``.

        Raises
        ------
        TrainingError
            ``f0`` whose last axis is not the number of inputs, or not finite.

        Example
        -------
        >>> sim = run.simulate(1024, seeds=8)
        >>> run.mean_given(sim.samples[:, 0]).shape     # (8, steps + 1, N)
        """
        N = self.net.num_inputs
        f0 = np.asarray(f0, dtype=float)
        if f0.ndim not in (1, 2) or f0.shape[-1] != N or not np.all(np.isfinite(f0)):
            raise TrainingError(f"mean_given: f0 must be finite initial outputs of shape ({N},)"
                                f" or (S, {N}), got shape {f0.shape}")
        mean = self.mean
        out = np.broadcast_to(mean, f0.shape[:-1] + mean.shape)
        if self._gain is None:
            return out.copy()
        return out + np.einsum("tij,...j->...ti", self._gain, f0)

    @property
    def limit_error(self) -> float:
        """The largest error estimate of the limit: on the particle tier the largest standard
        error of :attr:`mean` and :attr:`cov` over independent replicas of the whole evaluation
        (end to end); on the other tiers the evaluator's largest error estimate of one
        expectation (0 when every expectation was exact; a Monte Carlo standard error
        otherwise), not propagated through later ones."""
        self.mean
        return self._error

    @property
    def mean_error(self) -> np.ndarray:
        """(steps + 1, N): the error estimate of each entry of :attr:`mean` — its standard
        error over replicas on the particle tier, :attr:`limit_error` everywhere otherwise."""
        return self._error_array(self.mean, self._mean_error)

    @property
    def cov_error(self) -> np.ndarray:
        """(steps + 1, N, N): the error estimate of each entry of :attr:`cov` (as
        :attr:`mean_error`; 0 where the limit is deterministic)."""
        return self._error_array(self.cov, self._cov_error)

    def _error_array(self, value: np.ndarray, error: np.ndarray | None) -> np.ndarray:
        return np.full(value.shape, self._error) if error is None else error

    @property
    def cov(self) -> np.ndarray:
        """(steps + 1, N, N): their covariance over initialisations (0 where deterministic)."""
        if self._cov is None:
            self._evaluate()
        return self._cov

    def _check_vector(self, name: str, where: str) -> None:
        vectors = {st.name for st in self.net.steps
                   if not isinstance(st, (MatrixStep, MomentStep))}
        if name not in vectors:
            raise TrainingError(f"{where}: {name!r} is not a vector of the network "
                                f"{self.net.name!r}")

    def feature_change(self, name, width: int | None = None, seeds: int = 32, seed: int = 0):
        """How far the hidden vector ``name`` moves: ``‖x_t − x_0‖²/n`` at every step.

        Without ``width``, its infinite-width limit, an (steps + 1, N) array (one column per
        member of the vector's family: N·P for a CNN's (image, position) vectors): Θ(1) with
        feature learning (s = 1, the MOMENT ``avg((x_t − x_0)²)`` of the unrolled program), 0 in the
        kernel regime (s < 1, where it is ``n^{-(1−s)}`` times a Θ(1) number: the update moves
        each coordinate by ``n^{-(1−s)/2}``, Yaida §III).  With ``width``, the same quantity of
        the finite network, a :class:`FiniteRun` over ``seeds`` seeds.

        Parameters
        ----------
        name : str or list of str
            A vector of the network, or a list of them (then a dict by name is returned;
            their limits share one evaluation of the program, as do the outputs
            :attr:`mean` when they are not evaluated yet).
        width, seeds, seed : int, optional
            The finite network and its seeds (as :meth:`simulate`).

        Returns
        -------
        np.ndarray or FiniteRun
            The limit (steps + 1, N), or with ``width`` a :class:`FiniteRun` whose samples
            are (S, steps + 1, N); a dict of them for a list of names.

        Raises
        ------
        TrainingError
            ``name`` is not a vector of the network.

        Example
        -------
        >>> run.feature_change("x1")                 # (steps + 1, N), 0 at t = 0
        >>> run.feature_change("x1", width=1024).mean
        """
        names = [name] if isinstance(name, str) else list(name)
        for nm in names:
            self._check_vector(nm, "feature_change")
        if width is not None:
            sim = self.simulate(width, seeds=seeds, seed=seed, record=names)
            out = {nm: FiniteRun(int(width), sim.movement(nm)) for nm in names}
        else:
            out = self._movement_limits(names)
        return out[name] if isinstance(name, str) else out

    def _members(self, name: str) -> int:
        """The members of the vector ``name``: N, or its family's size (N·P for a CNN's
        (image, position) vectors)."""
        family = self.program_in.node(name).family
        N = self.net.num_inputs
        return N if family in (INPUTS, SHARED) else self.program_in.family_size(family)

    def _movement_limits(self, names) -> dict:
        """``{name: (steps + 1, members)}`` limits of ``avg((x_t − x_0)²)`` in one evaluation."""
        size = {nm: self._members(nm) for nm in names}
        out = {nm: np.zeros((self.steps + 1, size[nm])) for nm in names}
        if not self.regime.feature_learning:
            return out
        q = self.unrolled.program.copy()
        moves = []
        for t, vecs in enumerate(self.unrolled.vectors):
            for nm in names:
                if t and vecs[nm] != nm:
                    m = q.fresh_name("move")
                    q.add_inferred("moment", m, (symbol(vecs[nm]) - symbol(nm)) ** 2)
                    moves.append((nm, t, m))
        lim = self._limit(q)
        for nm, t, m in moves:
            out[nm][t] = np.broadcast_to(lim.scalar(m), (size[nm],))
        if self._mean is None:  # s = 1: the outputs are scalars of the same program
            self._set_mean(self._outputs(lim))
        return out

    # ------------------------------------------------------------------ finite width
    def trainer(self, width: int) -> FiniteTrainer:
        if not isinstance(width, numbers.Integral) or width < 1:
            raise TrainingError(f"simulate: width={width!r} must be a positive integer")
        return FiniteTrainer(self.net, self.parametrization, int(width), self.lr, self.loss,
                             self.y, self.batches)

    def simulate(self, width: int, seeds: int = 32, seed: int = 0, record=()) -> FiniteRun:
        """The same run at width ``width`` for ``seeds`` initialisations (seeds
        ``seed, seed + 1, …``): a :class:`FiniteRun`, which also keeps the hidden vectors
        named in ``record`` at every step (for :meth:`FiniteRun.movement`).

        Raises
        ------
        TrainingError
            A width or seed count that is not a positive whole number, or a name in
            ``record`` that is not a vector of the network.
        """
        if not isinstance(seeds, numbers.Integral) or seeds < 2:
            raise TrainingError(f"simulate: seeds={seeds!r} must be a whole number ≥ 2")
        record = list(record)
        for name in record:
            self._check_vector(name, "simulate")
        if not record:
            return FiniteRun(int(width), self.trainer(width).run(range(seed, seed + seeds)))
        fs, kept = self.trainer(width).run(range(seed, seed + seeds), record=record)
        return FiniteRun(int(width), fs, kept)

    def validate(self, widths=(256, 512, 1024, 2048), seeds: int = 32, seed: int = 0,
                 record=()):
        """Finite width against the limit: a :class:`.validate.TrajectoryReport` (its
        ``runs`` keep every width's :class:`FiniteRun`, with the vectors named in
        ``record``).  ``seeds``: one number, or one per width."""
        from .validate import validate_run

        return validate_run(self, widths, seeds, seed, record=record)

    def __repr__(self) -> str:
        return (f"<TrainingRun of {self.net.name!r}: {self.steps} steps, "
                f"{self.parametrization.name}, loss {self.loss.name}>")


def _value(o, lim, N: int) -> np.ndarray:
    """Evaluate an output expression (a sympy expression in scalars of the program): (R, N),
    one row per replica of a particle limit, one row otherwise."""
    import sympy as sp

    expr = sp.sympify(o)
    syms = sorted(expr.free_symbols, key=str)
    R = lim.R if isinstance(lim, ParticleLimit) else 1
    if not syms:
        return np.full((R, N), float(expr))
    if R > 1:
        vals = [np.broadcast_to(lim.replicas[s.name].T, (R, N)) for s in syms]
    else:
        vals = [np.broadcast_to(np.asarray(lim.scalar(s.name), dtype=float), (R, N))
                for s in syms]
    return np.broadcast_to(sp.lambdify(syms, expr, "numpy")(*vals), (R, N)).astype(float)



def train(program: Program, y, train=None, steps: int | None = None, lr: float = 1.0,
          loss="mse", parametrization: AbcParametrization | None = None, batches=None,
          tier: str = "auto", strict: bool = False) -> TrainingRun:
    """Gradient descent on ``program``'s network, unrolled into a NETSOR⊤+ program and taken
    to the infinite-width limit (TP IIb App. D.1).

    The training run is written as one program whose limit the Master Theorem gives
    (``docs/training.md``): the outputs on every input after each step, as a Gaussian process
    (NTK-type parametrizations) or deterministic (feature learning).

    Parameters
    ----------
    program : Program
        A network program with an output (``p.output``).
    y : array_like
        Targets, one per training input (in the order of ``train``).
    train : sequence of int, optional
        Indices of the training inputs (default: every input); the others are test points.
    steps : int, optional
        Number of full-batch steps (or the length of ``batches``).
    lr : float
        Global learning rate η > 0.
    loss : str or sympy.Expr
        ``"mse"`` (mean over the batch of ½(f − y)²), ``"bce"``, or a sympy expression in
        ``f`` and ``y`` (:mod:`.losses`).
    parametrization : AbcParametrization, optional
        How every tensor scales with width (default :func:`ntk_parametrization`).
    batches : sequence of arrays, optional
        One array of training-input indices per step (SGD); default full batch.
    tier : str
        How the limit is evaluated: ``"particles"`` (:mod:`tensorprog.limit.particles`: the
        whole program on one set of joint samples, with end-to-end error bars over
        replicas), or an expectation tier of the Master-Theorem evaluator (``"exact"``,
        ``"quadrature"``, ``"montecarlo"``).  ``"auto"``: the particles for feature-learning
        parametrizations (s = 1), the evaluator's own ``"auto"`` otherwise.
    strict : bool
        In the NTK limit with the MSE, raise instead of warning when ``lr > 4|B|/λ_max`` of
        the NTK block of a batch B (the training points, full batch).

    Returns
    -------
    TrainingRun
        ``.mean`` (steps + 1, N), ``.cov``, ``.program``, ``.simulate``, ``.validate``.

    Raises
    ------
    TrainingError
        Targets of the wrong length, an index out of range, a loss without a derivative, a
        batch schedule of the wrong length, a non-finite learning rate, a parametrization
        whose limit blows up, an instruction ``tp.train`` cannot unroll (named, with the
        reason); with ``strict``, a learning rate above ``4|B|/λ_max`` of a batch (raised
        when the limit is evaluated).
    ProgramError
        A program without an output.

    Warns
    -----
    LearningRateWarning
        NTK limit, MSE, ``lr > 2|B|/λ_max`` of a batch's NTK block (the catapult band),
        naming the threshold and the batch.

    Example
    -------
    >>> run = tp.train(tp.demo_program(), y=[1.0], train=[0], steps=2, lr=0.5)
    >>> run.mean.round(4)      # rows: steps 0, 1, 2; f₁ = ηΘ(ξ, ξ₀)·y, kernel gradient descent
    array([[0.    , 0.    ],
           [1.65  , 0.4279],
           [0.5775, 0.1498]])
    """
    return TrainingRun(program, y, train, steps, lr, loss, parametrization, batches, tier,
                       strict)
