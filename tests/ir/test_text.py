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


MLP_TEXT = """PROGRAM strict inputs=2
INPUT:  h1 := embed(X1, var=2.0, bias_var=0.1)
MATRIX: W1 ~ N(0, 2.0/n)
NONLIN: x1 := relu(h1)
MATMUL: h2 := W1 x1
NONLIN: x2 := relu(h2)
OUTPUT: readout(x2, var=1.0, bias_var=0.0)
DATA:   X1 = [[1.0, 0.5], [0.25, -1.0]]
"""


def _with(old, new):
    assert old in MLP_TEXT
    return MLP_TEXT.replace(old, new)


def test_strict_text_parses_the_reference():
    p = tp.Program.from_text(MLP_TEXT)
    assert tp.Program.from_text(p.to_text()) == p


@pytest.mark.parametrize("old, new, line, key", [
    ("W1 ~ N(0, 2.0/n)", "W1 ~ N(0, 2.0/n); trainabel=False", 3, "trainabel"),
    ("bias_var=0.1)", "bias_vr=5.0)", 2, "bias_vr"),
    ("readout(x2, var=1.0, bias_var=0.0)", "readout(x2, varr=1)", 7, "varr"),
    ("NONLIN: x1 := relu(h1)", "NONLIN: x1 := relu(h1); trainable=False", 4, "trainable"),
])
def test_unknown_keys_are_named_with_the_valid_ones(old, new, line, key):
    with pytest.raises(tp.ParseError, match=rf"line {line}.*unknown \w+ '{key}'; valid"):
        tp.Program.from_text(_with(old, new))


def test_second_data_line_for_one_name():
    text = MLP_TEXT + "DATA:   X1 = [[1.0, 0.5], [0.25, -1.0]]\n"
    with pytest.raises(tp.ParseError, match=r"line 9.*second DATA line for 'X1'"):
        tp.Program.from_text(text)


@pytest.mark.parametrize("value", ["[[1.0, 0.5], [0.25, 1j]]", "[[1.0, 0.5], [0.25, float('nan')]]",
                                   "[[1.0, 0.5], [0.25, 1e999]]", "[[1.0, 0.5], [0.25, 'a']]"])
def test_data_must_be_finite_and_real(value):
    text = MLP_TEXT.replace("[[1.0, 0.5], [0.25, -1.0]]", value)
    with pytest.raises(tp.ParseError, match=r"line 8.*DATA"):
        tp.Program.from_text(text)
