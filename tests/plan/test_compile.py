"""Compiled kernels (``tp.compile``): derived once on a two-input template, evaluated on any
inputs; cross kernels are blocks of the kernel of the concatenated inputs, and the kernels on a
program's own inputs are ``tp.nngp`` / ``tp.ntk``."""
import numpy as np
import pytest

import tensorprog as tp
from programs import attention, autoencoder, batchnorm, cnn, gru, hypernet, layernorm, mlp, \
    resnet, rnn
from tensorprog.kernels.ntk import evaluate_term
from tensorprog.kernels.terms import readout_term
from tests.helpers import unit_rows

#: (builder, per-input shape) of every pair-local architecture.
PAIR_LOCAL = {
    "mlp-relu": (lambda X: mlp.build(X, depth=3), (3,)),
    "mlp-erf": (lambda X: mlp.build(X, depth=2, activation="erf"), (3,)),
    "resnet": (lambda X: resnet.build(X, blocks=2), (3,)),
    "layernorm": (lambda X: layernorm.build(X), (3,)),
    "autoencoder": (lambda X: autoencoder.build(X), (3,)),
    "cnn-gap": (lambda X: cnn.build(X, depth=2), (4, 2)),
    "cnn-zero-flatten": (lambda X: cnn.build(X, depth=2, padding="zero", readout="flatten"),
                         (4, 2)),
    "rnn": (lambda X: rnn.build(X, steps=3), (3, 2)),
    "gru": (lambda X: gru.build(X, steps=2), (2, 2)),
    "attention": (lambda X: attention.build(X), (3, 2)),
}


def _inputs(shape, n, seed):
    return unit_rows((n,) + shape, seed)


@pytest.mark.parametrize("name", sorted(PAIR_LOCAL))
def test_cross_kernel_is_block_of_concatenated_kernel(name):
    build, shape = PAIR_LOCAL[name]
    X, Y = _inputs(shape, 4, 0), _inputs(shape, 3, 1)
    p = build(X)
    kfn = tp.compile(p)
    assert kfn.route == "pairs", kfn.reason
    Z = np.concatenate([Y, X])
    cross = kfn(Y, X)
    error = kfn.max_error
    full = kfn(Z)
    # closed forms: to rounding; sampled tiers (the GRU's gates): within their stated error
    tol = 1e-12 + 10 * (error + kfn.max_error) * len(kfn._template.ntk_terms)
    assert (error > 1e-12) == (name == "gru")
    for key in ("nngp", "ntk"):
        assert cross[key].shape == (3, 4)
        np.testing.assert_allclose(cross[key], full[key][:3, 3:], rtol=0, atol=tol)


@pytest.mark.parametrize("name", sorted(set(PAIR_LOCAL) - {"gru"}))
def test_compiled_kernels_equal_limit_kernels(name):
    build, shape = PAIR_LOCAL[name]
    p = build(_inputs(shape, 4, 2))
    out = tp.compile(p)()
    K = evaluate_term(readout_term(p), tp.limit(p))       # the limit evaluated on the program
    T = sum(tp.ntk_contributions(p).values())
    np.testing.assert_allclose(out["nngp"], K, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["ntk"], T, rtol=1e-12, atol=1e-14)
    # tp.nngp / tp.ntk reuse the derivation of a program of the same structure
    np.testing.assert_allclose(tp.nngp(p), K, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tp.ntk(p), T, rtol=1e-12, atol=1e-14)


def test_derivation_is_shared_by_programs_of_one_structure():
    from tensorprog.plan import compiled

    p, q = mlp.build(unit_rows((4, 3), 5), depth=2), mlp.build(unit_rows((6, 3), 6), depth=2)
    tp.ntk(p)
    cached = dict(compiled._CACHE)
    tp.ntk(q)
    assert compiled._CACHE.keys() == cached.keys()
    np.testing.assert_allclose(tp.ntk(q), sum(tp.ntk_contributions(q).values()), rtol=1e-12)


def test_sampled_tiers_agree_within_their_error():
    """The GRU's sigmoid and tanh expectations fall to quadrature and Monte Carlo: compiled and
    limit kernels are two estimates, each within its stated error."""
    build, shape = PAIR_LOCAL["gru"]
    p = build(_inputs(shape, 3, 3))
    kfn = tp.compile(p)
    err = kfn._template.limit.max_error
    lim_err = tp.limit(tp.backward_program(p).program).max_error
    T = tp.ntk(p)
    bound = 10 * (err + lim_err) * len(kfn._template.ntk_terms) + 1e-12
    assert np.max(np.abs(kfn(get="ntk") - T)) < max(bound, 1e-3 * np.abs(T).max())


def test_new_inputs_and_get():
    X = unit_rows((5, 3), 0)
    p = mlp.build(X[:2], depth=2)
    kfn = tp.kernel_fn(p)
    K = kfn(X, get="nngp")
    np.testing.assert_allclose(K, tp.nngp(mlp.build(X, depth=2)), rtol=1e-12)
    assert set(kfn(X)) == {"nngp", "ntk"}
    with pytest.raises(tp.ProgramError, match="get must name"):
        kfn(X, get="ntk2")
    with pytest.raises(tp.ProgramError, match="numbers"):
        kfn(np.ones((4, 5)))
    with pytest.raises(tp.ProgramError, match="NaN"):
        kfn(np.full((4, 3), np.nan))


@pytest.mark.parametrize("build", [lambda X: batchnorm.build(X, batch_size=2),
                                   lambda X: hypernet.build(X, f_depth=2, g_depth=2)])
def test_programs_without_template_evaluate_on_their_inputs(build):
    X = unit_rows((4, 3), 4)
    p = build(X)
    kfn = tp.compile(p)
    assert kfn.route == "union" and kfn.reason
    assert "union" in str(kfn)
    np.testing.assert_allclose(kfn(get="nngp"), tp.nngp(p), rtol=1e-12)
    with pytest.raises(tp.ProgramError, match="new inputs"):
        kfn(X)


def test_printed_plan_shows_the_recursion():
    text = str(tp.compile(mlp.build(unit_rows((3, 4)), depth=1)))
    assert "route pairs" in text and "Z^{x2} = relu(Z^{b1} + Z^{h2})" in text
    assert "[W1] 2.0 · E[Z^d_h2_1 Z^d_h2_1] · E[Z^x1 Z^x1]" in text
