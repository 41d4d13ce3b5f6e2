"""Golden printed forms of Master-Theorem limits (``print(tp.limit(p))``,
tensorprog/limit/printing.py) for the programs of tests/golden_programs.py, kept verbatim: the
Z of every vector by its rule (ZINIT, ZNONLIN⁺, ZHAT, ZDOT, SELECT views), limit scalars and ZDOT
coefficients with their values."""
import pytest

import tensorprog as tp

from ..golden_programs import PROGRAMS

PRINTED = {
    "mlp": """\
Master-Theorem limit of program 'mlp' (6 inputs; Z expressions hold for every input ξ_i)
  Z^{h1} = Gaussian atom (ZINIT)
  Z^{b1} = Gaussian atom (ZINIT)
  Z^{x1} = relu(Z^{h1})
  Z^{h2} = Ẑ^{W1 x1}
  Z^{b2} = Gaussian atom (ZINIT)
  Z^{x2} = relu(Z^{b1} + Z^{h2})
  Z^{h3} = Ẑ^{W2 x2}
  Z^{x3} = relu(Z^{b2} + Z^{h3})""",
    "zdot": """\
Master-Theorem limit of program 'zdot' (no inputs; Z expressions hold for every input ξ_i)
  Z^{x} = Gaussian atom (ZINIT)
  Z^{h1} = Ẑ^{W x}
  Z^{x1} = tanh(Z^{h1})
  Z^{h2} = Ẑ^{Wᵀ x1} + 2.0·c1·Z^{x}
  θ̊_th1 = E[Z^{h2}*Z^{x}] = 0.960049
ZDOT coefficients:
  c1 = E[∂Z^{x1}/∂Ẑ^{W x}] = 0.480024""",
    "rnn": """\
Master-Theorem limit of program 'rnn-relu-last' (2 inputs; Z expressions hold for every input ξ_i)
  Z^{U_x1} = Gaussian atom (ZINIT)
  Z^{x1} = relu(Z^{U_x1})
  Z^{U_x2} = Gaussian atom (ZINIT)
  Z^{h1} = Ẑ^{W x1}
  Z^{x2} = relu(Z^{U_x2} + Z^{h1})
  Z^{U_x3} = Gaussian atom (ZINIT)
  Z^{h2} = Ẑ^{W x2}
  Z^{x3} = relu(Z^{U_x3} + Z^{h2})""",
    "cnn": """\
Master-Theorem limit of program 'cnn1d' (2 inputs; Z expressions hold for every input ξ_i)
  Z^{h1} = Gaussian atom (ZINIT)
  Z^{x1} = relu(Z^{h1})
  Z^{conv2_s1} = Z^{x1}[index] in pos (SELECT)
  Z^{h2} = Ẑ^{W_conv2_0 conv2_s1}
  Z^{h3} = Ẑ^{W_conv2_1 x1}
  Z^{conv2_s3} = Z^{x1}[index] in pos (SELECT)
  Z^{h4} = Ẑ^{W_conv2_2 conv2_s3}
  Z^{b_conv2} = Gaussian atom (ZINIT)
  Z^{x2} = relu(Z^{b_conv2} + Z^{h2} + Z^{h3} + Z^{h4})
  Z^{pool1} = Z^{x2}[index] in inputs (SELECT)
  Z^{pool2} = Z^{x2}[index] in inputs (SELECT)
  Z^{pool3} = Z^{x2}[index] in inputs (SELECT)
  Z^{pool4} = Z^{x2}[index] in inputs (SELECT)
  Z^{x3} = Z^{pool1}/4 + Z^{pool2}/4 + Z^{pool3}/4 + Z^{pool4}/4""",
}


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_printed_limit(name):
    assert str(tp.limit(PROGRAMS[name]())) == PRINTED[name]
