"""Executing a derived limit on two input sets at once: self blocks and cross arrays.

The limit of a pair-local program is derived once, on a *template* of two inputs (one of each
side; :mod:`.layout`).  Its Z expressions, ZDOT terms and NTK terms do not depend on the data;
only the numbers do.  :class:`PairExecutor` evaluates them on inputs ``L`` (N₁ of them) and
``R`` (N₂), keeping for every pair of vectors (a, b) of families with P_a and P_b members per
input

* ``l``: ``E[Z^a(L_i)_p Z^b(L_i)_q]``, an (N₁, P_a, P_b) self block (``r`` likewise on R),
* ``x``: ``E[Z^a(L_i)_p Z^b(R_j)_q]``, the (N₁, N₂, P_a, P_b) cross array,
* ``y``: ``E[Z^a(R_j)_p Z^b(L_i)_q]`` (the other order, needed when a ≠ b),

and every Gaussian expectation reads the k × k covariance of its atoms entry by entry from these
blocks (a :class:`BlockCov`), each entry an array that broadcasts against the pair batch: no
(N₁, N₂, k, k) batch is assembled for closed forms, and two atoms are independent exactly when
their atom groups say so (TP IIb Def. B.3: ZHAT families of different matrices, initial vectors
without a given covariance), never because an array holds zeros.  Limit scalars (ZMOMENT) and
ZDOT coefficients ``E[∂Z^x/∂Ẑ^{Wᵀy}]`` are per-input quantities, (N, P) arrays per side.
Factors without a closed form fall to quadrature (or Monte Carlo) on the dense covariance of
that factor only.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp

from ..errors import ExpectationError
from ..expectations import montecarlo, quadrature
from ..expectations.closed_forms import GaussTerm, evaluate_exact, exact_plan, \
    parameter_symbols, peval
from ..expectations.decompose import plan_expectation
from ..expectations.arraymath import NUMERIC
from ..expectations.canonical import canonical, derivative, expand_products, original_names
from ..ir.instructions import Embedding, Moment, Nonlin, Select
from ..ir.program import SHARED
from ..resources import Progress
from .accumulate import INFINITE_FORM, ZERO, Sum, is_one, linear_sum
from .devices import CPU64, Device
from .fused import evaluate_fused, fused_form, gaussian_form2
from .steps import record_step


class Unsupported(Exception):
    """The executor does not handle this program; the caller evaluates on the union."""


@dataclass
class Block:
    """Self blocks ``l`` (N₁, Pa, Pb), ``r`` (N₂, Pa, Pb) and cross arrays ``x``, ``y``
    (N₁, N₂, Pa, Pb) of one pair of vectors or atom bases (see module docstring)."""

    l: np.ndarray
    r: np.ndarray
    x: np.ndarray
    y: np.ndarray
    scale: float = 1.0

    def swap(self) -> "Block":
        """The block of (b, a)."""
        t = lambda a: np.swapaxes(a, -1, -2)
        return Block(t(self.l), t(self.r), t(self.y), t(self.x), self.scale)

    def read(self, part: str, index) -> np.ndarray:
        """``scale · part[index]`` (``index`` from :func:`_members_index`: a view when the
        members read are one contiguous run each, as for one member per input)."""
        arr = getattr(self, part)
        out = arr[index]
        if self.scale == 1.0:
            return out
        if out.ndim and _fancy(index):          # a copy: scale it
            out *= self.scale
            return out
        return self.scale * out


def _fancy(index) -> bool:
    """Whether a block index of :func:`_members_index` gathers members (then reading copies)."""
    return any(isinstance(i, np.ndarray) for i in index)


class BlockCov:
    """``cov[..., i, j]`` of k atoms, entry by entry: arrays broadcasting against the batch
    (``0.0`` for independent atoms).  Duck-types the (…, k, k) covariance of the closed forms.

    ``keys[i][j]`` names what entry (i, j) is, independently of the expectation reading it
    (the atoms' leaves, slots and sides, and for a linear form the terms summed), or None;
    equal keys within one executor mean equal arrays (:func:`.fused.evaluate_fused` shares
    angles by them)."""

    def __init__(self, entries, batch, keys=None):
        self.entries = entries
        self.k = len(entries)
        self.shape = tuple(batch) + (self.k, self.k)
        self.keys = keys

    def __getitem__(self, key):
        _, i, j = key
        if isinstance(i, (int, np.integer)):
            return self.entries[i][j]
        i, j = np.asarray(i).ravel(), np.asarray(j).ravel()
        keys = None if self.keys is None else [[self.keys[a][b] for b in j] for a in i]
        return BlockCov([[self.entries[a][b] for b in j] for a in i], self.shape[:-2], keys)

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape)
        for i in range(self.k):
            for j in range(self.k):
                out[..., i, j] = self.entries[i][j]
        return out


class PairExecutor:
    """Evaluate covariances of a template limit ``lim`` on inputs ``L`` and ``R``.

    Parameters
    ----------
    lim : Limit
        The limit of the two-input template (:func:`.layout.retarget` of the program).
    members : dict
        Members per input of each family (:attr:`.layout.Layout.members`).
    left, right : dict
        ``{data name: (N, rows·dim) array}`` of each side; ``right`` is ``left`` for the
        symmetric kernel (then ``y`` is the transpose of ``x``).
    device : Device, optional
        Array module and precision of the pair arrays (:mod:`.devices`; default NumPy,
        float64); the data are put there once.
    memo : dict, optional
        Input-independent preparations shared by the executors of one template (its tiles).
    selves : (dict, dict), optional
        Caches of the self blocks of ``left`` and ``right``, shared by executors on the same
        inputs (the tiles of one row or column block).
    """

    #: Evaluate one pair's arc-cosine and erf closed forms with the fused kernels of
    #: :mod:`.fused` (False: the generic closed forms, for comparison).
    fused = True
    #: Record :attr:`temporaries` (the derivation's template does, to size the tiles).
    measure = False
    #: Replay the expectations recorded as :class:`.steps.ExpectationStep` (False: every
    #: expectation on the general path, for comparison).
    steps = True

    def __init__(self, lim, members, left, right=None, device: Device = CPU64, memo=None,
                 selves=(None, None)):
        self.lim = lim
        self.p = lim.program
        self.members = members
        self.sym = right is None
        self.device = device
        left = {k: device.put(v) for k, v in left.items()}
        right = left if right is None else {k: device.put(v) for k, v in right.items()}
        self.data = {"l": left, "r": right}
        self.n = {s: next(iter(d.values())).shape[0] for s, d in self.data.items()}
        self.leaves = lim.leaves
        self._blocks: dict = {}
        self._covs: dict = {}
        self._params: dict = {}
        #: covariance entries read from self blocks, and views of cross arrays, by recipe
        self._reads: dict = {}
        #: θ = arccos ρ of the orthant kernels, by covariance keys (:func:`.fused.evaluate_fused`)
        self._angles: dict = {}
        self.max_error = 0.0
        self.tiers: set = set()
        #: what does not depend on the inputs (symbolic preparations, member maps), shared by
        #: the executors of one template
        self._memo: dict = {} if memo is None else memo
        #: self blocks and limit scalars of each side's inputs (:meth:`_side`), possibly
        #: shared with other executors on the same inputs
        left_own = {} if selves[0] is None else selves[0]
        self._selves = {"l": left_own, "r": left_own if self.sym else
                        ({} if selves[1] is None else selves[1])}
        #: the most numbers per input pair one cross expectation held at once (:meth:`_held`)
        self.temporaries = 0.0
        self.progress = Progress(f"evaluating the limit of {self.p.name!r}", None,
                                 unit="covariances")

    # ------------------------------------------------------------------ structure
    def P(self, family: str) -> int:
        """Members per input of an owned family; all members of an input-independent one."""
        return self.members[family] if family in self.members else self.p.family_size(family)

    def owned(self, family: str) -> bool:
        return family in self.members

    def _family(self, base) -> str:
        return self.p.node(base.node).family if base.node in self.p else SHARED

    def _local(self, leaf, family) -> tuple:
        """(base, base member read by each member of one input of ``family``, base family).
        On the template every input's members read members of the same input, so the first
        input's view is every input's view."""
        key = ("local", leaf, family)
        if key not in self._memo:
            base, index = self.leaves.info[leaf]
            self._memo[key] = (base, np.asarray(index[:self.P(family)]), self._family(base))
        return self._memo[key]

    # ------------------------------------------------------------------ data
    def _rows(self, side, node):
        n = self.p.node(node)
        X = self.data[side][n.data]
        P = self.P(n.family)
        return X.reshape(X.shape[0], P, -1)

    def _embed_block(self, a, b):
        """The block of two embeddings of one weight: ``var·⟨ξ_p, ξ'_q⟩/d + bias`` per pair of
        rows; ``y`` the transpose of ``x`` for an embedding with itself."""
        na = self.p.node(a)
        var, bias = float(na.var), float(na.bias_var)     # Python numbers keep the precision
        rl, rr = (self._rows("l", a), self._rows("r", a))
        sl, sr = (rl, rr) if b == a else (self._rows("l", b), self._rows("r", b))
        d = rl.shape[-1]
        gram = lambda A, B: var * np.einsum("ipd,iqd->ipq", A, B) / d + bias
        cross = lambda A, B: var * np.einsum("ipd,jqd->ijpq", A, B) / d + bias
        x = cross(rl, sr)
        # one vector with itself: y[i, j, p, q] = Σ_d R_jpd L_iqd is x[i, j, q, p], the same
        # products summed in the same order (and the right self block is the left one when
        # the kernel is symmetric)
        y = np.swapaxes(x, 2, 3) if a == b else \
            var * np.einsum("jpd,iqd->ijpq", rr, sl) / d + bias
        left = gram(rl, sl)
        return Block(left, left if self.sym and a == b else gram(rr, sr), x, y)

    # ------------------------------------------------------------------ base covariances
    def base_block(self, A, B):
        """Block of two atom bases, or None when their groups make them independent."""
        key = (A.key, B.key)
        if key in self._blocks:
            return self._blocks[key]
        if (B.key, A.key) in self._blocks:
            other = self._blocks[(B.key, A.key)]
            return None if other is None else other.swap()
        out = None
        if A.kind == B.kind == "init":
            related = A.node == B.node or (A.node, B.node) in self.p.init_cov
            if related:
                na, nb = self.p.node(A.node), self.p.node(B.node)
                if isinstance(na, Embedding) and isinstance(nb, Embedding):
                    out = self._embed_block(A.node, B.node)
                elif not (self.owned(na.family) or self.owned(nb.family)):
                    v = self.device.put(self.p.init_cov_of(A.node, B.node))[None]
                    out = Block(v, v, v[None], v[None])
                else:
                    raise Unsupported(f"initial vector {A.node!r}")
        elif A.kind == B.kind == "zhat" and A.group == B.group:
            W = self.p.node(A.node).matrix
            var = self.lim.matrix_var(W)
            if isinstance(var, np.ndarray):
                raise Unsupported(f"generated matrix {W!r}")
            xa, xb = self.p.args(A.node)[0], self.p.args(B.node)[0]
            c = self.cov(xa, xb)
            out = Block(c.l, c.r, c.x, c.y, float(c.scale * var))
        self._blocks[key] = out
        return out

    # ------------------------------------------------------------------ expectations
    def _entry(self, s, slot_s, t, slot_t, sides, fams):
        """Covariance of leaf s (of ``ea`` if ``slot_s == "a"``, else of ``eb``) and leaf t,
        shaped to broadcast against the batch; None when their groups are independent."""
        return self.read_entry(self._entry_key(s, slot_s, t, slot_t, sides, fams))

    def _entry_key(self, s, slot_s, t, slot_t, sides, fams):
        """The key of :meth:`_entry`'s recipe in the template's preparations."""
        key = ("entry", s, slot_s, t, slot_t, sides, fams)
        if key not in self._memo:
            self._memo[key] = self._entry_recipe(s, slot_s, t, slot_t, sides, fams)
        return key

    def read_entry(self, key):
        """The covariance entry of the recipe ``key`` (:meth:`_entry_key`) on these inputs;
        None when the atoms are independent."""
        return self.read_recipe(self._memo[key])

    def read_recipe(self, recipe):
        """The covariance entry of a recipe of :meth:`_entry_recipe` on these inputs (kept for
        the later reads when it reads a self block or is a view of a cross array)."""
        v = self._reads.get(id(recipe))
        if v is not None:
            return v
        bs, bt, part, index, reshape = recipe
        blk = self.base_block(bs, bt)
        if blk is None:
            return None
        v = blk.read(part, index)
        v = v if reshape is None else v[reshape]
        if part != "x" or (blk.scale == 1.0 and not _fancy(index)):
            self._reads[id(recipe)] = v
        return v

    def _entry_recipe(self, s, slot_s, t, slot_t, sides, fams):
        """How :meth:`_entry` reads its block, the same on every input set: ``(base of s,
        base of t, part, index, reshape)``."""
        bs, ls, fs = self._local(s, fams[slot_s == "b"])
        bt, lt, ft = self._local(t, fams[slot_t == "b"])
        side_s, side_t = sides[slot_s == "b"], sides[slot_t == "b"]
        if side_s == side_t or not (self.owned(fs) and self.owned(ft)):
            side = side_t if not self.owned(fs) else side_s
            if slot_s == slot_t:                 # a variance per member
                index, reshape = (slice(None), ls, lt), [slice(None)] * 2
                reshape.insert(2 if slot_s == "a" else 1, None)
            else:
                index, reshape = _members_index(ls[:, None], lt[None, :]), [slice(None)]
            if sides[0] != sides[1]:             # broadcast against the other side's inputs
                reshape.insert(1 if side == "l" else 0, None)
            return bs, bt, side, index, tuple(reshape) if None in reshape else None
        return bs, bt, "x", _members_index(ls[:, None], lt[None, :]), None

    def _param_values(self, q, slot, sides, fams):
        base, loc, _ = self._local(q, fams[slot == "b"])
        side = sides[slot == "b"]
        v = self.param(base)[side][:, loc]       # (n, members)
        v = v[:, :, None] if slot == "a" else v[:, None, :]
        if sides[0] != sides[1]:
            v = v[:, None] if side == "l" else v[None, :]
        return v

    def _fixed(self, q, family) -> bool:
        """Whether parameter leaf ``q`` has the same values on every input set (a mask, a
        number of the program), not a limit scalar or ZDOT coefficient of the inputs."""
        key = ("fixed", q, family)
        if key not in self._memo:
            base = self._local(q, family)[0]
            kind = base.key.split(":")[0]
            self._memo[key] = kind == "mask" or (
                kind == "param" and not isinstance(self.p.node(base.node), Moment))
        return self._memo[key]

    def expect(self, ea, eb=None, sides=("l", "l"), fams=(SHARED, SHARED)):
        """``E[ea(side₀) eb(side₁)]``: (n, Pa, Pb) on one side, (N₁, N₂, Pa, Pb) across; with
        ``eb`` None, ``E[ea]`` as (n, Pa)."""
        return self._expectation(ea, eb, sides, fams)[0]

    def _expectation(self, ea, eb, sides, fams):
        """:meth:`expect` and whether a step that is exact under mirroring computed it
        (:func:`.steps.mirror_exact`)."""
        if sides[0] != sides[1]:
            batch = (self.n["l"], self.n["r"])
        else:
            batch = (self.n[sides[0]],)
        shape = batch + (self.P(fams[0]), 1 if eb is None else self.P(fams[1]))
        step = self._memo.get(("step", ea, eb, sides, fams))
        out = step.run(self, shape) if step and self.steps and self.fused and \
            not self.measure else None
        mirrored = out is not None and step.mirror
        if out is None:
            out = self._expect(ea, eb, sides, fams, shape)
        # one summing pass finds a NaN or an infinity (an overflowing sum is checked exactly)
        if not np.isfinite(np.sum(out)) and not np.all(np.isfinite(out)):
            what = ea if eb is None else ea * eb
            raise ExpectationError(f"E[{what}] is not finite: check the inputs")
        return (out if eb is not None else out[..., 0]), mirrored

    def _expect(self, ea, eb, sides, fams, shape):
        """:meth:`expect` on the general path (symbolic preparations cached, the rest done on
        every call), recording an :class:`.steps.ExpectationStep` for the later calls."""
        expr, atoms, sides_of, Pa, Pb, (na, nb) = self._prepared(ea, eb)
        atoms = list(atoms)
        k = len(atoms)
        entries = [[ZERO] * k for _ in range(k)]
        keys = [[None] * k for _ in range(k)]
        reads = {}
        context = (sides, fams)
        for r, (s, sl) in enumerate(sides_of):
            for c in range(r, k):
                t, tl = sides_of[c]
                keys[r][c] = keys[c][r] = (frozenset(((s, sl), (t, tl))), context)
                reads[(r, c)] = self._entry_key(s, sl, t, tl, sides, fams)
                v = self.read_entry(reads[(r, c)])
                if v is None:
                    reads[(r, c)] = None
                    continue
                entries[r][c] = entries[c][r] = v
        params = {na.params[q]: self._param_values(q, "a", sides, fams) for q in Pa}
        params.update({nb.params[q]: self._param_values(q, "b", sides, fams) for q in Pb})
        raw = tuple(atoms)
        expr, atoms, entries, keys, nonzero = _collapse(expr, raw, entries, keys, params)
        k = len(atoms)
        zero_var = tuple(bool(np.all(entries[i][i] == 0)) for i in range(k))
        cov = BlockCov(entries, shape, keys)
        cache = {}
        total = Sum(shape, self.device)
        with original_names(na, nb):
            plan = plan_expectation(expr, tuple(atoms), zero_var, frozenset(nonzero))
            if len(plan) > 1:
                fixed = frozenset([na.params[q] for q in Pa if self._fixed(q, fams[0])] +
                                  [nb.params[q] for q in Pb if self._fixed(q, fams[1])])
                sums = self._memo.setdefault(("coefficient sums", ea, eb, sides, fams,
                                              self.device.xp.__name__, str(self.device.dtype)),
                                             {})
                terms = _grouped(plan, params, shape[-2] * shape[-1], fixed, sums)
            else:
                terms = ((_peval(t.coef, params), t.factors) for t in plan)
            for val, factors in terms:
                for f in factors:
                    key = (f.expr, f.index)
                    if key not in cache:
                        cache[key] = self._factor(f, cov[..., list(f.index), list(f.index)],
                                                  params)
                    val = cache[key] if is_one(val) else val * cache[key]
                total.add(val)
        out = total.result()
        if self.measure and sides[0] != sides[1]:
            self._held(entries, cache, out)
        if self.fused and ("step", ea, eb, sides, fams) not in self._memo:
            present = frozenset(rc for rc, v in reads.items() if v is not None)
            raw_expr = self._prepared(ea, eb)[0]
            cells = _collapse_plan(raw_expr, raw, present)[2]
            mirror = _mirror_map(raw_expr, raw, len(sides_of) // 2) \
                if ea == eb and sides[0] != sides[1] and fams[0] == fams[1] else None
            self._memo[("step", ea, eb, sides, fams)] = record_step(
                {rc: v for rc, v in reads.items() if v is not None}, cells, k, zero_var, plan,
                keys, _bilinear, mirror, self._memo.__getitem__)
        return out

    def _held(self, entries, cache, out) -> None:
        """Record the numbers per input pair that one cross expectation holds at once: the
        covariance entries it computed (sums over linear forms, gathered members), its cached
        factors and its result (:attr:`temporaries`, the largest over the expectations)."""
        cached = [b for b in list(self._covs.values()) + list(self._blocks.values()) if b]
        seen = {id(_root(a)) for b in cached for a in (b.l, b.r, b.x, b.y)}
        held = out.size
        for v in [e for row in entries for e in row] + list(cache.values()):
            v = _root(v)
            if np.ndim(v) and id(v) not in seen:
                seen.add(id(v))
                held += v.size
        self.temporaries = max(self.temporaries, held / (self.n["l"] * self.n["r"]))

    def _prepared(self, ea, eb):
        """The symbolic part of :meth:`expect`, the same for every call on a template:
        ``(expr, atoms, (leaf, slot) of each atom, parameter leaves of ea and eb, renamings)``.
        Atoms and parameters are renamed by position (:mod:`..expectations.canonical`), so
        every layer of a deep program shares one plan of each expectation."""
        key = (ea, eb)
        if key not in self._memo:
            A, Pa = self.leaves.split(ea)
            B, Pb = ([], []) if eb is None else self.leaves.split(eb)
            na = canonical(ea, A, Pa)
            nb = canonical(sp.S.One if eb is None else eb, B, Pb, start=(len(A), len(Pa)))
            atoms = na.atoms + nb.atoms
            expr = expand_products(na.expr * nb.expr, atoms)
            sides_of = [(s, "a") for s in A] + [(s, "b") for s in B]
            self._memo[key] = (expr, atoms, sides_of, Pa, Pb, (na, nb))
        return self._memo[key]

    def _factor(self, f, sub, params):
        if _bilinear(f.expr, f.atoms):
            self.tiers.add("exact")
            return sub[..., 0, 1]                # E[x y] = Σ_xy, the entry itself
        plan = exact_plan(f.expr, f.atoms)
        form = fused_form(plan, len(f.atoms)) if plan is not None and self.fused else None
        if form is not None:
            value = evaluate_fused(form, sub, params, self._angles)
            if value is not None:
                self.tiers.add("exact")
                return value
        if plan is not None and all(_entrywise(t) for t in plan.terms):
            self.tiers.add("exact")
            total = 0.0
            for t in plan.terms:
                if isinstance(t, GaussTerm) and t.A is not None:
                    total = total + _gaussian_form(t, sub, params, self.fused)
                    continue
                one = type(plan)(plan.atoms, (t,), plan.has_delta)
                if isinstance(t, GaussTerm):        # Wick moments: sums of entry products
                    total = total + self.device.adopt(evaluate_exact(one, sub, params, NUMERIC))
                    continue
                total = total + self.device.host_factor(
                    lambda c, q: evaluate_exact(one, c, q, NUMERIC), sub, params)
            return total
        return self.device.host_factor(lambda c, q: self._dense_factor(f, plan, c, q),
                                       sub, params)

    def _dense_factor(self, f, plan, sub, params):
        """A factor on the dense covariance of its atoms: a closed form that does not read it
        entry by entry, else quadrature or Monte Carlo (host NumPy)."""
        dense = sub.dense()
        if plan is not None:
            self.tiers.add("exact")
            return evaluate_exact(plan, dense, params, NUMERIC)
        qp = quadrature.quad_plan(f.expr, f.atoms)
        try:
            value, err = quadrature.integrate(qp, dense, params)
            self.tiers.add("quadrature")
        except quadrature.TooManyDimensions:
            value, err = montecarlo.integrate(qp.fn, dense, params, qp.params)
            self.tiers.add("montecarlo")
        self.max_error = max(self.max_error, float(np.max(err, initial=0.0)))
        return value

    # ------------------------------------------------------------------ vectors and scalars
    def cov(self, a: str, b: str) -> Block:
        """The :class:`Block` of program vectors a and b."""
        key, rev = self._cov_keys(a, b)
        if key in self._covs:
            return self._covs[key]
        if rev in self._covs:
            return self._covs[rev].swap()
        za, zb, fams = key[0], key[1], key[2:]
        same = za == zb and fams[0] == fams[1]
        parts, mirrored = self._structured(a, b, need_y=not (same or self.sym)), False
        if parts is not None:
            l, r, x, y = parts
        else:
            self._resolve(a, b)
            own = lambda side: self.expect(za, zb, (side, side), fams)
            l = self._side("l", key, own)
            r = l if self.sym else self._side("r", key, own)
            (x, mirrored), y = self._expectation(za, zb, ("l", "r"), fams), None
        if same and self.sym and not mirrored:      # (a mirrored x is symmetric already)
            x = (x + np.transpose(x, (1, 0, 3, 2))) / 2
        if self.sym:
            y = np.transpose(x, (1, 0, 2, 3))
        elif same:
            y = np.swapaxes(x, 2, 3)
        elif y is None:
            y = np.swapaxes(self.expect(zb, za, ("l", "r"), fams[::-1]), 2, 3)
        dt = self.device.dtype
        out = Block(*(a.astype(dt, copy=False) for a in (l, r, x, y)))
        self._covs[key] = out
        self.progress(len(self._covs))
        return out

    def _structured(self, a: str, b: str, need_y: bool = True):
        """``(l, r, x, y)`` of vectors a, b from blocks of the vectors they are built of, when
        one is a SELECT (member p of ``a = v[σ]`` is member σ(p) of v: the block of (v, b)
        with its rows gathered) or a linear combination ``Σ c_k v_k`` of SELECTs (the sum of
        the blocks of (v_k, b)); None otherwise.  Both are exact (the Z of a SELECT is its
        argument's Z at the selected members, TP IIb Def. B.3), and a global-average-pooling
        readout then reads one expectation over all pairs of positions instead of P²
        separate ones.  Two SELECTs read their arguments' block with both members gathered at
        once (a convolution's shifted copies of a layer: one gather per pair of taps).  ``y``
        is None when not ``need_y`` (the caller transposes x)."""
        sel = [self.p.node(u) if isinstance(self.p.node(u), Select) else None for u in (a, b)]
        if sel[0] is not None and sel[1] is not None:
            sigmas = [np.asarray(n.index[:self.P(n.family)]) for n in sel]
            return _gather2(self.cov(sel[0].arg, sel[1].arg), *sigmas, need_y, self.device)
        for axis, (u, w) in enumerate(((a, b), (b, a))):
            node = sel[axis]
            if node is not None:
                sigma = np.asarray(node.index[:self.P(node.family)])
                pair = (node.arg, w) if axis == 0 else (w, node.arg)
                return _gather(self.cov(*pair), sigma, axis, not need_y, self.device)
        for axis, (u, w) in enumerate(((a, b), (b, a))):
            terms = self._select_combination(u)
            if terms is not None:
                parts = [(c, self.cov(*((v, w) if axis == 0 else (w, v)))) for c, v in terms]
                return tuple(linear_sum([(c * blk.scale, getattr(blk, f)) for c, blk in parts])
                             if f != "y" or not self.sym else None for f in "lrxy")
        return None

    def _select_combination(self, name: str):
        """``[(c_k, v_k)]`` when vector ``name`` is ``Σ c_k v_k`` (numbers c_k) of SELECTs of
        its own family, else None."""
        key = ("select combination", name)
        if key not in self._memo:
            node, terms = self.p.node(name), None
            if isinstance(node, Nonlin) and not node.parameters and node.vectors and all(
                    isinstance(self.p.node(v), Select) and self.p.node(v).family == node.family
                    for v in node.vectors):
                syms = {s.name: s for s in node.expr.free_symbols}
                if set(syms) == set(node.vectors):
                    coefs = [sp.diff(node.expr, syms[v]) for v in node.vectors]
                    rest = sp.expand(node.expr - sum(c * syms[v] for c, v in
                                                     zip(coefs, node.vectors)))
                    if rest == 0 and all(c.is_number for c in coefs):
                        terms = [(float(c), v) for c, v in zip(coefs, node.vectors)]
            self._memo[key] = terms
        return self._memo[key]

    def _resolve(self, a: str, b: str) -> None:
        """Compute, bottom-up with an explicit stack, every covariance the ZHAT atoms of
        ``Z^a`` and ``Z^b`` need (``σ_W² E[Z^x Z^y]`` of the MATMUL inputs), so that a program
        of depth L does not recurse L levels deep (cov → ZHAT block → cov of the layer below)."""
        stack = [(a, b)]
        while stack:
            x, y = stack[-1]
            missing = [d for d in self._zhat_inputs(x, y) if d != (x, y)]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            if (x, y) != (a, b):
                self.cov(x, y)

    def _zhat_inputs(self, x: str, y: str) -> list[tuple[str, str]]:
        """The pairs of MATMUL inputs whose blocks the ZHAT atoms of ``Z^x``, ``Z^y`` need and
        that are not computed yet."""
        key = ("zhat inputs", x, y)
        if key not in self._memo:
            self._memo[key] = self.leaves.zhat_input_pairs(
                self.p, (self.lim.z[x], self.lim.z[y]), {})
        return [pair for pair in self._memo[key] if not self._has_cov(*pair)]

    def _has_cov(self, a: str, b: str) -> bool:
        key, rev = self._cov_keys(a, b)
        return key in self._covs or rev in self._covs

    def _cov_keys(self, a: str, b: str) -> tuple:
        """The keys of the block of vectors (a, b) and of (b, a) in the executor's cache: by
        their Z expressions and families, so that vectors with one Z (a bias's gradient and
        its layer's) share their arrays."""
        memo = ("cov keys", a, b)
        if memo not in self._memo:
            za, zb = self.lim.z[a], self.lim.z[b]
            fams = (self.p.node(a).family, self.p.node(b).family)
            self._memo[memo] = ((za, zb) + fams, (zb, za) + fams[::-1])
        return self._memo[memo]

    def _side(self, side, key, compute):
        """``compute(side)``, a quantity of one input set alone (a self block, a limit
        scalar), cached with that set's inputs: the tiles of one row block share it."""
        cache = self._selves[side]
        if key not in cache:
            cache[key] = compute(side)
        return cache[key]

    def _sides(self, key, compute) -> dict:
        """``{"l": …, "r": …}`` of :meth:`_side` (one computation for the symmetric kernel)."""
        l = self._side("l", key, compute)
        return {"l": l, "r": l if self.sym else self._side("r", key, compute)}

    def param(self, base) -> dict:
        """Values ``{"l": (N₁, P), "r": (N₂, P)}`` of a parameter base (a limit scalar, a mask,
        a ZDOT coefficient)."""
        if base.key in self._params:
            return self._params[base.key]
        kind = base.key.split(":")[0]
        if kind == "param" and isinstance(self.p.node(base.node), Moment):   # ZMOMENT
            fam = self._family(base)
            expr = self.lim.z_of(self.p.node(base.node).expr, self.p.family_size(fam))
            vals = self._sides(base.key, lambda s: self.expect(expr, None, (s, s), (fam, fam)))
        elif kind in ("param", "mask"):
            fam = self._family(base)
            v = self.device.put(np.asarray(base.values, dtype=float)[:self.P(fam)][None, :])
            vals = {"l": v, "r": v}
        elif kind == "coef":
            vals = self._zdot_coef(base)
        else:  # pragma: no cover
            raise Unsupported(base.key)
        if self.sym:
            vals["r"] = vals["l"]
        self._params[base.key] = vals
        return vals

    def _zdot_coef(self, base):
        """``E[∂Z^x/∂Ẑ]`` of a ZDOT term (Remark B.5; Stein's form B.6 where a step is hit)."""
        name = base.node
        x = self.p.args(name)[0]
        leaf = base.key.split(":", 2)[2]
        zx = self.lim.z[x]
        atoms, _ = self.leaves.split(zx)
        s = next(a for a in atoms if a.name == leaf)
        d = derivative(zx, s)
        if not d.has(sp.DiracDelta):
            fam = self.p.node(name).family
            return self._sides(base.key, lambda s: self.expect(d, None, (s, s), (fam, fam)))
        raise Unsupported("Stein-form ZDOT coefficient")




@lru_cache(maxsize=4096)
def linear_forms(expr: sp.Expr, atoms: tuple):
    """Every linear form ``ℓ = Σ_t c_t x_t`` (two atoms or more) that a nonlinearity of ``expr``
    reads (its argument, or the base of a power such as the ``ℓ²`` of ``exp(−ℓ²)``), as a new
    atom: ``(expr', atoms', forms)`` with ``forms[u] = ((t, c_t), …)`` over the
    positions of ``atoms``.  Atoms that then occur nowhere else are dropped.  A Gaussian
    expectation only sees the covariance of the forms, so the closed forms read one variance
    per form instead of regressing the atoms on it."""
    aset = set(atoms)
    position = {a: i for i, a in enumerate(atoms)}
    forms, sub = {}, {}
    apps = [(app, app.args[0], lambda a, x: a.func(x))
            for app in expr.atoms(sp.Function) if len(app.args) == 1]
    apps += [(pw, pw.base, lambda a, x: sp.Pow(x, a.exp)) for pw in expr.atoms(sp.Pow)]
    for app, arg, rebuild in sorted(apps, key=lambda t: sp.default_sort_key(t[0])):
        if not arg.free_symbols & aset:
            continue
        const, rest = arg.as_independent(*atoms, as_Add=True)
        terms = []
        for t in sp.Add.make_args(rest):
            coef, atom = t.as_independent(*atoms, as_Mul=True)
            if atom not in aset:
                break
            terms.append((position[atom], coef))
        else:
            if len(terms) < 2:
                continue
            key = tuple(sorted(terms, key=lambda x: x[0]))
            if key not in forms:
                forms[key] = sp.Symbol(f"u{len(forms)}_{abs(hash(key)) % 10**6}", real=True)
            sub[app] = rebuild(app, const + forms[key])
    if not forms:
        return expr, atoms, ()
    new = expr.xreplace(sub)
    kept = tuple(a for a in atoms if a in new.free_symbols)
    spec = tuple((u, key) for key, u in forms.items())
    return new, kept + tuple(u for u, _ in spec), spec


def _collapse(expr, atoms, entries, keys, params):
    """:func:`linear_forms` applied, with the covariance entries of the new atoms and their
    keys (:class:`BlockCov`: the set of ``(coefficients, entry key)`` terms summed, None when
    a coefficient depends on the inputs)."""
    k = len(atoms)
    present = frozenset((r, c) for r in range(k) for c in range(r, k)
                        if entries[r][c] is not ZERO)
    new, new_atoms, cells = _collapse_plan(expr, atoms, present)
    if cells is None:
        return expr, atoms, entries, keys, {(r, c) for r, c in present if r != c}
    sums = {(r, c): [(_coef(ca, params) * _coef(cb, params), t, j) for ca, cb, t, j in terms]
            for r, c, direct, terms in cells if direct is None}
    numbers = all(np.ndim(w) == 0 for terms in sums.values() for w, _, _ in terms)
    k = len(new_atoms)
    out = [[ZERO] * k for _ in range(k)]
    out_keys = [[None] * k for _ in range(k)]
    nonzero = set()
    for r, c, direct, _ in cells:
        if direct is not None:                       # an entry of the atoms themselves
            v, key = entries[direct[0]][direct[1]], keys[direct[0]][direct[1]]
        else:
            terms = sums[(r, c)]
            v = linear_sum([(w, entries[t][j]) for w, t, j in terms])
            key = frozenset((float(w), keys[t][j]) for w, t, j in terms) \
                if numbers and terms else None
        out[r][c] = out[c][r] = v
        out_keys[r][c] = out_keys[c][r] = key
        if r != c and v is not ZERO:
            nonzero.add((r, c))
    return new, list(new_atoms), out, out_keys, nonzero


@lru_cache(maxsize=4096)
def _collapse_plan(expr: sp.Expr, atoms: tuple, present: frozenset):
    """The input-independent part of :func:`_collapse`: ``(expr', atoms', cells)`` with, for
    every entry ``(r, c)``, ``r ≤ c``, of the new atoms' covariance, ``(r, c, direct,
    terms)``: ``direct = (t, j)`` when it is entry (t, j) of the atoms' covariance, else
    None and ``terms`` the ``(c_a, c_b, t, j)`` of ``Σ c_a c_b Σ_tj`` (coefficients sympy
    expressions or 1.0).  ``present``: the entries (t, j), t ≤ j, of dependent atoms.
    ``cells`` is None when no nonlinearity reads a linear form."""
    new, new_atoms, spec = linear_forms(expr, atoms)
    if not spec:
        return expr, atoms, None
    position = {a: i for i, a in enumerate(atoms)}
    coefs = dict(spec)

    def terms(a, b):
        rows = coefs[a] if a in coefs else [(position[a], 1.0)]
        cols = coefs[b] if b in coefs else [(position[b], 1.0)]
        return tuple((ca, cb, t, j) for t, ca in rows for j, cb in cols
                     if (min(t, j), max(t, j)) in present)

    k = len(new_atoms)
    cells = []
    for r in range(k):
        for c in range(r, k):
            a, b = new_atoms[r], new_atoms[c]
            if a not in coefs and b not in coefs:
                cells.append((r, c, (position[a], position[b]), ()))
            else:
                cells.append((r, c, None, terms(a, b)))
    return new, new_atoms, tuple(cells)


@lru_cache(maxsize=1024)
def _mirror_map(expr: sp.Expr, atoms: tuple, half: int):
    """For ``E[e(side₀) e(side₁)]`` of one expression on both sides, whose atoms are those of
    the first side then their images on the second (``half`` each): ``(raw, new)``, the
    position of each atom's image among ``atoms`` and among the atoms after
    :func:`linear_forms` (None for a form without an image: not the same coefficients)."""
    raw = tuple(t + half if t < half else t - half for t in range(2 * half))
    _, new_atoms, spec = linear_forms(expr, atoms)
    index = {a: i for i, a in enumerate(new_atoms)}
    forms = dict(spec)
    by_terms = {terms: u for u, terms in spec}
    new = []
    for a in new_atoms:
        if a in forms:
            image = by_terms.get(tuple(sorted(((raw[t], c) for t, c in forms[a]),
                                              key=lambda tc: tc[0])))
        else:
            image = atoms[raw[atoms.index(a)]]
        new.append(index.get(image))
    return raw, tuple(new)


def _coef(c, params):
    """A coefficient of :func:`_collapse_plan` evaluated (1.0 stays 1.0)."""
    return c if isinstance(c, float) else _peval(c, params)


def _grouped(plan, params, members: int, fixed=frozenset(), sums=None):
    """The terms of an expectation's plan with equal factors merged: ``(Σ coefficients,
    factors)`` in the order of their first term, each coefficient evaluated when its group is
    reached.  Only coefficients that do not vary with the inputs (numbers, per-member masks:
    parameters of at most ``members`` numbers together) are summed, so a sum is small next to
    the products of factors over the pair batch: a backward vector written as a sum of masked
    copies, ``Σ_p 1[member p]·Z/P`` (a global average pooling's gradient), then costs one
    product of its factors instead of P² of them.  Sums of coefficients whose parameters are
    all ``fixed`` (the same on every input set) are kept in ``sums`` for the next call."""
    groups: dict = {}
    for n, term in enumerate(plan):
        key = tuple((f.expr, f.index) for f in term.factors)
        free = parameter_symbols(term.coef) if isinstance(term.coef, sp.Basic) else ()
        if free and np.prod(np.broadcast_shapes(*(np.shape(params[s]) for s in free))) > members:
            key = (n, key)                            # an input-dependent coefficient: alone
        group = groups.setdefault(key, [[], term.factors, True])
        group[0].append(term.coef)
        group[2] = group[2] and set(free) <= fixed
    for coefs, factors, constant in groups.values():   # no reference kept to a coefficient
        if sums is None or not constant:
            yield _coefficient_sum(coefs, params), factors
            continue
        key = tuple(coefs)
        if key not in sums:
            sums[key] = _coefficient_sum(coefs, params)
        yield sums[key], factors


def _coefficient_sum(coefs, params):
    total = _peval(coefs[0], params)
    for c in coefs[1:]:
        total = total + _peval(c, params)
    return total


def _gather2(block: Block, rows: np.ndarray, cols: np.ndarray, need_y: bool,
             device: Device = CPU64) -> tuple:
    """``(l, r, x, y)`` of ``block`` with the members of its first vector gathered by ``rows``
    and those of its second by ``cols`` in one pass (``−1``: the zero vector; masks put on
    ``device``); ``y`` None unless ``need_y``."""
    index = (Ellipsis, np.maximum(rows, 0)[:, None], np.maximum(cols, 0)[None, :])
    mask = None
    if np.any(rows < 0) or np.any(cols < 0):
        mask = device.put((rows >= 0)[:, None] & (cols >= 0)[None, :])

    def take(arr):
        out = arr[index]
        if mask is not None:
            out = out * mask
        return out if block.scale == 1.0 else block.scale * out

    return (take(block.l), take(block.r), take(block.x), take(block.y) if need_y else None)


def _gather(block: Block, sigma: np.ndarray, axis: int, symmetric: bool,
            device: Device = CPU64) -> tuple:
    """``(l, r, x, y)`` of ``block`` with the members of its first (``axis`` 0) or second
    vector gathered by ``σ`` (``−1``: the zero vector; ``σ`` on the host, the mask put on
    ``device``); ``y`` None when ``symmetric``."""
    index = np.maximum(sigma, 0)
    mask = None if np.all(sigma >= 0) else device.put(sigma >= 0)
    if mask is not None and axis == 0:
        mask = mask[:, None]

    def take(arr):
        out = arr[..., index, :] if axis == 0 else arr[..., index]
        if mask is not None:
            out = out * mask
        return out if block.scale == 1.0 else block.scale * out

    return (take(block.l), take(block.r), take(block.x),
            None if symmetric else take(block.y))


def _root(a):
    """The array that owns the memory of a view (``a`` itself if it owns it)."""
    while hasattr(getattr(a, "base", None), "shape"):
        a = a.base
    return a


def _peval(expr, params):
    """:func:`peval` with numbers cached (most coefficients are numbers)."""
    if isinstance(expr, sp.Basic) and expr.free_symbols:
        return peval(expr, params, NUMERIC)
    return _number(expr)


@lru_cache(maxsize=8192)
def _number(expr):
    return NUMERIC.c(expr)


@lru_cache(maxsize=4096)
def _bilinear(expr, atoms) -> bool:
    """Whether a factor is the product ``x·y`` of its two atoms."""
    return len(atoms) == 2 and expr == atoms[0] * atoms[1]


def _members_index(rows, cols) -> tuple:
    """The index ``[..., rows, cols]`` of a block, as slices when the members read are one
    contiguous run each (then reading is a view)."""
    if _is_run(rows) and _is_run(cols):
        return Ellipsis, _run(rows), _run(cols)
    return Ellipsis, rows, cols


def _is_run(index) -> bool:
    """Whether an index array (a column or a row) reads one contiguous run of members."""
    flat = np.asarray(index).ravel()
    return len(flat) > 0 and bool(np.all(np.diff(flat) == 1)) and flat[0] >= 0


def _run(index):
    flat = np.asarray(index).ravel()
    return slice(int(flat[0]), int(flat[0]) + len(flat))


def _entrywise(term) -> bool:
    """Whether a closed-form term reads its covariance entry by entry: every kink term, and the
    Gaussian forms ``c·exp(xᵀAx + c₀)`` of at most three atoms (:func:`_gaussian_form`)."""
    if not isinstance(term, GaussTerm) or term.A is None:
        return True
    constant = len(term.poly) == 1 and not any(term.poly[0][0])
    return constant and term.b is None and len(term.A) <= 3


def _gaussian_form(term, cov, params, fused=True):
    """``E[c·exp(xᵀAx + c₀)] = c·e^{c₀}·det(I − 2ΣA)^{−1/2}`` (completing the square, TP IIb
    App. B's Gaussian integrals), the determinant expanded entry by entry (two atoms: by the
    fused kernel of :mod:`.fused` unless ``fused`` is False)."""
    k = len(term.A)
    A = [[peval(term.A[i][j], params, NUMERIC).real for j in range(k)] for i in range(k)]
    coef = peval(term.coef, params, NUMERIC) * np.real(np.exp(peval(term.c, params, NUMERIC)))
    if fused and k == 2 and not any(np.ndim(a) for row in A for a in row):
        number = np.ndim(coef) == 0
        det = gaussian_form2(cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1], A,
                             float(np.real(coef)) if number else 1.0)
        if det is not None:
            if np.isnan(det).any():
                raise ExpectationError(INFINITE_FORM)
            return det if number else np.real(coef) * det
    M = [[(1.0 if i == j else 0.0) - 2 * sum(cov[..., i, l] * A[l][j] for l in range(k))
          for j in range(k)] for i in range(k)]
    # ΣA is similar to the symmetric Σ^{1/2}AΣ^{1/2}, so I − 2ΣA has real eigenvalues; they
    # are all positive exactly when their elementary symmetric functions are (trace, sum of
    # the principal 2 × 2 minors, determinant)
    minor = lambda i, j: M[i][i] * M[j][j] - M[i][j] * M[j][i]
    sym = [sum(M[i][i] for i in range(k))]
    if k >= 2:
        sym.append(sum(minor(i, j) for i in range(k) for j in range(i + 1, k)))
    if k == 3:
        sym.append(M[0][0] * minor(1, 2) - M[0][1] * (M[1][0] * M[2][2] - M[1][2] * M[2][0])
                   + M[0][2] * (M[1][0] * M[2][1] - M[1][1] * M[2][0]))
    if any(np.any(e <= 0) for e in sym):
        raise ExpectationError(INFINITE_FORM)
    return np.real(coef) / np.sqrt(sym[-1])
