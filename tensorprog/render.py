"""Drawing a program in the graphical notation of Tensor Programs IIb (Figs. 1–7).

=====================  =================================================================
glyph                  meaning
=====================  =================================================================
empty circle           G-var: an initial vector or a MATMUL result
filled circle          X-var: a NONLIN result
square                 scalar: an initial scalar or a MOMENT result
dashed edge, label W   MATMUL ``h := W x`` (``Wᵀ`` for ``h := Wᵀ x``)
grey edge, label [·]   SELECT ``x' := x[index]`` (the view keeps the glyph of ``x``)
gate (D shape)         NONLIN ``x := ψ(…)``: solid edges from its arguments into the gate,
                       one from the gate into the result; ψ is printed under the gate
bar-gate               MOMENT ``θ := avg ψ(…)`` (TP IIb App. C), ending in a square
double ring → f(ξ)     the readout vector ``x`` of ``f(ξ) = v·x/√n``
=====================  =================================================================

Computation runs left to right.  :func:`diagram` builds the drawing as a ``networkx`` graph
with a layered layout (nodes placed by topological generation, initial objects just before
their first use, each layer ordered by the barycentre of its predecessors); :func:`render`
draws it with matplotlib (Agg) into a PNG, SVG or PDF file.  Matrices are not nodes: they label
the dashed edges, and a line under the title lists their variances.
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx

from .errors import ProgramError, TensorProgError
from .ir.instructions import (Embedding, InitialMatrix, InitialScalar, InitialVector, MatMul,
                              Moment, Nonlin, Select)
from .ir.rules import RuleTable
from .ir.text import expr_to_text

#: File types :func:`render` writes, by suffix.
FORMATS = (".png", ".svg", ".pdf")

#: Node kinds of the drawing (``diagram(p).nodes[v]["kind"]``).
VARIABLE_KINDS = ("gvar", "xvar", "scalar")
OUTPUT = "out:f"

_PSI_CHARS = 22  # longer ψ labels are shortened with an ellipsis


def _gate_name(name: str) -> str:
    """Drawing node of the gate producing ``name`` (``:`` cannot occur in a variable name)."""
    return f"gate:{name}"


def _kind(program, node) -> str:
    """The glyph of a program variable: ``"gvar"``, ``"xvar"`` or ``"scalar"``."""
    if isinstance(node, Select):  # a re-indexed view keeps the glyph of what it views
        return _kind(program, program.node(node.arg))
    if node.is_xvar:
        return "xvar"
    return "gvar" if node.is_vector else "scalar"


def _short(text: str) -> str:
    return text if len(text) <= _PSI_CHARS else text[: _PSI_CHARS - 1] + "…"


#: ``DRAW(record, drawing, program)`` adds the record's variable, gate and edges.
DRAW = RuleTable("render")


@DRAW.rule(InitialMatrix)
def _(node, d, program) -> None:
    """Matrices label the MATMUL edges instead of being drawn."""


def _variable(node, d, program) -> None:
    d.add_node(node.name, kind=_kind(program, node), label=node.name, readout=False)


DRAW.rule(Embedding, InitialVector, InitialScalar)(_variable)


@DRAW.rule(MatMul)
def _(node: MatMul, d, program) -> None:
    _variable(node, d, program)
    d.add_edge(node.arg, node.name, style="matmul", label=node.label)


@DRAW.rule(Nonlin, Moment)
def _(node, d, program) -> None:
    _variable(node, d, program)
    gate = _gate_name(node.name)
    d.add_node(gate, kind="gate" if isinstance(node, Nonlin) else "bargate",
               label=_short(expr_to_text(node.expr)))
    for arg in node.args:
        d.add_edge(arg, gate, style="arg", label="")
    for s in node.scalars:
        d.add_edge(s, gate, style="scalar", label="")
    d.add_edge(gate, node.name, style="arg", label="")


@DRAW.rule(Select)
def _(node: Select, d, program) -> None:
    _variable(node, d, program)
    d.add_edge(node.arg, node.name, style="select", label="[·]")


def diagram(program) -> nx.DiGraph:
    """The drawing of ``program`` as a directed graph with a layout.

    Nodes: every vector and scalar of the program under its own name (``kind`` ``"gvar"``,
    ``"xvar"`` or ``"scalar"``; ``readout=True`` on the readout vector), a gate per NONLIN and
    MOMENT (``kind`` ``"gate"`` or ``"bargate"``, ``label`` the printed ψ) and, when the program
    has an output, the node ``"out:f"`` (``kind`` ``"output"``).  Edges carry ``style``:
    ``"matmul"`` (``label`` the matrix, with ``ᵀ``), ``"arg"`` (into or out of a gate),
    ``"scalar"`` (a scalar θ into a gate), ``"select"`` or ``"readout"``.  Every node has
    ``layer`` (int) and ``pos`` (x, y) with x the layer.
    """
    program.validate()
    d = nx.DiGraph(name=program.name)
    for node in program.nodes():
        DRAW(node, d, program)
    if program.readout is not None:
        d.nodes[program.readout.node]["readout"] = True
        d.add_node(OUTPUT, kind="output", label="f(ξ)")
        d.add_edge(program.readout.node, OUTPUT, style="readout", label="v")
    _layout(d, program.order)
    return d


def _layout(d: nx.DiGraph, order: list[str]) -> None:
    """Assign ``layer`` and ``pos`` (see :func:`diagram`)."""
    layer = {}
    for k, generation in enumerate(nx.topological_generations(d)):
        for v in generation:
            layer[v] = k
    # Initial vectors and scalars sit just before their first use, not all in column 0.
    for v in d.nodes:
        if d.in_degree(v) == 0 and d.out_degree(v) > 0:
            layer[v] = min(layer[s] for s in d.successors(v)) - 1
    rank = {v: i for i, v in enumerate(order)}

    def program_rank(v):
        if v == OUTPUT:
            return len(order)
        return rank[v.split(":", 1)[1] if v.startswith("gate:") else v]

    columns: dict[int, list] = {}
    for v in d.nodes:
        columns.setdefault(layer[v], []).append(v)
    # Order each column by the barycentre of the already-placed predecessors (one sweep);
    # nodes without placed predecessors keep the program order among themselves.
    index: dict = {}
    for k in sorted(columns):
        def key(v):
            placed = [index[u] for u in d.predecessors(v) if u in index]
            centre = sum(placed) / len(placed) if placed else float("inf")
            return (centre, program_rank(v))

        columns[k].sort(key=key)
        for i, v in enumerate(columns[k]):
            index[v] = i - (len(columns[k]) - 1) / 2
    first = min(columns) if columns else 0
    for v in d.nodes:
        d.nodes[v]["layer"] = layer[v] - first
        d.nodes[v]["pos"] = (float(layer[v] - first), 0.0 - index[v])


# ---------------------------------------------------------------------- drawing
# Marker sizes (points²) and the radius (points) arrows stop short of.
_SIZE = {"gvar": 420, "xvar": 420, "scalar": 380, "gate": 260, "bargate": 260, "output": 0}
_RADIUS = {"gvar": 11, "xvar": 11, "scalar": 11, "gate": 9, "bargate": 10, "output": 16}
_RING = 900  # size of the readout's outer ring
_RING_RADIUS = 16


def _radius(drawn: dict) -> float:
    """Radius of a drawn node (its data in the drawing graph)."""
    return _RING_RADIUS if drawn.get("readout") else _RADIUS[drawn["kind"]]
_EDGE = {
    "matmul": dict(linestyle="--", color="0.15", linewidth=1.2),
    "arg": dict(linestyle="-", color="0.15", linewidth=1.1),
    "scalar": dict(linestyle=":", color="0.35", linewidth=1.0),
    "select": dict(linestyle="-", color="0.45", linewidth=1.0),
    "readout": dict(linestyle="-.", color="0.15", linewidth=1.2),
}


def _gate_marker(bar: bool):
    """A logic-gate glyph pointing right (flat back, round front); with a bar behind it for
    MOMENT (the "bar-gate" of TP IIb App. C)."""
    import numpy as np
    from matplotlib.path import Path as MPath

    theta = np.linspace(-np.pi / 2, np.pi / 2, 17)
    arc = np.column_stack([0.5 * np.cos(theta), 0.5 * np.sin(theta)])
    verts = [(-0.5, -0.5), *map(tuple, arc), (-0.5, 0.5), (-0.5, -0.5)]
    codes = [MPath.MOVETO] + [MPath.LINETO] * (len(verts) - 2) + [MPath.CLOSEPOLY]
    if bar:
        verts += [(-0.75, -0.5), (-0.75, 0.5)]
        codes += [MPath.MOVETO, MPath.LINETO]
    return MPath(verts, codes)


def _figure(d: nx.DiGraph):
    """A figure sized to the number of layers and the tallest layer."""
    from matplotlib.figure import Figure

    layers = [d.nodes[v]["layer"] for v in d.nodes] or [0]
    counts: dict[int, int] = {}
    for k in layers:
        counts[k] = counts.get(k, 0) + 1
    width = min(40.0, max(5.0, 1.25 * (max(layers) + 1) + 1.5))
    height = min(40.0, max(3.5, 1.0 * max(counts.values()) + 2.0))
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot(1, 1, 1)


def _draw_edges(ax, d: nx.DiGraph) -> None:
    """Arrows in the style of each edge kind, with their labels (the matrices) at midpoints."""
    for u, v, e in d.edges(data=True):
        (x0, y0), (x1, y1) = d.nodes[u]["pos"], d.nodes[v]["pos"]
        style = _EDGE[e["style"]]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=1,
                    arrowprops=dict(arrowstyle="-|>", mutation_scale=10,
                                    shrinkA=_radius(d.nodes[u]), shrinkB=_radius(d.nodes[v]),
                                    **style))
        if e["label"]:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, e["label"], fontsize=9, ha="center",
                    va="center", zorder=4,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))


def _draw_nodes(ax, d: nx.DiGraph) -> None:
    """Glyphs and labels of the nodes; a double ring on the readout; the f(ξ) box."""
    style = {
        "gvar": dict(marker="o", facecolors="white", edgecolors="black"),
        "xvar": dict(marker="o", facecolors="black", edgecolors="black"),
        "scalar": dict(marker="s", facecolors="white", edgecolors="black"),
        "gate": dict(marker=_gate_marker(False), facecolors="white", edgecolors="black"),
        "bargate": dict(marker=_gate_marker(True), facecolors="white", edgecolors="black"),
    }
    for kind, kw in style.items():
        nodes = [v for v in d.nodes if d.nodes[v]["kind"] == kind]
        if not nodes:
            continue
        xs, ys = zip(*(d.nodes[v]["pos"] for v in nodes))
        ax.scatter(xs, ys, s=_SIZE[kind], linewidths=1.3, zorder=3, **kw)
        below = kind in ("gate", "bargate")  # ψ under a gate, names above the variables
        for v in nodes:
            text = (dict(xytext=(0, -14), va="top", fontsize=7, family="monospace") if below
                    else dict(xytext=(0, _radius(d.nodes[v]) + 2), va="bottom", fontsize=9))
            ax.annotate(d.nodes[v]["label"], d.nodes[v]["pos"], textcoords="offset points",
                        ha="center", zorder=4, **text)
    readout = [d.nodes[v]["pos"] for v in d.nodes if d.nodes[v].get("readout")]
    if readout:
        xs, ys = zip(*readout)
        ax.scatter(xs, ys, s=_RING, marker="o", facecolors="none", edgecolors="black",
                   linewidths=1.3, zorder=2)
    if OUTPUT in d:
        x, y = d.nodes[OUTPUT]["pos"]
        ax.text(x, y, d.nodes[OUTPUT]["label"], fontsize=10, ha="center", va="center", zorder=4,
                bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor="black"))


def _legend(ax, d: nx.DiGraph, program) -> None:
    """A legend of the glyphs the drawing uses, and the matrices' variances above it."""
    from matplotlib.lines import Line2D

    def glyph(marker, face, label):
        return Line2D([], [], marker=marker, linestyle="", markersize=9, markerfacecolor=face,
                      markeredgecolor="black", label=label)

    def edge(style, label):
        return Line2D([], [], label=label, **_EDGE[style])

    entries = {
        "gvar": glyph("o", "white", "G-var (initial / MATMUL)"),
        "xvar": glyph("o", "black", "X-var (NONLIN)"),
        "gate": glyph(_gate_marker(False), "white", "NONLIN gate"),
        "scalar": glyph("s", "white", "scalar"),
        "bargate": glyph(_gate_marker(True), "white", "MOMENT bar-gate"),
        "matmul": edge("matmul", "MATMUL"),
        "select": edge("select", "SELECT"),
        "readout": edge("readout", "readout"),
    }
    used = {k for _, k in d.nodes(data="kind")} | {s for *_, s in d.edges(data="style")}
    handles = [h for key, h in entries.items() if key in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02),
              ncol=min(len(handles), 4), fontsize=8, frameon=False)
    matrices = [f"{m.name} ~ N(0, S/n) generated" if program.is_generated(m.name)
                else f"{m.name} ~ N(0, {m.var:g}/n)" for m in program.nodes("matrix")]
    if matrices:
        ax.text(0.5, 1.01, "matrices: " + ",  ".join(matrices), transform=ax.transAxes,
                ha="center", va="bottom", fontsize=8)


