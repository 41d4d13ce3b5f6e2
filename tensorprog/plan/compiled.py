"""``tp.compile(p)``: a program's kernels as a function of its inputs.

Deriving the limit (the Z of every vector, the ZDOT terms, the backward program and the NTK
terms of :mod:`tensorprog.kernels.terms`) is symbolic and does not depend on the data; it is
done once, on a template of two inputs (:mod:`.layout`).  Calling the compiled kernel evaluates
that derivation on any inputs with :class:`.pairs.PairExecutor`: the N₁ × N₂ cross kernel
between two input sets without the N₂ × N₂ block, or the symmetric kernel of one set.

Programs whose inputs interact (BatchNorm) or that hold input-indexed arrays computed outside
them have no per-input template; their compiled kernel evaluates the ordinary limit on the
program's own inputs (the union of its batches) and says so in :attr:`KernelFn.route`.
"""
from __future__ import annotations

import numpy as np

import contextlib
import re
import threading
from collections import OrderedDict

from ..backends.arrays import positive_int
from ..errors import ProgramError, TensorProgError
from ..ir.program import Program
from ..kernels.backprop import backward_program
from ..kernels.terms import ntk_terms, readout_term
from ..limit.evaluator import Limit
from .layout import Layout, layout, retarget, split_inputs
from .pairs import PairExecutor, Unsupported
from . import fused
from .tiles import auto_batch_size, default_threads, run_tiles

GETS = ("nngp", "ntk")
#: Cross arrays alive at once inside one closed-form expectation (an upper bound).
TEMPORARIES = 24


