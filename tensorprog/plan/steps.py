"""Prepared expectations: one template expectation as a flat list of array operations.

An expectation ``E[ea(side₀) eb(side₁)]`` of the pair executor (:meth:`.pairs.PairExecutor.
expect`) goes through symbolic work on every call: the atoms' covariance entries read from
their blocks, the linear forms a nonlinearity reads collapsed into atoms
(:func:`.pairs._collapse_plan`), the decomposition into factors
(:func:`..expectations.decompose.plan_expectation`) and the choice of a closed form for each
factor.  None of it depends on the inputs, so the first evaluation on a template records it as
an :class:`ExpectationStep`: which block part each covariance entry reads (block, part,
members), which entries a linear form sums and with which numbers, the fused kernel of each
factor with its numeric table and its angle key (:mod:`.fused`), the numeric coefficients of
the terms.  Every later evaluation (every call and tile) replays that list: no symbolic
expression is touched, no closed form chosen again, and the array operations are those of the
general path in the same order, so the values are the same bit for bit.

A step is recorded only when every coefficient is a number and every factor is the entry
itself (``E[x y] = Σ_xy``), a fused bivariate closed form, or a Gaussian form of two atoms;
other expectations (parameters that depend on the inputs, quadrature, Monte Carlo, the generic
closed forms) stay on the general path.  A step whose recorded zero-variance pattern does not
match the inputs' (an atom of variance 0 on every input of a call) hands the expectation back
to the general path too.
"""
from __future__ import annotations

import numpy as np

from ..errors import ExpectationError
from ..expectations.closed_forms import GaussTerm, exact_plan, peval
from ..expectations.arraymath import NUMERIC
from .accumulate import INFINITE_FORM, ZERO, Sum, is_one, linear_sum
from .fused import ERF_ERF, GAUSS, ORTHANT, _numeric_table, fused_form, is_array, \
    pair_kernel

#: Factor kinds of a step: the covariance entry itself, a fused kernel of two atoms.
ENTRY, FUSED = "entry", "fused"


class ExpectationStep:
    """One expectation of a template with its input-independent work done.

    Parameters
    ----------
    reads : tuple
        ``(base A, base B, part, index, reshape)`` of every covariance entry read from a
        block (:meth:`.pairs.PairExecutor._entry_recipe`), read by
        :meth:`.pairs.PairExecutor.read_recipe`.
    cells : tuple
        ``(r, c, read, terms)`` of the covariance of the (collapsed) atoms: entry (r, c) is
        ``reads[read]`` when ``read`` is not None, else ``Σ w · reads[i]`` over ``terms``
        (``(w, i)``, numbers); entries not listed are 0 (independent atoms).
    k : int
        Number of (collapsed) atoms.
    zero_var : tuple
        Which atoms had variance 0 when the step was recorded.
    factors : tuple
        ``(ENTRY, i, j)`` or ``(FUSED, kind, (i, j, j'), coef, table, angle key)``: the atoms
        a factor reads (``i, j`` of the entry, ``S₁₁ = (i, i)``, ``S₁₂ = (i, j)``,
        ``S₂₂ = (j, j)``) and the fused kernel's arguments (:func:`.fused.pair_kernel`).
    terms : tuple
        ``(coef, (factor, …))`` of the expectation's decomposition.
    mirror : bool
        Whether ``E[e(L_i) e(R_j)]`` of one expression ``e`` on both sides comes out exactly
        symmetric when the two input sets are one and the blocks it reads are symmetric
        (:func:`mirror_exact`).
    """

    __slots__ = ("reads", "cells", "k", "zero_var", "factors", "terms", "mirror")

    def __init__(self, reads, cells, k, zero_var, factors, terms, mirror=False):
        self.reads, self.cells, self.k = reads, cells, k
        self.zero_var, self.factors, self.terms = zero_var, factors, terms
        self.mirror = mirror

    def run(self, ex, shape):
        """The expectation on the executor ``ex``'s inputs, an array of ``shape`` (the batch
        and the two member axes); None when the inputs leave the recorded pattern (the
        caller then takes the general path)."""
        read = [ex.read_recipe(recipe) for recipe in self.reads]
        entries = [[ZERO] * self.k for _ in range(self.k)]
        for r, c, i, terms in self.cells:
            entries[r][c] = entries[c][r] = read[i] if i is not None else \
                linear_sum([(w, read[t]) for w, t in terms])
        for i, zero in enumerate(self.zero_var):
            if _zero(entries[i][i]) != zero:
                return None
        values = [None] * len(self.factors)
        total = Sum(shape, ex.device)
        for coef, factors in self.terms:
            val = coef
            for f in factors:
                if values[f] is None:
                    values[f] = _factor(self.factors[f], entries, ex)
                    if values[f] is None:
                        return None
                val = values[f] if is_one(val) else val * values[f]
            total.add(val)
        ex.tiers.add("exact")
        return total.result()