def _draw(d: nx.DiGraph, program, title: str):
    """The matplotlib figure of the drawing ``d``."""
    fig, ax = _figure(d)
    _draw_edges(ax, d)
    _draw_nodes(ax, d)
    _legend(ax, d, program)
    ax.set_title(title, fontsize=11, pad=18)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xticks([])
    ax.set_yticks([])
    xs, ys = zip(*(d.nodes[v]["pos"] for v in d.nodes))
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)  # room for the labels around the glyphs
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.7)
    return fig


def render(program, path, title: str | None = None) -> nx.DiGraph:
    """Draw ``program`` in the graphical notation of TP IIb (Figs. 1–7) into ``path``.

    G-vars, X-vars and scalars get their glyphs, NONLIN and MOMENT their gates, MATMUL edges are
    labelled with their matrix (see the module docstring and :func:`diagram`).

    Parameters
    ----------
    program : Program
        The program to draw.
    path : str or pathlib.Path
        The file to write, ending in ``.png``, ``.svg`` or ``.pdf``.
    title : str, optional
        The figure's title (default: the program's name).

    Returns
    -------
    networkx.DiGraph
        The drawn graph (:func:`diagram`), with a ``pos`` and ``layer`` per node.

    Raises
    ------
    TensorProgError
        On another file ending, a missing matplotlib, or a file that cannot be written.
    ProgramError
        When the program has nothing to draw.

    Example
    -------
    >>> p = tp.Program("demo")
    >>> h = p.embed(np.eye(2), var=2.0)
    >>> f = p.output(tp.relu(p.matrix("W", var=2.0) @ tp.relu(h)), var=2.0)
    >>> d = tp.render(p, "demo.svg")
    >>> list(d.nodes)
    ['h1', 'x1', 'gate:x1', 'h2', 'x2', 'gate:x2', 'out:f']
    >>> d.nodes["h1"]["kind"], d.nodes["h1"]["pos"]
    ('gvar', (0.0, 0.0))
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise TensorProgError(
            f"cannot render to {str(path)!r}: the file name must end in {', '.join(FORMATS)}")
    try:
        import matplotlib  # noqa: F401  (only to give a clear error when it is missing)
    except ImportError:
        raise TensorProgError("rendering needs matplotlib: pip install matplotlib") from None
    d = diagram(program)
    if len(d) == 0:
        raise ProgramError(f"program {program.name!r} has no vectors or scalars to draw")
    fig = _draw(d, program, title if title is not None else f"program {program.name!r}")
    try:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    except OSError as e:
        raise TensorProgError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
    return d
