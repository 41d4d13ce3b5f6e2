"""The IR: builder, graph structure, reduced form."""
import networkx as nx
import numpy as np
import sympy as sp

import tensorprog as tp
from tensorprog.functions import relu


def test_readme_example_builds_graph(mlp):
    p = mlp
    kinds = [n.kind for n in p.nodes()]
    assert kinds.count("matrix") == 2 and kinds.count("matmul") == 2
    assert nx.is_directed_acyclic_graph(p.graph)
    # relu(W2 x + b) is fused into one NONLIN with two arguments
    last = p.node(p.readout.node)
    assert last.kind == "nonlin" and len(last.args) == 2
    # edges carry roles and positions
    roles = {d["role"] for _, _, d in p.graph.edges(data=True)}
    assert roles == {"matrix", "arg"}


def test_families_and_broadcast(mlp):
    assert mlp.node("b1").family == "shared"
    assert mlp.node("h1").family == "inputs"
    assert mlp.node(mlp.readout.node).family == "inputs"


def test_transpose_and_moment():
    p = tp.Program("zdot")
    x = p.vector("x", 1.0)
    W = p.matrix("W", 2.0)
    y = W @ x
    z = W.T @ tp.tanh(y)
    th = (z * x).mean()
    node = p.node(z.name)
    assert node.transpose and node.matrix == "W"
    assert p.node(th.name).kind == "moment"
    assert "MATMUL: h2 := W^T x1" in p.to_text()


def test_nonlin_forms():
    p = tp.Program("f")
    a, b = p.vector("a", 1.0), p.vector("b", 2.0)
    s = p.scalar("s", 0.5)
    u, v = sp.symbols("u v", real=True)
    e1 = tp.nonlin(u * v + relu(u), a, b)
    e2 = tp.nonlin(lambda x, y, t: x * t + y, a, b, scalars=[s])
    e3 = tp.nonlin(sp.Lambda((u, v), u - v), a, b)
    assert e1.expr == a.expr * b.expr + relu(a.expr)
    assert e2.expr == a.expr * s.expr + b.expr
    assert e3.expr == a.expr - b.expr
    th = tp.moment(lambda x: x**2, a)
    assert p.node(th.name).expr == a.expr**2


def test_elementwise_catalogue():
    p = tp.Program("f")
    x = p.vector("x", 1.0)
    for f in (tp.relu, tp.step, tp.abs, tp.erf, tp.tanh, tp.sigmoid, tp.gelu, tp.sin, tp.cos,
              tp.identity, lambda h: tp.leaky_relu(h, 0.2), lambda h: tp.polynomial(h, [1, 0, 3])):
        y = f(x)
        assert y.is_vector
        assert y.named(p.fresh_name("y")).name in p


def test_parametrization_recorded(mlp):
    W = mlp.node("W1")
    assert W.parametrization.a == sp.Rational(1, 2)
    assert W.trainable
    assert mlp.node("h1").parametrization.a == 0


def test_reduced_form(mlp):
    p = tp.Program("chain")
    x = p.vector("x", np.eye(3) + 0.5)
    W = p.matrix("W", 1.0)
    g = W @ x                       # MATMUL of a G-var: needs an identity NONLIN
    y = tp.tanh(tp.relu(g) + 1)     # a chain of NONLINs: composed into one
    p.output(W @ y.named("y"), var=1.0)
    r = p.reduced()
    for node in r.nodes():
        if node.kind == "nonlin":
            assert all(r.node(a).is_gvar for a in node.args), node.name
        if node.kind == "matmul":
            assert r.node(node.args[0]).is_xvar, node.name
    assert r.node(r.readout.node).is_xvar
    # the README MLP is already reduced apart from the inserted identity on the input
    assert mlp.reduced().node(mlp.reduced().readout.node).is_xvar


def test_program_input_count_mismatch_is_error(inputs):
    p = tp.Program("x")
    p.embed(inputs)
    try:
        p.embed(inputs[:3])
    except tp.ProgramError as e:
        assert "inputs" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected a ProgramError")


def test_embeddings_sharing_weight_are_correlated(inputs):
    p = tp.Program("x")
    a = p.embed(inputs, var=2.0, bias_var=0.5, weight="U")
    b = p.embed(inputs[::-1], var=2.0, bias_var=0.5, weight="U")
    c = p.embed(inputs, var=2.0, bias_var=0.5)
    expected = 2.0 * inputs @ inputs[::-1].T / 5 + 0.5
    np.testing.assert_allclose(p.init_cov_of(a.name, b.name), expected)
    assert not p.init_cov_of(a.name, c.name).any()
