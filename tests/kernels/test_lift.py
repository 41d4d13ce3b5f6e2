"""Lifting programs whose inputs interact (tensorprog/kernels/lift.py): dependency pairs, and a
lift that changes no kernel while making the backward pass exact.  The example mixes the two
inputs, y_i = relu(h_i) + c·relu(h_{1−i}), whose NNGP and NTK follow by hand from the arc-cosine
closed forms."""
import numpy as np

import tensorprog as tp
from tensorprog.kernels.lift import dependency_pairs, lift_cross_input, needs_lift

from .reference import relu_pair
from .test_backprop import K0, VVAR, X, two_layer

C = 0.5
SWAP = np.array([1, 0])


def mixing():
    p = tp.Program("mix")
    h = p.embed(X, var=1.0, name="h")
    x = tp.relu(h).named("x")
    s = p.select(x, SWAP)
    p.output(x + C * s, var=VVAR)
    return p


def mixing_by_hand():
    """f_i = v·Σ_a M_ia relu(h_a)/√n with M = [[1, c], [c, 1]]:  NNGP = σ_v² M E[rr'] Mᵀ; the
    input layer's NTK share Σ_ab M_ia M_jb E[step(h_a) step(h_b)] K⁰_ab σ_v² (TP IIb D.4.1,
    with paths that now start at either input, D.4.3)."""
    M = np.array([[1.0, C], [C, 1.0]])
    Err, Ess = relu_pair(K0)
    return VVAR * M @ Err @ M.T, VVAR * M @ (Ess * K0) @ M.T


def test_needs_lift():
    assert not needs_lift(two_layer())
    assert needs_lift(mixing())


def test_a_program_without_interaction_is_returned_unchanged():
    p = two_layer()
    assert lift_cross_input(p).program is p


def test_dependency_pairs():
    Xs = np.random.default_rng(2).standard_normal((3, 2))
    p = tp.Program("three")
    x = tp.relu(p.embed(Xs, var=1.0))
    p.output(x + p.select(x, [1, 0, 2]), var=1.0)
    dep = dependency_pairs(p)
    np.testing.assert_array_equal(dep["inputs"], [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert "X1_pairs: 5×2" in str(lift_cross_input(p).program)   # one copy per (output, member) pair


def test_lift_preserves_kernels_and_needs_no_second_lift():
    p = mixing()
    q = lift_cross_input(p).program
    assert not needs_lift(q)
    assert lift_cross_input(q).program is q
    K, T_U = mixing_by_hand()
    np.testing.assert_allclose(tp.nngp(p), K, rtol=1e-12)
    np.testing.assert_allclose(tp.nngp(q), K, rtol=1e-12)
    for prog in (p, q):
        parts = tp.ntk_contributions(prog)
        np.testing.assert_allclose(parts["U_h"], T_U, rtol=1e-12)
        np.testing.assert_allclose(parts["readout"], K, rtol=1e-12)
    np.testing.assert_allclose(tp.ntk(p, method="paths"), K + T_U, rtol=1e-12)


def test_lifted_family_holds_copies_of_the_same_gaussians():
    """Family "inputs" becomes the pairs (o, a), row-major: (0,0), (0,1), (1,0), (1,1); each
    copy of member a has member a's covariances (the copies are the same Gaussian variables)."""
    q = lift_cross_input(mixing()).program
    members = np.array([0, 1, 0, 1])
    Err, _ = relu_pair(K0)
    np.testing.assert_allclose(tp.limit(q).cov("x"), Err[np.ix_(members, members)], rtol=1e-12)
