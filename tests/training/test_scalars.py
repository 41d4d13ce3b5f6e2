"""Training through the scalars of the forward pass (LayerNorm's MOMENTs, attention's softmax).

* The finite-width trainer's gradient equals a central finite difference of the finite
  network's loss at width 7 (LayerNorm, a centred variance whose MOMENT reads a scalar, a
  transformer block); without the backward term through the scalars it does not.
* NTK parametrization = kernel gradient descent with the program's own NTK and NNGP (TP IIb
  Thm 5.3): the scalar terms vanish in the limit there (docs/training.md).
* muP: the scalar terms are Θ(1) from the second step on; the finite networks follow the
  unrolled limit, and the limit without the term is rejected by the same z-scores.
"""
import numpy as np
import pytest
import sympy as sp

import tensorprog as tp
from programs import attention, layernorm
from tensorprog.training import scalars
from tensorprog.training.finite import FiniteTrainer, _draw
from tensorprog.training.losses import make_loss
from tensorprog.training.structure import MomentStep, read_network

from .test_kernel_regime import LR, STEPS, TRAIN, Y, assert_kernel_descent, inputs
from .test_weight_sharing import finite_width_agrees


def centred_norm():
    """``(x − μ)/√(avg((x − μ)²) + ε)``: the second MOMENT reads the first (θ̄' += θ̄·avg(∂ψ/∂θ'))."""
    p = tp.Program("centred")
    h = p.embed(inputs(), var=1.5, bias_var=0.1)
    mu = (h * 1).mean(name="mu")
    var = tp.nonlin(lambda a, m: (a - m) ** 2, h, scalars=[mu]).mean(name="var")
    x = tp.nonlin(lambda a, m, v: sp.tanh((a - m) / sp.sqrt(v + sp.Float(1e-3))), h,
                  scalars=[mu, var])
    g = p.matrix("W", var=1.5) @ x + p.bias("b", var=0.1)
    p.output(tp.tanh(g), var=1.5, bias_var=0.1)
    return p


def softmax_gate():
    """Attention over two candidates within one input: the logits ``ℓ₁ = avg(x ⊙ z)`` and
    ``ℓ₂ = avg(z ⊙ z)/2`` are MOMENTs of two vectors, the output ``(e^{ℓ₁} x + e^{ℓ₂} z)/(e^{ℓ₁}
    + e^{ℓ₂})`` a NONLIN of two vectors and two scalars."""
    p = tp.Program("gate")
    x = tp.tanh(p.embed(inputs(), var=1.5, bias_var=0.1))
    z = p.matrix("W", var=1.5) @ x
    l1, l2 = (x * z).mean(name="l1"), (z * z / 2).mean(name="l2")
    o = tp.nonlin(lambda a, b, s, t: (sp.exp(s) * a + sp.exp(t) * b) / (sp.exp(s) + sp.exp(t)),
                  x, z, scalars=[l1, l2])
    p.output(o, var=1.5, bias_var=0.1)
    return p


PROGRAMS = {
    "softmax-gate": softmax_gate,
    "layernorm-residual": lambda: layernorm.build(inputs(), depth=1, wvar=1.5, bvar=0.1,
                                                  block="residual", activation="tanh"),
    "centred": centred_norm,
    # a one-block transformer: a softmax over MOMENT logits of token pairs, LayerNorms, tokens a
    # family whose weights are shared by every token (6 sequences of 2 tokens in R³)
    "attention": lambda: attention.build(
        np.random.default_rng(0).standard_normal((6, 2, 3))),
}


def gradient_error(p, width=7, seed=3, eps=1e-6) -> float:
    """Largest relative difference, over the tensors, between the trainer's gradient of the
    MSE on inputs 0-3 and central finite differences of the network's loss."""
    net = read_network(p)
    y = dict(zip(TRAIN, Y))
    tr = FiniteTrainer(net, tp.mup(), width, LR, make_loss("mse"), y, [np.array(TRAIN)])
    w = _draw(net, tp.mup(), width, [seed])

    def loss(w):
        return 0.5 * np.mean((tr._forward(w)[1][0, TRAIN] - Y) ** 2)

    vals, f = tr._forward(w)
    grads = tr._gradients({k: v.copy() for k, v in w.items()}, vals, f, TRAIN)
    worst = 0.0
    for name, value in w.items():
        num = np.empty(value.size)
        for i in range(value.size):
            up, down = ({k: v.copy() for k, v in w.items()} for _ in range(2))
            up[name].reshape(-1)[i] += eps
            down[name].reshape(-1)[i] -= eps
            num[i] = (loss(up) - loss(down)) / (2 * eps)
        # ∂L/∂w = mult ∂L/∂W; a tensor the backward pass never reaches gets none (the query
        # and key weights of attention reach the loss only through its softmax's scalars)
        ana = (np.broadcast_to(grads.get(name, 0.0), value.shape) * tr.mult[name]).reshape(-1)
        worst = max(worst, np.abs(ana - num).max() / np.abs(num).max())
    return worst


