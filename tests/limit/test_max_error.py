"""``Limit.max_error`` is honest from the start: reading it computes what it reports on."""
import numpy as np

import tensorprog as tp
from programs import mlp


def _tanh_program():
    p = tp.Program("tanh")
    h = p.embed(np.random.default_rng(0).standard_normal((3, 2)) * 3.0, var=1.0, bias_var=0.1)
    x = tp.tanh(p.matrix("W", var=2.0) @ tp.tanh(h))
    p.output(x, var=1.0)
    return p


def test_max_error_before_any_kernel_covers_every_vector():
    p = _tanh_program()
    lim = tp.limit(p)
    err = lim.max_error                      # no kernel asked for yet
    assert err > 0                           # tanh needs quadrature: not a false 0
    vectors = [n for n in p.order if n in lim.z]
    assert err == max(float(lim.cov_error(v).max()) for v in vectors)
    # the readout's kernel (the NNGP's expectation) was among them: asking for it adds nothing
    lim.cov(p.readout.node)
    assert lim.max_error == err


def test_max_error_is_zero_only_for_closed_forms():
    lim = tp.limit(mlp.build(np.eye(3), depth=2))
    assert lim.max_error == 0.0 and lim.tiers_used == {"exact"}
