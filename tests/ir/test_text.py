"""The textual form: TP IIb Algorithm 1 style, and an exact round trip through the parser."""
import numpy as np
import pytest

import tensorprog as tp


def test_readme_mlp_text(mlp):
    text = str(mlp)
    assert "INPUT:  h1 := embed(X1, var=2.0, bias_var=0.1)" in text
    assert "MATMUL: h2 := W1 x1" in text
    assert "NONLIN: x1 := relu(h1)" in text
    assert "OUTPUT: readout(" in text


def test_round_trip_mlp(mlp):
    q = tp.Program.from_text(mlp.to_text())
    assert q == mlp
    assert q.to_text() == mlp.to_text()


def test_round_trip_general_program():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 4))
    p = tp.Program("general")
    u = p.vector("u", A @ A.T)
    v = p.vector("v", 0.3 * np.eye(4) + 0.7, cross={"u": 0.1 * np.ones((4, 4))})
    s = p.scalar("s", 0.30000000000000004)
    W = p.matrix("W", 1.7)
    b = p.bias("b", 0.25)
    y = W @ tp.gelu(u * s + v)
    z = W.T @ tp.leaky_relu(y + b, 0.2)
    th = tp.moment(lambda a, c: a * c, z, u)
    w = tp.sigmoid(z) * th + tp.erf(y) / 3
    p.output(w, var=1.5, bias_var=0.0, trainable=False)
    q = tp.Program.from_text(p.to_text())
    assert q == p
    assert tp.Program.from_text(q.to_text()).to_text() == p.to_text()


def test_data_can_be_supplied_separately(mlp):
    text = str(mlp)  # without DATA lines
    with pytest.raises(tp.ParseError, match="no data for 'X1'"):
        tp.Program.from_text(text)
    q = tp.Program.from_text(text, data={"X1": mlp.data["X1"]})
    assert q == mlp