def _zero(v) -> bool:
    """``np.all(v == 0)`` (a variance that is 0 on every input; NaN is not 0)."""
    return not v.any() if isinstance(v, np.ndarray) else bool(np.all(v == 0))


def _factor(op, entries, ex):
    """The value of one factor of a step (None: an entry is not an array on these inputs)."""
    if op[0] == ENTRY:
        return entries[op[1]][op[2]]
    _, kind, (i, j), coef, table, angle = op
    S11, S12, S22 = entries[i][i], entries[i][j], entries[j][j]
    if not all(is_array(s) for s in (S11, S12, S22)):
        return None
    shape = np.broadcast_shapes(S11.shape, S12.shape, S22.shape)
    value = pair_kernel(kind, S11, S12, S22, table, shape, coef, ex._angles, angle)
    if kind == GAUSS and np.isnan(np.sum(value)):
        raise ExpectationError(INFINITE_FORM)
    return value


def record_step(reads, cells, k, zero_var, terms, keys, bilinear, mirror=None,
                resolve=None):
    """An :class:`ExpectationStep` of an expectation evaluated on the general path, or None
    when some part of it is not a number or a prepared factor (module docstring).

    Parameters
    ----------
    reads : dict
        Keys of the block recipes of the covariance entries of the atoms, by ``(t, j)``,
        t ≤ j (absent: independent atoms).
    cells : tuple or None
        :func:`.pairs._collapse_plan`'s cells (None: the atoms are not collapsed).
    k : int
        Number of atoms after collapsing.
    zero_var : tuple
        The zero-variance pattern the decomposition was made for.
    terms : tuple
        The decomposition (:func:`..expectations.decompose.plan_expectation`).
    keys : list
        The covariance keys of the collapsed atoms (angle caching, :class:`.pairs.BlockCov`).
    bilinear : callable
        Whether a factor is the product of its two atoms (:func:`.pairs._bilinear`).
    mirror : tuple, optional
        For ``E[e(side₀) e(side₁)]`` of one expression on both sides: the raw atoms' mirror
        positions (atom t of the first side is atom ``mirror[0][t]`` of the second) and the
        collapsed atoms' (``mirror[1]``, None where a form has no mirror image).
    resolve : callable, optional
        The block recipe of an entry key (:meth:`.pairs.PairExecutor._entry_recipe`; by
        default the keys are the recipes).

    Returns
    -------
    ExpectationStep or None
    """
    slots: dict = {}

    def slot(recipe):
        return slots.setdefault(recipe, len(slots))

    prepared = []
    if cells is None:
        for (t, j), recipe in reads.items():
            prepared.append((t, j, slot(recipe), ()))
    else:
        for r, c, direct, summed in cells:
            if direct is not None:
                t, j = min(direct), max(direct)
                if reads.get((t, j)) is not None:
                    prepared.append((r, c, slot(reads[(t, j)]), ()))
                continue
            ws = []
            for ca, cb, t, j in summed:
                wa, wb = _number(ca), _number(cb)
                if wa is None or wb is None:
                    return None
                w = wa * wb
                if np.ndim(w) or isinstance(w, complex):
                    return None
                ws.append((w, slot(reads[(min(t, j), max(t, j))])))
            if ws:
                prepared.append((r, c, None, tuple(ws)))
    factors, index, out = [], {}, []
    for term in terms:
        coef = _number(term.coef)
        if coef is None:
            return None
        ids = []
        for f in term.factors:
            key = (f.expr, f.index)
            if key not in index:
                op = _factor_op(f, keys, bilinear)
                if op is None:
                    return None
                index[key] = len(factors)
                factors.append(op)
            ids.append(index[key])
        out.append((coef, tuple(ids)))
    order = [k if resolve is None else resolve(k) for k in sorted(slots, key=slots.get)]
    exact = mirror is not None and mirror_exact(cells, reads, factors, *mirror)
    return ExpectationStep(tuple(order), tuple(prepared), k, tuple(zero_var), tuple(factors),
                           tuple(out), exact)


