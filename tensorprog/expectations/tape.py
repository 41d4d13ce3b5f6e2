"""Several sympy expressions evaluated on arrays in one pass over their shared DAG.

The Monte-Carlo tier of the limit (:mod:`tensorprog.limit.sampling`) evaluates Z expressions
on joint draws of their atoms.  A trained network's Z expressions are deep and share most of their
subexpressions: ``Z^{x_t}`` contains ``Z^{x_s}`` of every earlier step, and the expected
derivatives of a ZDOT term (TP IIb Def. B.3, ZDOT) share almost everything with ``Z^x``.
``sympy.lambdify`` prints, re-parses and compiles every expression on its own (its cost grows
with the size of the expression *tree*, and renaming symbols that are not identifiers rebuilds
it).  A :class:`Tape` walks the expressions' DAG once (each distinct subexpression one slot),
records one array operation per slot in topological order, and runs them on the arrays of its
inputs, releasing every intermediate after its last use.  Functions the tape does not know
are evaluated by ``lambdify`` of that one node, so results are those of
:func:`tensorprog.functions.lambdify`.  :mod:`.decompose` uses a tape to probe a large
multiplicand at two points before it tries to rewrite it symbolically.
"""
from __future__ import annotations

import operator
from functools import reduce

import numpy as np
import sympy as sp

from ..errors import ExpectationError
from ..functions import lambdify, numeric_namespace

__all__ = ["Tape"]

_NAMESPACE = numeric_namespace(np)


def _sum(*xs):
    return reduce(operator.add, xs)


def _product(*xs):
    return reduce(operator.mul, xs)


def _power(exp: sp.Expr):
    """``x ↦ x**exp`` for a numeric exponent, by multiplication where it is a small integer."""
    if exp == 2:
        return lambda x: x * x
    if exp == -1:
        return lambda x: 1.0 / x
    if exp == sp.S.Half:
        return np.sqrt
    if exp.is_Integer:
        e = int(exp)
        return lambda x: x ** e
    e = float(exp)
    return lambda x: np.power(x, e)


class Tape:
    """``exprs`` as functions of ``inputs`` (sympy Symbols), evaluated together.

    Parameters
    ----------
    inputs : sequence of sympy.Symbol
        The arguments, in call order.
    exprs : sequence of sympy.Expr
        Expressions over ``inputs``.

    Raises
    ------
    ExpectationError
        An expression has a free symbol that is not an input.

    Example
    -------
    >>> x, y = sp.symbols("x y")
    >>> Tape([x, y], [sp.tanh(x + y), (x + y) ** 2])(np.array([0.5]), np.array([0.5]))
    [array([0.76159416]), array([1.])]
    """

    def __init__(self, inputs, exprs):
        self.inputs = tuple(inputs)
        self.slots: dict[sp.Expr, int] = {s: i for i, s in enumerate(self.inputs)}
        self.ops: list[tuple] = []  # (slot, function, argument slots)
        self.outputs = [self._compile(sp.sympify(e)) for e in exprs]
        self.size = len(self.slots)
        last = {}
        for k, (_, _, args) in enumerate(self.ops):
            for a in args:
                last[a] = k
        keep = set(self.outputs)
        self.release = [[] for _ in self.ops]
        for slot, k in last.items():
            if slot not in keep:
                self.release[k].append(slot)

    # ------------------------------------------------------------------ compilation
    def _compile(self, root: sp.Expr) -> int:
        """The slot of ``root`` after recording the operations of its unseen subexpressions
        (post-order, without recursion: Z expressions of deep programs nest deeply)."""
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node in self.slots:
                continue
            children = self._children(node)
            if expanded or not children:
                self._record(node, children)
                continue
            stack.append((node, True))
            stack.extend((c, False) for c in children if c not in self.slots)
        return self.slots[root]

    def _children(self, node: sp.Expr) -> tuple:
        if isinstance(node, (sp.Add, sp.Mul)) or isinstance(node, sp.Function) and \
                type(node).__name__ in _NAMESPACE:
            return node.args
        if isinstance(node, sp.Pow):
            return (node.base,) if node.exp.is_Number else node.args
        return ()

    def _record(self, node: sp.Expr, children: tuple) -> None:
        slot = len(self.slots)
        if isinstance(node, sp.Symbol):
            raise ExpectationError(f"the expression uses {node}, which is not an argument "
                                   f"({', '.join(map(str, self.inputs))})")
        if node.is_Number or isinstance(node, sp.NumberSymbol):
            value = float(node)
            self.ops.append((slot, lambda v=value: v, ()))
        elif children:
            if isinstance(node, sp.Add):
                fn = _sum
            elif isinstance(node, sp.Mul):
                fn = _product
            elif isinstance(node, sp.Pow):
                fn = _power(node.exp) if node.exp.is_Number else np.power
            else:
                fn = _NAMESPACE[type(node).__name__]
            self.ops.append((slot, fn, tuple(self.slots[c] for c in children)))
        else:  # anything else: lambdify this node over its free symbols
            free = sorted(node.free_symbols, key=lambda s: s.name)
            missing = [s for s in free if s not in self.slots]
            if missing:
                raise ExpectationError(f"the expression uses {missing[0]}, which is not an "
                                       f"argument ({', '.join(map(str, self.inputs))})")
            self.ops.append((slot, lambdify(free, node), tuple(self.slots[s] for s in free)))
        self.slots[node] = slot

    # ------------------------------------------------------------------ evaluation
    def __call__(self, *values) -> list:
        """The expressions' values on the input arrays ``values`` (broadcast together)."""
        vals = [None] * self.size
        vals[:len(values)] = values
        for (slot, fn, args), free in zip(self.ops, self.release):
            vals[slot] = fn(*[vals[a] for a in args])
            for a in free:
                vals[a] = None
        return [vals[o] for o in self.outputs]
