"""Running a program's instructions at width n, for a chunk of seeds at once (docs/theory.md §5).

Array layout (leading axis: seeds):

* matrix ``W``: (S, n, n) (a generated matrix: :class:`~.sampling.GeneratedMatrix`);
* vector of a family of m members: (S, n, m), one column per member (the family "inputs":
  one per input ξ_i);
* shared vector (a bias, the readout ``v``): (S, n, 1), broadcasting against the families;
* scalar over a family: (S, 1, m); shared scalar: (S, 1, 1).

The instructions (TP IIb Def. B.1):

* MATMUL ``h := W x`` is the batched product ``W @ x`` (``Wᵀ x``: ``W.transpose(0, 2, 1) @ x``);
* NONLIN ``x := ψ(x¹…; θ…)`` evaluates the node's sympy expression with
  :func:`tensorprog.functions.lambdify` on the arrays, broadcasting shared vectors (S, n, 1) and
  per-input scalars (S, 1, N) against the families (S, n, N);
* MOMENT ``θ := avg ψ(…)`` is the mean over the n axis, giving (S, 1, m);
* SELECT ``x' := x[index]`` gathers columns (index −1: the zero vector).

Nothing here knows about particular architectures: the program is walked node by node.
"""
from __future__ import annotations

import sympy as sp

from ..errors import ProgramError
from ..functions import lambdify
from ..ir.instructions import (Embedding, InitialMatrix, InitialScalar, InitialVector, MatMul,
                               Moment, Nonlin, Select)
from ..ir.program import SHARED, Program, symbol
from ..ir.rules import RuleTable
from .sampling import GeneratedMatrix

_COMPILED: dict = {}


def compiled(expr: sp.Expr, names: tuple[str, ...], xp):
    """``ψ`` as an array function of the variables ``names`` (memoised per array module)."""
    key = (expr, names, xp.__name__)
    fn = _COMPILED.get(key)
    if fn is None:
        fn = lambdify([symbol(a) for a in names], expr, xp)
        _COMPILED[key] = fn
    return fn


def coordinatewise(expr, names, values, shape, xp, dtype):
    """``ψ`` applied to the arrays of ``names``, broadcast to ``shape`` (S, n, m)."""
    out = compiled(expr, tuple(names), xp)(*(values[a] for a in names))
    out = xp.asarray(out, dtype=dtype)
    if out.shape != shape:
        out = xp.broadcast_to(out, shape)
    return out


class _Run:
    """One chunk of seeds being run: the arrays so far and their shapes."""

    def __init__(self, p, values, width, seeds, xp, dtype):
        self.p, self.values, self.n, self.S, self.xp, self.dtype = (
            p, values, int(width), int(seeds), xp, dtype)

    def shape(self, node) -> tuple[int, int, int]:
        return (self.S, self.n, self.p.family_size(node.family))

    def psi(self, node):
        return coordinatewise(node.expr, node.operands, self.values, self.shape(node), self.xp,
                              self.dtype)


#: ``RUN(record, run)`` stores the record's array in ``run.values`` (TP IIb Def. B.1).
RUN = RuleTable("finite width")


@RUN.rule(InitialMatrix, Embedding, InitialVector)
def _(node, run: _Run) -> None:
    if node.name not in run.values:  # pragma: no cover - draw_initial samples every one
        raise ProgramError(f"initial object {node.name!r} was not sampled")


@RUN.rule(InitialScalar)
def _(node: InitialScalar, run: _Run) -> None:
    run.values[node.name] = run.xp.full((run.S, 1, 1), node.value, dtype=run.dtype)


@RUN.rule(MatMul)
def _(node: MatMul, run: _Run) -> None:
    W, x, xp = run.values[node.matrix], run.values[node.arg], run.xp
    if isinstance(W, GeneratedMatrix):
        run.values[node.name] = W.matmul(x, node.transpose, xp)
    else:
        run.values[node.name] = xp.matmul(W.transpose(0, 2, 1) if node.transpose else W, x)


@RUN.rule(Nonlin)
def _(node: Nonlin, run: _Run) -> None:
    run.values[node.name] = run.psi(node)


@RUN.rule(Select)
def _(node: Select, run: _Run) -> None:
    x, xp = run.values[node.arg], run.xp
    padded = xp.concatenate([x, xp.zeros((run.S, run.n, 1), dtype=run.dtype)], axis=2)
    run.values[node.name] = padded[:, :, xp.asarray(node.index)]  # -1 picks the zero column


@RUN.rule(Moment)
def _(node: Moment, run: _Run) -> None:
    run.values[node.name] = run.psi(node).mean(axis=1, keepdims=True)


def run_instructions(p: Program, values: dict, width: int, seeds: int, xp, dtype) -> dict:
    """Evaluate every instruction of ``p`` in program order into ``values``.

    ``values`` must already hold every matrix and initial vector (see
    :func:`tensorprog.backends.sampling.draw_initial`); initial scalars and the results of
    MATMUL, NONLIN, MOMENT and SELECT are added.  Returns ``values``.
    """
    run = _Run(p, values, width, seeds, xp, dtype)
    for node in p.nodes():
        RUN(node, run)
    return values


def parse_moments(p: Program, moments: dict | None) -> dict[str, tuple[sp.Expr, tuple, int]]:
    """Extra empirical moments ``{name: ψ}`` (ψ a sympy expression or a string in the program's
    variable names) as ``{name: (ψ, argument names, family size)}``."""
    out = {}
    for name, expr in (moments or {}).items():
        where = f"moment {name!r} := avg({expr})"
        if name in p:
            raise ProgramError(f"{name!r} is already a variable of the program; pick another name",
                               where)
        expr = p.expression(expr, instruction=where)
        used = {s.name for s in expr.free_symbols}
        unknown = sorted(u for u in used if u not in p)
        if unknown:
            raise ProgramError(f"unknown variables {unknown}", where)
        names = tuple(v for v in p.order if v in used)
        if not any(p.node(v).is_vector for v in names):
            raise ProgramError("a moment averages a vector expression over the n coordinates",
                               where)
        families = {p.node(v).family for v in names} - {SHARED}
        if len(families) > 1:
            raise ProgramError(f"variables from different families {sorted(families)}", where)
        out[name] = (expr, names, p.family_size(families.pop() if families else SHARED))
    return out


def evaluate_moments(parsed: dict, values: dict, width: int, seeds: int, xp, dtype) -> dict:
    """The extra moments of :func:`parse_moments` on one chunk: ``{name: (S, 1, m)}``."""
    return {name: coordinatewise(expr, names, values, (seeds, width, m), xp, dtype)
            .mean(axis=1, keepdims=True)
            for name, (expr, names, m) in parsed.items()}