class KernelFn:
    """The compiled kernels of a program (``tp.compile(p)``, alias ``tp.kernel_fn(p)``).

    Call it as ``kfn(X1, X2=None, get=("nngp", "ntk"))``.

    Attributes
    ----------
    route : str
        ``"pairs"`` (derived once, evaluated on any inputs) or ``"union"`` (the program's inputs
        interact; the kernels are those of the program on its own inputs).
    reason : str
        Why the union route was taken (empty on the pairs route).
    tiers, max_error :
        Expectation tiers the last call used and the largest error they state (0 for closed
        forms; the quadrature and Monte-Carlo tiers' error estimates otherwise).
    """

    def __init__(self, program: Program, tier: str = "auto"):
        program.require_output()
        self.program = program
        self.tier = tier
        self.reason = ""
        try:
            self.layout: Layout | None = layout(program)
        except ProgramError as exc:
            self.layout, self.reason = None, str(exc)
        self._template = None
        if self.layout is not None:
            try:
                self._template = _Template(program, self.layout, tier)
            except Unsupported as exc:
                self.reason = f"the pair executor does not handle {exc}"
        self.route = "pairs" if self._template is not None else "union"
        self.tiers, self.max_error = set(), 0.0

    def __call__(self, X1=None, X2=None, get=GETS, batch_size=None, progress=None,
                 client=None, max_memory=None, threads=None):
        """Kernels on new inputs.

        Parameters
        ----------
        X1, X2 : array or dict, optional
            Inputs of the program's input shape (see :func:`.layout.split_inputs`): an (N, d)
            array for an MLP, (N, T, d) for a sequence model, or ``{data name: array}``.  With
            ``X2`` the N₁ × N₂ cross kernels; without, the N₁ × N₁ kernels.  ``X1=None``: the
            program's own inputs.
        get : str or tuple
            ``"nngp"``, ``"ntk"`` or both (then a dict).
        batch_size : int, optional
            Edge of the tiles the kernel is computed in (:mod:`.tiles`); by default tiles only
            when the whole kernel's intermediates would not fit in ``max_memory`` bytes
            (default :data:`.tiles.TILE_BUDGET`).  A symmetric kernel computes each off-diagonal
            tile once.
        progress : callable or True, optional
            ``progress(done, total, note)`` after every tile (True: a bar on stderr).
        client : dask.distributed.Client, optional
            Compute the tiles on that Dask cluster (``pip install ".[distributed]"``).
        threads : int, optional
            Tiles computed at once on this machine (default: one per CPU, within the memory
            budget; 1 with the numba engine, whose kernel is itself parallel).  The result
            does not depend on it.

        Returns
        -------
        ndarray or dict
            One kernel for a single ``get``, else ``{name: kernel}``.

        Raises
        ------
        ProgramError
            For inputs of the wrong shape, or new inputs on the union route.

        Example
        -------
        >>> kfn = tp.compile(p)
        >>> K_test_train = kfn(X_test, X_train, get="ntk")
        """
        single = isinstance(get, str)
        gets = (get,) if single else tuple(get)
        for g in gets:
            if g not in GETS:
                raise ProgramError(f"get must name kernels among {GETS}, got {g!r}")
        if self.route == "union":
            out = self._union(X1, X2, gets)
        else:
            left = self._data(X1)
            right = None if X2 is None else split_inputs(self.layout, X2)
            out = self._tiled(left, right, gets, batch_size, progress, client, max_memory,
                              threads)
        return out[gets[0]] if single else out

    def _tiled(self, left, right, gets, batch_size, progress, client, max_memory, threads):
        n1 = next(iter(left.values())).shape[0]
        n2 = n1 if right is None else next(iter(right.values())).shape[0]
        b = positive_int(batch_size, "batch_size") if batch_size is not None else \
            auto_batch_size(self._template.arrays_per_pair, n1, n2, max_memory)
        if b >= max(n1, n2) and client is None:
            out, ex = self._template.evaluate(left, right, gets)
            self.tiers, self.max_error = ex.tiers, ex.max_error
            return out
        if progress is True:
            from ..cli import ProgressBar

            progress = ProgressBar(label="kernel tiles")
        self.tiers, self.max_error = set(), 0.0
        if client is not None:
            return run_tiles(self._evaluate_tile, left, right, gets, int(b), progress, client)
        if threads is None:
            threads = 1 if fused.ENGINE == "numba" else \
                default_threads(8.0 * self._template.arrays_per_pair * b * b)
        selves: dict = {}        # the self blocks of each block of inputs, by the block
        lock = threading.Lock()

        def evaluate(a, c, gets):
            with lock:
                own = [None if d is None else selves.setdefault(id(d), (d, {}))[1]
                       for d in (a, c)]
            return self._evaluate_tile(a, c, gets, tuple(own), lock)

        return run_tiles(evaluate, left, right, gets, int(b), progress,
                         threads=positive_int(threads, "threads"))

    def _evaluate_tile(self, left, right, gets, selves=(None, None), lock=None):
        out, ex = self._template.evaluate(left, right, gets, selves)
        with lock or contextlib.nullcontext():
            self.tiers |= ex.tiers
            self.max_error = max(self.max_error, ex.max_error)
        return out

    def _data(self, X):
        if X is None:
            return {name: self.program.data[name].reshape(self.program.num_inputs, -1)
                    for name in self.layout.aliases}
        return split_inputs(self.layout, X)

    def _union(self, X1, X2, gets):
        from ..kernels.ntk import nngp, ntk

        if X1 is not None or X2 is not None:
            raise ProgramError(f"this program's kernels cannot be evaluated on new inputs: "
                               f"{self.reason}; build it on the new inputs")
        out = {}
        if "nngp" in gets:
            out["nngp"] = nngp(self.program, tier=self.tier)
        if "ntk" in gets:
            out["ntk"] = ntk(self.program, tier=self.tier)
        return out

    def __str__(self) -> str:
        from .printing import plan_to_text

        return plan_to_text(self)


class _Template:
    """The derivation on two template inputs: the limit of the backward program and the NTK
    and NNGP terms."""

    def __init__(self, program: Program, lay: Layout, tier: str):
        N = program.num_inputs
        pick = [0, min(1, N - 1)]
        data = {name: program.data[name].reshape(N, -1)[pick] for name in lay.aliases}
        self.program = retarget(program, lay, data)
        self.layout = lay
        self.backward = backward_program(self.program)
        self.limit = Limit(self.backward.program, tier=tier)
        self.ntk_terms = ntk_terms(self.backward)
        self.nngp_term = readout_term(self.backward.network)
        # check once, on the template, that every quantity is within the executor's reach
        #: input-independent preparations shared by the executors of all calls and tiles
        self.memo: dict = {}
        ex = PairExecutor(self.limit, lay.members, _rows(data), memo=self.memo)
        self.evaluate_with(ex, ("nngp", "ntk"))
        self.tiers = ex.tiers
        #: float64 numbers held per input pair: the cached cross arrays and the temporaries of
        #: one closed form (measured constant, docs/performance.md)
        self.arrays_per_pair = sum(2 * c.x[0, 0].size for c in ex._covs.values()) + \
            TEMPORARIES * max(lay.members.values(), default=1) ** 2

    def evaluate(self, left, right, gets, selves=(None, None)):
        ex = PairExecutor(self.limit, self.layout.members, _rows(left),
                          None if right is None else _rows(right), memo=self.memo,
                          selves=selves)
        return self.evaluate_with(ex, gets), ex

    def evaluate_with(self, ex, gets):
        out = {}
        if "nngp" in gets:
            out["nngp"] = _term(self.nngp_term, ex)
        if "ntk" in gets:
            total = None
            for term in self.ntk_terms:
                total = _term(term, ex, total)
            out["ntk"] = total
        return out


