"""Gaussian atoms and deterministic parameters: the leaves of every Z expression.

Every Z of a program is a deterministic function of finitely many *atoms* (docs/theory.md §2):

* ``init`` atoms, one family per initial vector (ZINIT), jointly Gaussian with the program's
  initial covariances;
* ``zhat`` atoms ``Ẑ^{Wx}``, one family per MATMUL (ZHAT); atoms of the same matrix and
  orientation are jointly Gaussian with ``Cov(Ẑ^{Wx}_i, Ẑ^{Wy}_j) = σ_W² E[Z^x_i Z^y_j]`` and
  independent of everything else (``Wᵀ`` counts as another matrix);

and of deterministic *parameters*: limit scalars θ̊ (ZMOMENT), initial scalars, and the ZDOT
coefficients ``E[∂Z^x/∂Ẑ^{Wᵀy}]``.

Each base is a *family* indexed like the inputs (size N) or shared (size 1).  A Z expression
of a family of size m refers to base families through *leaves* ``(base, index)`` with
``index`` an int array of length m: coordinate i of the expression uses member ``index[i]`` of
the base.  The natural index is the identity (same family) or all zeros (a shared base
broadcast over the inputs).  A leaf is a sympy Symbol; :class:`LeafTable` maps symbols back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..expectations.dag import FreeSymbols, substitute


@dataclass(eq=False)
class Base:
    """A family of atoms (``kind`` in {"init", "zhat"}) or of parameters (``"param"``).

    ``group`` names the independence class of an atom family: all initial vectors share
    ``"init"``; a ZHAT family has its matrix name, with ``"^T"`` for the transpose.  ``node`` is
    the program variable it belongs to, ``values`` the numbers of a parameter family.
    """

    key: str
    kind: str
    size: int
    display: str
    group: str | None = None
    node: str | None = None
    values: np.ndarray | None = None


class LeafTable:
    """The leaves ``(base, index)`` of Z expressions, as sympy symbols (see module docstring)."""

    def __init__(self):
        self._bases: dict[str, Base] = {}
        self._by_key: dict[tuple, sp.Symbol] = {}
        self._names: set[str] = set()
        self.info: dict[sp.Symbol, tuple[Base, np.ndarray]] = {}
        self.free = FreeSymbols()

    def add_base(self, base: Base) -> Base:
        self._bases[base.key] = base
        return base

    def base(self, key: str) -> Base:
        return self._bases[key]

    def leaf(self, base: Base, index: np.ndarray) -> sp.Symbol:
        index = np.asarray(index, dtype=np.intp)
        key = (base.key, index.tobytes())
        sym = self._by_key.get(key)
        if sym is None:
            natural = (len(index) == base.size and np.array_equal(index, np.arange(base.size))) \
                or (base.size == 1 and not index.any())
            # the natural leaf keeps the base's name; other views (and a shared base seen from
            # a second family size) get a numbered one: a symbol is one (base, index) pair
            name = base.display
            if not natural or name in self._names:
                name = f"{base.display}[{len(self._by_key)}]"
            self._names.add(name)
            sym = sp.Symbol(name, real=True)
            self._by_key[key] = sym
            self.info[sym] = (base, index)
        return sym

    def natural(self, base: Base, size: int) -> sp.Symbol:
        """The leaf of ``base`` in an expression of a family of ``size`` members."""
        if base.size == size:
            return self.leaf(base, np.arange(size))
        if base.size == 1:
            return self.leaf(base, np.zeros(size, dtype=np.intp))
        raise ValueError(f"cannot broadcast a family of {base.size} onto {size}")

    def split(self, expr: sp.Expr) -> tuple[list[sp.Symbol], list[sp.Symbol]]:
        """The atom leaves and parameter leaves of ``expr``, in a deterministic order."""
        syms = sorted((s for s in self.free(expr) if s in self.info), key=lambda s: s.name)
        atoms = [s for s in syms if self.info[s][0].kind != "param"]
        params = [s for s in syms if self.info[s][0].kind == "param"]
        return atoms, params

    def zhat_input_pairs(self, program, exprs, done) -> list[tuple[str, str]]:
        """The pairs of MATMUL inputs (names in ``program``) whose covariance the ZHAT atoms of
        the expressions ``exprs`` need: one pair per two ZHAT bases of one group whose key pair
        (either order) is not in ``done``."""
        bases = {}
        for expr in exprs:
            for s in self.split(expr)[0]:
                base = self.info[s][0]
                if base.kind == "zhat":
                    bases[base.key] = base
        bases = list(bases.values())
        out = []
        for i, p in enumerate(bases):
            for q in bases[i:]:
                if p.group == q.group and (p.key, q.key) not in done \
                        and (q.key, p.key) not in done:
                    out.append((program.args(p.node)[0], program.args(q.node)[0]))
        return out

    def reindex(self, expr: sp.Expr, index: np.ndarray) -> sp.Expr:
        """Compose every leaf's index with ``index``: the expression of member ``index[i]``,
        seen from a family whose member i it feeds."""
        index = np.asarray(index, dtype=np.intp)
        sub = {}
        for s in self.free(expr):
            if s in self.info:
                base, idx = self.info[s]
                sub[s] = self.leaf(base, idx[index])
        return substitute(expr, sub, self.free)


def zhat_key(name: str) -> str:
    """Key of the Ẑ atom base of MATMUL ``name`` in the limit's leaf table."""
    return f"zhat:{name}"


def init_key(name: str) -> str:
    """Key of the Gaussian atom base of initial vector ``name`` in the limit's leaf table."""
    return f"init:{name}"
