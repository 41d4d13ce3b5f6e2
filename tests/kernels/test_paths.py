"""The NTK as a sum over pairs of isomorphic paths (tensorprog/kernels/paths.py, TP IIb Prop. D.3,
Eq. 95): path classes with hand-derived values, agreement with backprop, weight sharing, and the
programs outside the proposition's assumptions."""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.kernels import by_parameter, path_contributions

from .reference import relu_pair
from .test_backprop import K0, VVAR, WVAR, by_hand, two_layer
from .test_reference_values import critical_relu, unit_inputs


def test_path_classes_of_a_two_layer_network():
    """Three classes: W's one-step paths x → h1 (weight σ_W² E[Z^x Z^x'], Eq. 95's single
    derivative factor E[step(g) step(g')] times σ_v²), the input layer's paths through W, and the
    readout."""
    ref = by_hand()
    parts = path_contributions(two_layer())
    assert set(parts) == {("W", ("W",)), ("U_h", ("U_h", "W")), ("readout", ())}
    np.testing.assert_allclose(parts[("W", ("W",))], WVAR * ref["x"] * ref["dg"], rtol=1e-12)
    # ⟨p, q⟩ for p = ξ → h → x → g → y: K⁰ · E[step(h)step(h')] · σ_W² · E[step(g)step(g')] · σ_v²
    _, Ess_h = relu_pair(K0)
    np.testing.assert_allclose(parts[("U_h", ("U_h", "W"))],
                               K0 * Ess_h * WVAR * ref["dg"], rtol=1e-12)
    np.testing.assert_allclose(parts[("readout", ())], VVAR * ref["y"], rtol=1e-12)


def test_by_parameter_equals_backprop_contributions():
    p = two_layer()
    paths = by_parameter(path_contributions(p))
    backprop = tp.ntk_contributions(p)
    assert set(paths) == set(backprop)
    for k in paths:
        np.testing.assert_allclose(paths[k], backprop[k], rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("c, value", [(0.0, 1.060388), (0.5, 1.737845)])
def test_reference_values_by_paths(c, value):
    """The critical-ReLU NTK after three layers (docs/theory.md §6) by path sums."""
    assert tp.ntk(critical_relu(unit_inputs(c), 3), method="paths")[0, 1] == \
        pytest.approx(value, abs=1e-6)


def test_weight_sharing_gives_one_class_per_matrix_sequence():
    """An RNN-like program x_{t+1} = relu(W x_t + h_{t+1}) over two steps, read out at the end:
    W is used twice, and its paths of one and two W-steps are distinct classes whose sum is W's
    backprop share."""
    rng = np.random.default_rng(4)
    X1, X2 = rng.standard_normal((2, 3, 4))
    p = tp.Program("shared")
    x1 = tp.relu(p.embed(X1, var=1.0, name="e1", weight="U"))
    e2 = p.embed(X2, var=1.0, name="e2", weight="U")
    W = p.matrix("W", 1.5)
    x2 = tp.relu(W @ x1 + e2)
    p.output(tp.relu(W @ x2 + e2), var=1.0)
    parts = path_contributions(p)
    w_classes = sorted(seq for param, seq in parts if param == "W")
    assert w_classes == [("W",), ("W", "W")]
    np.testing.assert_allclose(by_parameter(parts)["W"], tp.ntk_contributions(p)["W"],
                               rtol=1e-10)
    np.testing.assert_allclose(tp.ntk(p, method="paths"), tp.ntk(p), rtol=1e-10)


def test_matrix_with_its_transpose_is_refused():
    p = tp.Program("tied")
    h = p.embed(unit_inputs(0.5), var=1.0)
    W = p.matrix("W", 1.0)
    p.output(tp.tanh(W.T @ tp.tanh(W @ tp.tanh(h))), var=1.0)
    with pytest.raises(tp.LimitError, match="method='backprop'"):
        tp.ntk(p, method="paths")
    assert np.all(np.isfinite(tp.ntk(p)))  # backprop includes the ZDOT terms
