"""Free symbols, substitution and derivatives of Z expressions, visiting each distinct
subexpression once.

A Z expression is a DAG: the Z of a trained network's vector at step t contains the Z of every
earlier step, each many times (TP IIb App. D.1: every update term carries the backward vectors
of the steps before).  sympy's ``free_symbols``, ``xreplace`` and ``diff`` recurse over the
expression *tree*, whose size grows geometrically with the depth of the nesting; these versions
memoise on the subexpression, so their cost is the size of the DAG.  Their results are those
of sympy (the same expressions, built by the same constructors).  The limit evaluator uses them
on Z expressions (:mod:`tensorprog.limit`), :mod:`.singular` to scan an integrand.
"""
from __future__ import annotations

import sys

import sympy as sp
from sympy.core.function import ArgumentIndexError

__all__ = ["FreeSymbols", "subexpressions", "substitute", "derivative"]


def subexpressions(expr: sp.Basic):
    """The distinct subexpressions of ``expr`` (``expr`` first), each once: what
    ``sympy.preorder_traversal`` visits, without the repetitions."""
    seen = {expr}
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        for a in node.args:
            if a not in seen:
                seen.add(a)
                stack.append(a)


class FreeSymbols:
    """``expr.free_symbols`` with a memo over subexpressions shared by every call."""

    def __init__(self):
        self._memo: dict[sp.Basic, frozenset] = {}

    def __call__(self, expr: sp.Basic) -> frozenset:
        memo = self._memo
        if expr in memo:
            return memo[expr]
        stack = [expr]
        while stack:
            node = stack[-1]
            if node in memo:
                stack.pop()
                continue
            if isinstance(node, sp.Symbol):
                memo[node] = frozenset((node,))
                stack.pop()
                continue
            if not node.args or not isinstance(node, (sp.Add, sp.Mul, sp.Pow, sp.Function)):
                memo[node] = frozenset(node.free_symbols)
                stack.pop()
                continue
            todo = [a for a in node.args if a not in memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            memo[node] = frozenset().union(*(memo[a] for a in node.args))
        return memo[expr]


def substitute(expr: sp.Basic, mapping: dict, free: FreeSymbols) -> sp.Basic:
    """``expr.xreplace(mapping)`` for a mapping of symbols, rebuilding each distinct
    subexpression that contains one of them once."""
    keys = frozenset(mapping)
    memo: dict[sp.Basic, sp.Basic] = {}

    def visit(node):
        if node in memo:
            return memo[node]
        if node in mapping:
            out = mapping[node]
        elif not (free(node) & keys):
            out = node
        elif isinstance(node, (sp.Add, sp.Mul, sp.Pow, sp.Function)):
            out = node.func(*[visit(a) for a in node.args])
        else:
            out = node.xreplace(mapping)
        memo[node] = out
        return out

    return _deep(visit, expr)


def derivative(expr: sp.Expr, s: sp.Symbol, free: FreeSymbols) -> sp.Expr:
    """``sympy.diff(expr, s)`` by the chain rule over the DAG (sums, products, numeric powers
    and functions by ``fdiff``; anything else by ``sympy.diff`` of that node)."""
    memo: dict[sp.Basic, sp.Expr] = {}

    def visit(node):
        if node in memo:
            return memo[node]
        if node == s:
            out = sp.S.One
        elif s not in free(node):
            out = sp.S.Zero
        elif isinstance(node, sp.Add):
            out = sp.Add(*[visit(a) for a in node.args])
        elif isinstance(node, sp.Mul):
            args = node.args
            out = sp.Add(*[sp.Mul(*args[:i], visit(a), *args[i + 1:])
                           for i, a in enumerate(args) if s in free(a)])
        elif isinstance(node, sp.Pow) and node.exp.is_Number:
            b, e = node.args
            out = e * b ** (e - 1) * visit(b)
        elif isinstance(node, sp.Function) and not isinstance(node, sp.Derivative):
            try:
                out = sp.Add(*[node.fdiff(i + 1) * visit(a)
                               for i, a in enumerate(node.args) if s in free(a)])
            except ArgumentIndexError:
                out = sp.diff(node, s)
        else:
            out = sp.diff(node, s)
        memo[node] = out
        return out

    return _deep(visit, expr)


def _deep(visit, expr):
    """``visit(expr)`` with the recursion limit raised for the depth of the nesting."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))
    try:
        return visit(expr)
    finally:
        sys.setrecursionlimit(limit)