def mirror_exact(cells, reads, factors, raw, new) -> bool:
    """Whether a step of ``E[e(L_i) e(R_j)]`` (one expression on both sides) gives, on one
    input set (L = R), an array that is symmetric bit for bit, given symmetric blocks.

    That holds when every factor reads an atom and its mirror image (the same leaf or linear
    form on the other side) through a kernel symmetric in its two variances — the entry
    itself, an arc-cosine moment with equal powers, erf·erf (whose normalisers round as their
    mirror images, :func:`.fused._erf`), a Gaussian form with ``A₀₀ = A₁₁`` — and every
    covariance entry the factors read is built alike on both sides: the cross entry of an
    atom and its image sums only products of an atom and its own image (then it is a sum of
    symmetric arrays), and the variance of an image sums the images of the terms of the
    variance, in the same order.  Each array operation then treats entry (i, j) as entry
    (j, i), so the symmetrisation of the symmetric kernel's cross array (``(x + xᵀ)/2``) can
    be left out without changing a bit.

    Parameters
    ----------
    cells : tuple or None
        :func:`.pairs._collapse_plan`'s cells (None: the atoms are not collapsed).
    reads : dict
        The raw entries read, by ``(t, j)``, t ≤ j (absent: independent atoms).
    factors : list
        The step's factor operations.
    raw, new : list
        Mirror positions of the raw and of the collapsed atoms (``record_step``).

    Returns
    -------
    bool
    """
    if cells is None:
        cells = tuple((t, j, (t, j), ()) for t, j in reads)
    terms = {}
    for r, c, direct, summed in cells:
        if direct is not None:
            terms[(r, c)] = ((None, None, min(direct), max(direct)),) \
                if (min(direct), max(direct)) in reads else ()
        else:
            terms[(r, c)] = summed
    image = lambda t: raw[t]
    for op in factors:
        i, j = op[1:3] if op[0] == ENTRY else op[2]
        if new[i] != j or not _symmetric(op):
            return False
        for t, cb, ts, js in terms.get((min(i, j), max(i, j)), ()):
            if image(ts) != js and image(js) != ts:          # a product of two atoms
                return False
        if op[0] == ENTRY:
            continue
        var_i, var_j = terms.get((i, i), ()), terms.get((j, j), ())
        if len(var_i) != len(var_j) or any(
                (a[0], a[1]) != (b[0], b[1]) or (image(a[2]), image(a[3])) != (b[2], b[3])
                for a, b in zip(var_i, var_j)):
            return False
    return True


def _symmetric(op) -> bool:
    """Whether a factor's kernel is symmetric in its two atoms (:func:`mirror_exact`)."""
    if op[0] == ENTRY:
        return True
    _, kind, _, _, table, _ = op
    if kind == ORTHANT:
        return bool(np.all(table[:, 1] == table[:, 2]))
    if kind == GAUSS:
        return table[0, 0] == table[0, 2]
    return kind == ERF_ERF


def _number(expr):
    """A coefficient as the general path evaluates it, or None when it is not a number."""
    from .pairs import _coef

    if isinstance(expr, float):
        return expr
    if getattr(expr, "free_symbols", None):
        return None
    return _coef(expr, {})


def _factor_op(f, keys, bilinear):
    """The prepared form of a factor, the same choice as :meth:`.pairs.PairExecutor._factor`
    (None: a factor the step does not prepare)."""
    idx = f.index
    if bilinear(f.expr, f.atoms):
        return ENTRY, idx[0], idx[1]
    plan = exact_plan(f.expr, f.atoms)
    if plan is None:
        return None
    form = fused_form(plan, len(f.atoms))
    if form is not None:
        numbers = _numeric_table(form)
        if numbers is None:
            return None
        kind, (i, j), _, _ = form
        coef, table = numbers
        i, j = idx[i], idx[j]
        angle = None
        if kind == 0 and None not in (keys[i][i], keys[i][j], keys[j][j]):
            angle = (frozenset((keys[i][i], keys[j][j])), keys[i][j])
        return FUSED, kind, (i, j), coef, table, angle
    if len(plan.terms) != 1 or len(f.atoms) != 2:
        return None
    term = plan.terms[0]
    if not (isinstance(term, GaussTerm) and term.A is not None and term.b is None and
            len(term.poly) == 1 and not any(term.poly[0][0])):
        return None
    parts = [term.coef, term.c] + [a for row in term.A for a in row]
    if any(getattr(p, "free_symbols", None) for p in parts):
        return None
    A = [[peval(term.A[r][c], {}, NUMERIC).real for c in range(2)] for r in range(2)]
    coef = peval(term.coef, {}, NUMERIC) * np.real(np.exp(peval(term.c, {}, NUMERIC)))
    if np.ndim(coef):
        return None
    table = np.array([[A[0][0], A[0][1], A[1][1], 0.0, 0.0, 0.0]])
    return FUSED, GAUSS, (idx[0], idx[1]), float(np.real(coef)), table, None
