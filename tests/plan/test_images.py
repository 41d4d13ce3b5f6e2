"""A compiled CNN takes images: the program records how its patch embedding's data come from
the images (``ImagePatches``), and ``kfn(X1, X2)`` builds the patches itself."""
import numpy as np
import pytest

import tensorprog as tp
from programs import cnn
from tests.helpers import unit_rows

#: (builder, image shape) — 1-D and 2-D, both paddings, both readouts.
CNNS = {
    "1d-circular-gap": (lambda X: cnn.build(X, depth=2), (8, 4)),
    "1d-zero-flatten": (lambda X: cnn.build(X, depth=2, padding="zero", readout="flatten"),
                        (5, 2)),
    "1d-depth1-filter5": (lambda X: cnn.build(X, depth=1, filter_size=5), (6, 3)),
    "2d-circular-gap": (lambda X: cnn.build(X, depth=2, filter_size=(2, 3)), (3, 3, 2)),
    "2d-zero-flatten": (lambda X: cnn.build(X, depth=2, padding="zero", readout="flatten"),
                        (3, 4, 1)),
}


@pytest.mark.parametrize("name", sorted(CNNS))
def test_kernels_of_images_are_the_programs_kernels(name):
    build, shape = CNNS[name]
    X, Y = unit_rows((6,) + shape, 0), unit_rows((4,) + shape, 1)
    kfn = tp.compile(build(X[:2]))
    sym = kfn(X)
    p = build(X)                                  # the program built on these images
    np.testing.assert_allclose(sym["nngp"], tp.nngp(p), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sym["ntk"], tp.ntk(p), rtol=1e-12, atol=1e-14)
    # cross kernels are the block of the kernel of the concatenated images
    cross, full = kfn(Y, X), kfn(np.concatenate([Y, X]))
    for g in ("nngp", "ntk"):
        assert cross[g].shape == (4, 6)
        np.testing.assert_allclose(cross[g], full[g][:4, 4:], rtol=0, atol=1e-12)
    # the dict form names the data array and takes the images too
    np.testing.assert_array_equal(kfn({"X1": Y}, X)["ntk"], cross["ntk"])


def test_wrong_image_shapes_name_the_shape_expected():
    X = unit_rows((3, 8, 4), 2)
    kfn = tp.compile(cnn.build(X))
    patches = cnn.build(X).data["X1"].reshape(3, -1)          # what the program's data hold
    expected = r"expected an array of shape \(N, 8, 4\) \(N images of 8 positions × 4 channels\)"
    for bad in (patches, X[:, :, :3], X[:, :7], X.reshape(3, 8, 2, 2), X[:0], X[0]):
        with pytest.raises(tp.ProgramError, match=expected):
            kfn(bad)
        with pytest.raises(tp.ProgramError, match=expected):
            kfn(X, bad)
    with pytest.raises(tp.ProgramError, match="NaN"):
        kfn(np.where(np.arange(4) == 2, np.nan, X))
    two_d = tp.compile(cnn.build(unit_rows((2, 3, 4, 2), 3)))
    with pytest.raises(tp.ProgramError, match=r"\(N, 3, 4, 2\) \(N images of 3 × 4 positions"):
        two_d(unit_rows((2, 12, 2), 3))


def test_plan_names_its_inputs():
    kfn = tp.compile(cnn.build(unit_rows((2, 8, 4), 4), padding="zero"))
    assert ("inputs: images (N, 8, 4) (N images of 8 positions × 4 channels), read as their "
            "patches under a filter of 3 taps (zero padding) (data X1)") in str(kfn)
