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
from functools import partial

from ..backends.arrays import positive_int
from ..errors import ProgramError, TensorProgError
from ..ir.program import Program
from ..kernels.backprop import backward_program
from ..kernels.terms import ntk_terms, readout_term
from ..limit.evaluator import Limit
from .devices import CPU64, DEVICES, Device, device as make_device
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

    Parameters
    ----------
    program : Program
        A network program with an output.
    tier : str
        Expectation tier ("auto", "exact", "quadrature", "montecarlo").
    dtype : "float64" or "float32"
        Default precision of the calls (see :meth:`__call__`).
    device : "cpu" or "gpu"
        Default device of the calls: NumPy, or CuPy on the GPU.

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

    Example
    -------
    >>> kfn = tp.KernelFn(tp.demo_program(activation="tanh"))
    >>> K = kfn(np.eye(2), get="nngp")
    >>> kfn.route, kfn.tiers, kfn.max_error < 1e-8
    ('pairs', {'quadrature'}, True)
    """

    def __init__(self, program: Program, tier: str = "auto", dtype="float64", device="cpu"):
        program.require_output()
        self.program = program
        self.tier = tier
        make_device("cpu", dtype)                          # a clear error for a bad dtype
        if device not in DEVICES:
            raise ProgramError(f"device must be one of {DEVICES}, got {device!r}")
        self.dtype, self.device = dtype, device
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
                 client=None, max_memory=None, threads=None, dtype=None, device=None,
                 on_device=False):
        """Kernels on new inputs.

        Parameters
        ----------
        X1, X2 : array or dict, optional
            Inputs of the program's input shape (see :func:`.layout.split_inputs`): an (N, d)
            array for an MLP, (N, T, d) for a sequence model, images (N, P, C) or
            (N, H, W, C) for a CNN, or ``{data name: array}``.  With
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
            Tiles computed at once on this machine (default: one per CPU, as many as fit
            ``max_memory`` together when it is given, else a quarter of the available memory;
            1 with the numba engine, whose kernel is itself parallel, and on the GPU).
            The result does not depend on it.
        dtype : "float64" or "float32", optional
            Precision of the inputs, the pair arrays, the fused kernels and the kernels
            returned (default: the compiled default, float64).  float32 halves the memory per
            pair (tiles of √2 the edge) and took 0.44–0.84 of the float64 time; its error
            ``max |K₃₂ − K₆₄| / max |K₆₄|`` measured 2e-7 to 9e-7 on the NNGP and NTK of ReLU
            and erf MLPs of depth 3 and 10, a CNN and an RNN at N = 500 (stated bound 5e-6,
            tested; entrywise relative errors are larger on entries near 0:
            docs/performance.md).  Factors without a fused closed form (quadrature, Monte
            Carlo, the generic arc-cosine expansion) are computed in the precision they are
            given or in float64 and stored in float32; the union route (BatchNorm) computes in
            float64 and casts.
        device : "cpu" or "gpu", optional
            NumPy on the host, or CuPy on the GPU (``pip install ".[gpu]"``): the inputs are
            moved to the GPU once, the tiles computed there (the tile budget a quarter of its
            free memory), factors without a fused closed form on the host.
        on_device : bool
            With ``device="gpu"``, return CuPy arrays instead of NumPy ones.

        Returns
        -------
        ndarray or dict
            One kernel for a single ``get``, else ``{name: kernel}``, of ``dtype``.

        Raises
        ------
        ProgramError
            For inputs of the wrong shape, or new inputs on the union route, or an unknown
            ``dtype`` or ``device``.
        ResourceError
            For ``device="gpu"`` without CuPy or a GPU.

        Example
        -------
        >>> kfn = tp.compile(tp.demo_program())
        >>> kfn(np.ones((3, 2)), np.eye(2)).keys()          # both kernels, 3 × 2 each
        dict_keys(['nngp', 'ntk'])
        """
        single = isinstance(get, str)
        gets = (get,) if single else tuple(get)
        for g in gets:
            if g not in GETS:
                raise ProgramError(f"get must name kernels among {GETS}, got {g!r}")
        spec = (self.device if device is None else device,
                self.dtype if dtype is None else dtype, bool(on_device))
        dev = make_device(*spec[:2])
        if self.route == "union":
            out = {g: _returned(dev, spec[2], k) for g, k in self._union(X1, X2, gets).items()}
        else:
            left = self._data(X1)
            right = None if X2 is None else split_inputs(self.layout, X2)
            out = self._tiled(left, right, gets, batch_size, progress, client, max_memory,
                              threads, dev, spec)
        return out[gets[0]] if single else out

    def _tiled(self, left, right, gets, batch_size, progress, client, max_memory, threads,
               dev, spec):
        n1 = next(iter(left.values())).shape[0]
        n2 = n1 if right is None else next(iter(right.values())).shape[0]
        b = positive_int(batch_size, "batch_size") if batch_size is not None else \
            auto_batch_size(self._template.arrays_per_pair, n1, n2, max_memory, dev)
        if client is None:                  # inputs moved to the device once
            left = {k: dev.put(v) for k, v in left.items()}
            right = None if right is None else {k: dev.put(v) for k, v in right.items()}
        if b >= max(n1, n2) and client is None:
            out, ex = self._template.evaluate(left, right, gets, dev)
            self.tiers, self.max_error = ex.tiers, ex.max_error
            return {g: _returned(dev, spec[2], k) for g, k in out.items()}
        if progress is True:
            from ..cli import ProgressBar

            progress = ProgressBar(label="kernel tiles")
        self.tiers, self.max_error = set(), 0.0
        xp = dev.xp if spec[2] else np
        evaluate = partial(self._evaluate_tile, spec)
        if client is not None:
            return run_tiles(evaluate, left, right, gets, int(b), progress, client, xp=xp,
                             dtype=dev.dtype)
        if threads is None:
            threads = 1 if fused.ENGINE == "numba" or not dev.host else \
                default_threads(dev.dtype.itemsize * self._template.arrays_per_pair * b * b,
                                max_memory)
        selves: dict = {}        # the self blocks of each block of inputs, by the block
        lock = threading.Lock()

        def shared(a, c, gets):
            with lock:
                own = [None if d is None else selves.setdefault(id(d), (d, {}))[1]
                       for d in (a, c)]
            return evaluate(a, c, gets, tuple(own), lock)

        return run_tiles(shared, left, right, gets, int(b), progress,
                         threads=positive_int(threads, "threads"), xp=xp, dtype=dev.dtype)

    def _evaluate_tile(self, spec, left, right, gets, selves=(None, None), lock=None):
        """One tile on the device ``spec`` = (device, dtype, on_device) names (a Dask worker
        resolves them itself); ``selves``: the self blocks of ``left`` and ``right`` shared
        with the other tiles of those blocks of inputs, ``lock`` guarding them."""
        dev = make_device(*spec[:2])
        out, ex = self._template.evaluate(left, right, gets, dev, selves)
        with lock or contextlib.nullcontext():
            self.tiers |= ex.tiers
            self.max_error = max(self.max_error, ex.max_error)
        return {g: _returned(dev, spec[2], k) for g, k in out.items()}

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
        ex.measure = True
        self.evaluate_with(ex, ("nngp", "ntk"))
        self.tiers = ex.tiers
        # the expectations of a cross kernel (the right inputs' self blocks, the other order
        # of a cross array) recorded too, so that no call records them
        self.evaluate(data, data, ("nngp", "ntk"))
        #: numbers held per input pair: the cached cross arrays, the most that one cross
        #: expectation holds at once (its factors, entries and result, measured on the
        #: template) and the temporaries of one closed form (docs/performance.md)
        self.arrays_per_pair = sum(2 * c.x[0, 0].size for c in ex._covs.values()) + \
            ex.temporaries + TEMPORARIES * max(lay.members.values(), default=1) ** 2

    def evaluate(self, left, right, gets, device: Device = CPU64, selves=(None, None)):
        """The kernels ``gets`` between ``left`` and ``right`` (None: symmetric) as arrays of
        ``device``, and the executor that computed them (``selves``: see
        :class:`.pairs.PairExecutor`)."""
        ex = PairExecutor(self.limit, self.layout.members, _rows(left),
                          None if right is None else _rows(right), device, memo=self.memo,
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
            out["ntk"] = 0.0 if total is None else total
        ex.progress.close()
        xp, dt = ex.device.xp, ex.device.dtype
        return {g: xp.full((ex.n["l"], ex.n["r"]), k, dtype=dt) if np.ndim(k) == 0   # no terms
                else k.astype(dt, copy=False) for g, k in out.items()}


def _rows(data):
    return {name: X.reshape(X.shape[0], -1) for name, X in data.items()}


def _returned(dev: Device, on_device: bool, kernel):
    """A kernel as returned to the caller: NumPy, or a device array when asked."""
    return dev.put(kernel) if on_device else dev.get(kernel).astype(dev.dtype, copy=False)


def _term(term, ex: PairExecutor, into=None) -> np.ndarray:
    """A term of :mod:`tensorprog.kernels.terms` on the cross batch, summed over the members
    each input owns: an (N₁, N₂) array, added in place to ``into`` when given (an array this
    module owns)."""
    Pa, Pb = (ex.P(f) for f in term.families)
    shape = (ex.n["l"], ex.n["r"], Pa, Pb)
    coef = _local_scale(term.scale, Pa, Pb)
    if np.ndim(coef):
        coef = ex.device.put(coef)
    blocks = []
    if term.tangent_pair is not None:
        A, B = (ex.leaves.info[ex.lim.z[v]][0] for v in term.tangent_pair)
        blocks.append(ex.base_block(A, B))
    blocks += [ex.cov(a, b) for a, b in term.factors]
    value = None
    for block in blocks:
        coef = coef * block.scale
        value = block.x if value is None else value * block.x
    if value is None:                            # no covariance: the scale alone
        value = ex.device.xp.empty(shape, dtype=ex.device.dtype)
        value[...] = coef
    elif len(blocks) < 2:                        # not yet an array of this call's own
        value = np.multiply(value, coef)
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
            tuple(lay.data.items()), tuple(lay.aliases.items()), tuple(lay.views.items()), tier)


def cached_kernels(program: Program, get: str, tier: str = "auto"):
    """``get`` ("nngp" or "ntk") of ``program`` on its own inputs by a derivation shared with
    every earlier program of the same structure, or None when the program has no per-input
    template, its expectations leave the closed forms or a numeric tier is forced (the caller
    then runs the limit)."""
    if tier not in ("auto", "exact"):  # the executor evaluates closed forms where they exist
        return None
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
