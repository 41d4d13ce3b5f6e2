"""The graphical notation of TP IIb (Figs. 1–7): tensorprog.render."""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.render import OUTPUT, VARIABLE_KINDS, diagram, render


@pytest.fixture
def attention_like():
    """A program with a transpose, a MOMENT and a scalar argument: every glyph."""
    X = np.random.default_rng(1).standard_normal((3, 4))
    p = tp.Program("glyphs")
    h = p.embed(X, var=1.0)
    W = p.matrix("W", var=1.0)
    y = W @ tp.relu(h)
    z = W.T @ tp.tanh(y)
    th = (z * z).mean(name="th")
    p.output(tp.nonlin(lambda a, s: a * s, z, scalars=[th]), var=1.0)
    return p


def _kinds(d):
    kinds = [k for _, k in d.nodes(data="kind")]
    return {k: kinds.count(k) for k in set(kinds)}


def test_mlp_glyphs(mlp):
    d = diagram(mlp)
    kinds = _kinds(d)
    assert kinds["gvar"] == len(mlp.nodes("vector")) + len(mlp.nodes("matmul"))
    assert kinds["xvar"] == len(mlp.nodes("nonlin"))
    assert kinds["gate"] == len(mlp.nodes("nonlin"))
    assert kinds["output"] == 1
    # one drawn node per vector and scalar of the program (matrices label the edges)
    variables = [v for v, k in d.nodes(data="kind") if k in VARIABLE_KINDS]
    assert sorted(variables) == sorted(n.name for n in mlp.nodes() if n.kind != "matrix")
    matmul_labels = sorted(e["label"] for *_, e in d.edges(data=True) if e["style"] == "matmul")
    assert matmul_labels == ["W1", "W2"]
    assert d.nodes[mlp.readout.node]["readout"] and d.has_edge(mlp.readout.node, OUTPUT)


def test_layers_follow_the_computation(mlp):
    d = diagram(mlp)
    for u, v in d.edges:
        assert d.nodes[u]["pos"][0] < d.nodes[v]["pos"][0]
    positions = [d.nodes[v]["pos"] for v in d.nodes]
    assert len(set(positions)) == len(positions)  # no two glyphs on top of each other


def test_transpose_moment_and_scalar(attention_like):
    d = diagram(attention_like)
    kinds = _kinds(d)
    assert kinds["scalar"] == 1 and kinds["bargate"] == 1
    labels = {e["label"] for *_, e in d.edges(data=True) if e["style"] == "matmul"}
    assert labels == {"W", "Wᵀ"}
    assert any(e["style"] == "scalar" for *_, e in d.edges(data=True))


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_render_writes_file(tmp_path, mlp, suffix):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"mlp{suffix}"
    d = render(mlp, path, title="MLP")
    assert path.stat().st_size > 1000
    head = path.read_bytes()[:200]
    assert head.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in path.read_bytes()
    assert len(d) == len(diagram(mlp))


def test_render_every_glyph(tmp_path, attention_like):
    pytest.importorskip("matplotlib")
    render(attention_like, tmp_path / "glyphs.png")
    assert (tmp_path / "glyphs.png").stat().st_size > 1000


def test_render_rejects_unknown_format(tmp_path, mlp):
    with pytest.raises(tp.TensorProgError, match="must end in"):
        render(mlp, tmp_path / "mlp.jpg")
