"""The per-input structure of a program, and the same program on other inputs.

This is the one place where the kernel compiler reads instruction data out of a program
(families, SELECT indices, embedding data, readout slots).  A program written for N inputs is a
*template repeated N times* when every input owns the same number P_F of members of each family
F, every SELECT maps member l of an input to member ``σ(l)`` of the *same* input with the same
map σ for every input, and the readout slots follow one pattern per input.  The kernel entry of
a pair of inputs then depends on those two inputs only (TP IIb Def. 4.2: the outputs of
different inputs meet only through the Gaussian initial vectors), and :func:`retarget` writes
the program again for any other inputs.

Programs whose inputs interact (a SELECT that reads another input's members, e.g. BatchNorm's
batch statistics) and programs holding input-indexed arrays that were computed outside them
(a generated matrix's covariance, a given vector family's covariance) have no such template:
:func:`layout` raises :class:`~tensorprog.errors.ProgramError` saying why.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ProgramError
from ..ir.instructions import Embedding, InitialMatrix, InitialVector, Select
from ..ir.program import SHARED, Family, Program


@dataclass(frozen=True)
class Layout:
    """The template of a program's per-input structure.

    ``members[F]`` is P_F (members of family F per input), ``select[name]`` the per-input map σ
    of each SELECT (−1: the zero vector), ``slots`` the per-input readout slots (or None), and
    ``data[name] = (rows, dim)`` the shape of one input's share of each data array,
    ``aliases[name]`` the data array of ``data`` that each of the program's data names holds
    (embeddings of one array under several weights, e.g. a GRU's gates, read one input), and
    ``views[name]`` how a data array is computed from the inputs as the caller gives them (a
    CNN's patches from its images: :class:`~tensorprog.nn.convolution.ImagePatches`).
    """

    members: dict
    select: dict
    slots: tuple | None
    data: dict
    aliases: dict
    views: dict = field(default_factory=dict)

    def share(self, name: str) -> int:
        """Numbers per input of data array ``name`` as the caller gives it."""
        if name in self.views:
            return int(np.prod(self.views[name].shape))
        rows, dim = self.data[name]
        return rows * dim

    def input_size(self) -> int:
        """Numbers per input, all data arrays together."""
        return sum(self.share(name) for name in self.data)


def _local_rank(owner: np.ndarray) -> np.ndarray:
    """Position of each member among the members of its input, in member order."""
    order = np.argsort(owner, kind="stable")
    rank = np.empty(len(owner), dtype=np.intp)
    counts = np.bincount(owner)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(len(owner)) - np.repeat(starts, counts)
    return rank


def layout(p: Program) -> Layout:
    """The per-input template of ``p`` (see module docstring).

    Raises
    ------
    ProgramError
        When the kernel entry of a pair of inputs is not a function of those two inputs alone,
        naming the instruction that prevents it.
    """
    from ..kernels.lift import needs_lift

    if needs_lift(p):
        raise ProgramError("its inputs interact (a SELECT reads members of other inputs, e.g. "
                           "batch statistics): its kernels are evaluated on the union of the "
                           "inputs")
    N = p.num_inputs
    members, ranks = {}, {}
    for name, fam in p.families.items():
        if fam.owner is None:
            continue
        counts = np.bincount(fam.owner, minlength=N)
        if not np.all(counts == counts[0]):
            raise ProgramError(f"family {name!r} gives the inputs different numbers of members "
                               f"({counts.min()} to {counts.max()})")
        members[name] = int(counts[0])
        ranks[name] = _local_rank(fam.owner)
    select = {}
    for node in p.nodes():
        where = f"{node.kind.upper()} {node.name!r}"
        if isinstance(node, InitialMatrix) and node.generated:
            raise ProgramError(f"{where} has an input covariance computed outside the program; "
                               "build the program on the new inputs instead", where)
        if isinstance(node, InitialVector) and node.family != SHARED:
            raise ProgramError(f"{where} has an input covariance computed outside the program; "
                               "build the program on the new inputs instead", where)
        if isinstance(node, Select):
            select[node.name] = _select_pattern(p, node, ranks, where)
    slots = None
    r = p.require_output()
    if r.slots is not None:
        fam = p.get_family(p.node(r.node).family)
        slots = _per_input(np.asarray(r.slots), fam.owner, ranks[fam.name], "readout slots")
    data, aliases = {}, {}
    for node in p.nodes("vector"):
        if isinstance(node, Embedding):
            name = node.data
            X = p.data[name]
            same = [k for k in data if p.data[k] is X]
            aliases[name] = same[0] if same else name
            if not same:
                data[name] = (members.get(node.family, 1), X.shape[1])
    views = {name: p.input_views[name] for name in data if name in p.input_views}
    return Layout(members, select, None if slots is None else tuple(slots), data, aliases, views)


def _per_input(values: np.ndarray, owner: np.ndarray, rank: np.ndarray, what: str):
    """The per-input pattern of ``values`` over a family's members; the same for every input."""
    P = int(rank.max()) + 1
    pattern = np.full((owner.max() + 1, P), -2, dtype=np.intp)
    pattern[owner, rank] = values
    if np.any(pattern != pattern[:1]):
        raise ProgramError(f"the {what} differ from input to input")
    return pattern[0]


def _select_pattern(p: Program, node, ranks: dict, where: str) -> np.ndarray:
    src = p.get_family(p.node(node.arg).family)
    dst = p.get_family(node.family)
    index = node.index
    if dst.owner is None:
        raise ProgramError(f"{where} selects members of the inputs into a shared vector", where)
    if src.owner is None:
        return np.where(index >= 0, 0, -1)
    local = np.where(index >= 0, ranks[src.name][np.maximum(index, 0)], -1)
    return _per_input(local, dst.owner, ranks[dst.name], f"index of {where}")


def split_inputs(lay: Layout, X) -> dict:
    """The data arrays of the program for new inputs ``X``: a dict ``{data name: array}`` or
    one array of N inputs whose numbers per input are the data arrays' shares in program order
    (e.g. (N, d) for an MLP, (N, T, d) for a sequence), a data array with a view
    (:attr:`Layout.views`) given as the view takes it: images (N, P, C) or (N, H, W, C) for a
    CNN, whose patches the view computes.
    Returns ``{data name: (N, rows·dim) array}`` for every data name of the program."""
    if isinstance(X, dict):
        if set(X) != set(lay.data):
            raise ProgramError(f"inputs must give the data arrays {sorted(lay.data)}, got "
                               f"{sorted(X)}")
        return _with_aliases(lay, {name: _data(lay, name, X[name]) for name in lay.data})
    if len(lay.data) == 1 and lay.views:                  # one array in its own shape
        name = next(iter(lay.data))
        return _with_aliases(lay, {name: _data(lay, name, X)})
    X = np.asarray(X, dtype=float)
    if X.ndim == 0 or X.size == 0:
        raise ProgramError(f"inputs must be a non-empty array (N, ...), got shape {X.shape}")
    flat = X.reshape(X.shape[0], -1)
    if flat.shape[1] != lay.input_size():
        raise ProgramError(f"each input must hold {lay.input_size()} numbers (data arrays "
                           f"{ {k: v for k, v in lay.data.items()} } as (rows, dim) per input), "
                           f"got shape {X.shape}")
    out, col = {}, 0
    for name in lay.data:
        part = flat[:, col:col + lay.share(name)]
        if name in lay.views:
            part = part.reshape((len(part),) + tuple(lay.views[name].shape))
        out[name] = _data(lay, name, part)
        col += lay.share(name)
    return _with_aliases(lay, out)


def _data(lay: Layout, name: str, X) -> np.ndarray:
    """Data array ``name`` of the inputs ``X`` (computed by its view, if it has one)."""
    rows, dim = lay.data[name]
    if name in lay.views:
        X = lay.views[name](X)
    return _rows(np.asarray(X, dtype=float), rows, dim, name)


def _with_aliases(lay: Layout, data: dict) -> dict:
    return {name: data[primary] for name, primary in lay.aliases.items()}


def _rows(X, rows, dim, name):
    """One input per row, its ``rows × dim`` numbers flattened."""
    if X.ndim < 1 or X.size == 0 or X.size // X.shape[0] != rows * dim:
        raise ProgramError(f"data {name!r} needs {rows} row(s) of dimension {dim} (numbers "
                           f"{rows * dim}) per input, got shape {X.shape}")
    X = X.reshape(X.shape[0], rows * dim)
    if not np.all(np.isfinite(X)):
        raise ProgramError(f"data {name!r} contains NaN or infinity")
    return X


def retarget(p: Program, lay: Layout, data: dict) -> Program:
    """``p`` written again for the inputs ``data`` (from :func:`split_inputs`): families,
    SELECT indices, readout slots and embedding covariances rebuilt from the template."""
    N = next(iter(data.values())).shape[0]
    q = p.copy()
    q.num_inputs = N
    for name, P in lay.members.items():
        q.families[name] = Family(name, N * P, np.repeat(np.arange(N), P))
    base = {name: np.arange(N)[:, None] * P for name, P in lay.members.items()}
    for name, sigma in lay.select.items():
        node = q.node(name)
        src = q.node(node.arg).family
        if src == SHARED:
            index = np.broadcast_to(sigma, (N, len(sigma)))
        else:
            index = np.where(sigma[None, :] >= 0, base[src] + sigma[None, :], -1)
        q.graph.nodes[name]["node"] = replace(
            node, index=np.ascontiguousarray(index.ravel(), dtype=np.intp))
    if lay.slots is not None:
        q.readout = replace(q.readout, slots=tuple(np.tile(lay.slots, N).tolist()))
    rows = {name: data[name].reshape(-1, dim) for name, (_, dim) in lay.data.items()}
    q.data = {name: rows[primary] for name, primary in lay.aliases.items()}
    embeds = [n for n in q.nodes("vector") if isinstance(n, Embedding)]
    names = {n.name for n in embeds}
    q.init_cov = {k: v for k, v in p.init_cov.items() if not set(k) & names}
    for a in embeds:
        for b in embeds:
            if a.weight == b.weight and a.name != b.name:
                Xa, Xb = q.data[a.data], q.data[b.data]
                q.init_cov[(a.name, b.name)] = \
                    a.var * Xa @ Xb.T / Xa.shape[1] + a.bias_var
    return q


__all__ = ["Layout", "layout", "split_inputs", "retarget"]