def _rows(data):
    return {name: X.reshape(X.shape[0], -1) for name, X in data.items()}


def _term(term, ex: PairExecutor, into=None) -> np.ndarray:
    """A term of :mod:`tensorprog.kernels.terms` on the cross batch, summed over the members
    each input owns: an (N₁, N₂) array, added in place to ``into`` when given (an array this
    module owns)."""
    Pa, Pb = (ex.P(f) for f in term.families)
    shape = (ex.n["l"], ex.n["r"], Pa, Pb)
    coef = _local_scale(term.scale, Pa, Pb)
    blocks = []
    if term.tangent_pair is not None:
        A, B = (ex.leaves.info[ex.lim.z[v]][0] for v in term.tangent_pair)
        blocks.append(ex.base_block(A, B))
    blocks += [ex.cov(a, b) for a, b in term.factors]
    value = None
    for block in blocks:
        coef = coef * block.scale
        value = block.x if value is None else value * block.x
    if len(blocks) < 2:                          # not yet an array of this call's own
        value = np.multiply(np.ones(shape) if value is None else value, coef)
    elif np.broadcast_shapes(value.shape, np.shape(coef)) != value.shape:
        value = value * coef
    elif not (np.ndim(coef) == 0 and coef == 1.0):
        value *= coef
    if value.shape == shape and Pa == Pb == 1:
        value = value.reshape(shape[:2])
    else:
        value = np.broadcast_to(value, shape).sum(axis=(2, 3))
    if into is None:
        into = value
    else:
        into += value
    if term.const:
        into += term.const
    return into


def _local_scale(scale, Pa, Pb):
    """A term's scale over template members, as its (Pa, Pb) per-input pattern."""
    if np.ndim(scale) == 0:
        return scale
    return np.asarray(scale)[:Pa, :Pb]


_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 16


def structure_key(program: Program, lay: Layout, tier: str) -> tuple:
    """What a derivation depends on: the instructions and their hyper-parameters, the per-input
    layout and the tier — not the data nor the number of inputs."""
    from ..ir.text import program_to_text

    text = re.sub(r"\s*#.*$", "", program_to_text(program, data=False).split("\n", 1)[1],
                  flags=re.M)                           # data shapes are comments
    return (text, tuple(lay.members.items()),
            tuple((k, v.tobytes()) for k, v in lay.select.items()), lay.slots,
            tuple(lay.data.items()), tuple(lay.aliases.items()), tier)


def cached_kernels(program: Program, get: str, tier: str = "auto"):
    """``get`` ("nngp" or "ntk") of ``program`` on its own inputs by a derivation shared with
    every earlier program of the same structure, or None when the program has no per-input
    template or its expectations leave the closed forms (the caller then runs the limit)."""
    try:
        lay = layout(program)
        key = structure_key(program, lay, tier)
    except TensorProgError:
        return None
    kfn = _CACHE.get(key)
    if kfn is None:
        try:
            kfn = KernelFn(program, tier=tier)
        except TensorProgError:
            return None
        _CACHE[key] = kfn
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    if kfn.route != "pairs" or kfn._template.tiers - {"exact"}:
        return None
    data = {name: program.data[name].reshape(program.num_inputs, -1) for name in lay.aliases}
    try:
        return kfn._template.evaluate(data, None, (get,))[0][get]
    except TensorProgError:
        return None
