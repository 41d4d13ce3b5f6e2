"""Golden printed forms of programs (``print(p)``, TP IIb Algorithm 1 style): the printer's
output for the programs of tests/golden_programs.py is kept verbatim, and each parses back to an
equal program."""
import pytest

import tensorprog as tp

from ..golden_programs import PROGRAMS

PRINTED = {
    "mlp": """\
PROGRAM mlp inputs=6
INPUT:  h1 := embed(X1, var=2.0, bias_var=0.1)   # X1: 6×5
MATRIX: W1 ~ N(0, 2.0/n)
VECTOR: b1 ~ N(0, 0.1); bias
NONLIN: x1 := relu(h1)
MATMUL: h2 := W1 x1
MATRIX: W2 ~ N(0, 2.0/n)
VECTOR: b2 ~ N(0, 0.1); bias
NONLIN: x2 := relu(b1 + h2)
MATMUL: h3 := W2 x2
NONLIN: x3 := relu(b2 + h3)
OUTPUT: readout(x3, var=2.0, bias_var=0.1)
""",
    "zdot": """\
PROGRAM zdot inputs=0
VECTOR: x ~ N(0, 1.0)
MATRIX: W ~ N(0, 2.0/n)
MATMUL: h1 := W x
NONLIN: x1 := tanh(h1)
MATMUL: h2 := W^T x1
MOMENT: th1 := avg(h2*x)
""",
    "rnn": """\
PROGRAM rnn-relu-last inputs=2
INPUT:  U_x1 := embed(X1, var=1.0, bias_var=0.1, weight=U)   # X1: 2×2
NONLIN: x1 := relu(U_x1)
INPUT:  U_x2 := embed(X2, var=1.0, bias_var=0.1, weight=U)   # X2: 2×2
MATRIX: W ~ N(0, 1.0/n)
MATMUL: h1 := W x1
NONLIN: x2 := relu(U_x2 + h1)
INPUT:  U_x3 := embed(X3, var=1.0, bias_var=0.1, weight=U)   # X3: 2×2
MATMUL: h2 := W x2
NONLIN: x3 := relu(U_x3 + h2)
OUTPUT: readout(x3, var=1.0, bias_var=0.1)
""",
    "cnn": """\
PROGRAM cnn1d inputs=2
FAMILY: pos owner=O_pos
INPUT:  h1 := embed(X1, var=2.0, bias_var=0.1, family=pos)   # X1: 8×6
MATRIX: W_conv2_0 ~ N(0, 0.6666666666666666/n)
NONLIN: x1 := relu(h1)
SELECT: conv2_s1 := x1[I_conv2_s1] in pos
MATMUL: h2 := W_conv2_0 conv2_s1
MATRIX: W_conv2_1 ~ N(0, 0.6666666666666666/n)
MATMUL: h3 := W_conv2_1 x1
MATRIX: W_conv2_2 ~ N(0, 0.6666666666666666/n)
SELECT: conv2_s3 := x1[I_conv2_s3] in pos
MATMUL: h4 := W_conv2_2 conv2_s3
VECTOR: b_conv2 ~ N(0, 0.1); bias
NONLIN: x2 := relu(b_conv2 + h2 + h3 + h4)
SELECT: pool1 := x2[I_pool1] in inputs
SELECT: pool2 := x2[I_pool2] in inputs
SELECT: pool3 := x2[I_pool3] in inputs
SELECT: pool4 := x2[I_pool4] in inputs
NONLIN: x3 := pool1/4 + pool2/4 + pool3/4 + pool4/4
OUTPUT: readout(x3, var=2.0, bias_var=0.1)
""",
}



@pytest.mark.parametrize("name", sorted(PRINTED))
def test_printed_form(name):
    assert str(PROGRAMS[name]()) == PRINTED[name]


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_printed_form_parses_back(name):
    p = PROGRAMS[name]()
    q = tp.Program.from_text(p.to_text())
    assert q == p and str(q) == PRINTED[name]


def test_to_text_adds_only_the_data():
    """``to_text()`` is the printed form without the shape comments, plus one DATA line per
    input array (none for the ZDOT program)."""
    assert PROGRAMS["zdot"]().to_text() == PRINTED["zdot"]
    lines = PROGRAMS["mlp"]().to_text().splitlines()
    data = [line for line in lines if line.startswith("DATA:")]
    assert [line for line in lines if line not in data] == \
        [line.split("   # ")[0] for line in PRINTED["mlp"].splitlines()]
    assert [line.split(" = ")[0] for line in data] == ["DATA:   X1"]