def without_scalar_terms(monkeypatch):
    """Break the backward pass: drop every term that flows through a scalar."""
    pull = scalars.finite_pull

    def broken(st, dpsi, vals, g, G, n):
        if isinstance(st, MomentStep):
            return
        before = {s: G.get(s) for s in st.scalars}
        pull(st, dpsi, vals, g, G, n)
        for s, v in before.items():
            if v is None:
                G.pop(s, None)
            else:
                G[s] = v

    monkeypatch.setattr(scalars, "finite_pull", broken)
    monkeypatch.setattr(scalars, "pull_moment", lambda *args: None)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_finite_width_gradient_is_the_derivative_of_the_loss(name, monkeypatch):
    p = PROGRAMS[name]()
    assert any(isinstance(st, MomentStep) for st in read_network(p).steps)
    assert gradient_error(p) < 1e-6
    without_scalar_terms(monkeypatch)
    assert gradient_error(p) > 1e-2


def test_scalar_backward_is_written_into_the_program():
    """θ̄ = avg(dy ⊙ ∂φ/∂θ) as MOMENTs of backward vectors and dx += θ̄ ∂ψ/∂x as NONLINs;
    in the kernel regime the forward pass carries δ-scalars of the MOMENTs."""
    p = layernorm.build(inputs(), depth=0, activation="relu", eps=1e-3)
    run = tp.train(p, Y, train=TRAIN, steps=2, lr=LR, parametrization=tp.mup())
    text = str(run.program)
    assert "MOMENT: th1_1 := avg(h1_1)" in text           # the statistic at the new weights
    assert "avg(gx1_1*" in text                            # θ̄ of the second step
    kernel = str(tp.train(p, Y, train=TRAIN, steps=2, lr=LR).program)
    assert "MOMENT: dth2_1 := avg(2*dh1_1*h1)" in kernel  # δθ = avg(∂ψ/∂x δx)


@pytest.mark.parametrize("act, depth", [
    ("relu", 0), pytest.param("erf", 1, marks=pytest.mark.slow)])
def test_ntk_layernorm_is_kernel_gradient_descent(act, depth):
    """LayerNorm MLPs (the MOMENTs μ = avg(h), m = avg(h²) before every nonlinearity), 3
    full-batch steps on 4 training and 2 test points: mean and covariance to 1e-8."""
    p = layernorm.build(inputs(), depth=depth, wvar=2.0, bvar=0.1, activation=act, eps=1e-3)
    assert_kernel_descent(tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR), p)


@pytest.mark.slow
def test_ntk_attention_is_kernel_gradient_descent():
    """A pre-LN self-attention block without the MLP (6 sequences of 2 tokens): its softmax over
    the token pairs' MOMENT logits, LayerNorm and token-shared weights, 3 full-batch steps on
    4 training and 2 test sequences: mean and covariance to 1e-8."""
    X = np.random.default_rng(0).standard_normal((6, 2, 3))
    p = attention.build(X, mlp=False, final_ln=False)
    assert_kernel_descent(tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR), p)


@pytest.mark.slow
def test_ntk_layernorm_finite_width_mean_and_covariance():
    """Width 1024, 200 draws, 2 steps: seed mean within 4 and seed covariance within 5
    standard errors of the limit's, at every step and pair of inputs."""
    p = layernorm.build(inputs()[:3], depth=0, wvar=2.0, bvar=0.1, activation="relu", eps=1e-3)
    run = tp.train(p, [1.0, -0.5], train=[0, 1], steps=2, lr=LR)
    z_mean, z_cov = finite_width_agrees(run, 1024, 200)
    assert z_mean < 4 and z_cov < 5


def mup_run():
    """A LayerNorm tanh network without hidden matrices, 2 muP steps on 2 of 3 inputs."""
    p = layernorm.build(inputs()[:3], depth=0, wvar=1.5, bvar=0.1, activation="tanh", eps=1e-3)
    return tp.train(p, [1.0, -0.5], train=[0, 1], steps=2, lr=1.0, parametrization=tp.mup(),
                    tier="montecarlo")


def z_scores(run, sim):
    """|seed mean − limit| over the standard error of both (the limit is a Monte Carlo
    estimate here)."""
    return np.abs(sim.mean - run.mean) / np.sqrt(sim.stderr ** 2 + run.limit_error ** 2)


@pytest.mark.slow
def test_mup_layernorm_finite_width_follows_the_limit(monkeypatch):
    """Widths 256 and 1024, 128 seeds: every output at every step within 4 standard errors of
    the unrolled limit, and each draw's distance to it halves (n^{-1/2}); the limit without
    the backward term through the scalars is off at the second step (z ≈ 9.5)."""
    run = mup_run()
    report = run.validate(widths=[256, 1024], seeds=128)
    assert report.passed and max(r.max_z for r in report.rows) < 4
    small, large = report.rows
    assert 0.35 < large.draw_error / small.draw_error < 0.7
    assert np.abs(run.mean[1:] - run.mean[0]).max() > 0.2    # it learns
    monkeypatch.setattr(scalars, "pull_moment", lambda *args: None)
    assert z_scores(mup_run(), report.runs[-1])[2].max() > 6


def test_feature_change_names_vectors_not_scalars():
    p = layernorm.build(inputs(), depth=0, activation="relu", eps=1e-3)
    run = tp.train(p, Y, train=TRAIN, steps=1, lr=LR, parametrization=tp.mup())
    with pytest.raises(tp.TrainingError, match="'th1' is not a vector of the network"):
        run.feature_change("th1")
