"""The Gaussian-direction algebra against closed forms of Gaussian random matrices."""

import numpy as np
import pytest

from muptheory.limits.program import GaussianMatrix, Space


@pytest.mark.parametrize("sigma", [1.0, 1.3])
def test_powers_of_w_wt_have_catalan_moments(sigma):
    # For a square W with entries N(0, sigma^2/M): (1/M) u^T (W W^T)^k u -> C_k sigma^2k
    # |u|^2/M (Catalan numbers, Marchenko-Pastur with ratio 1) and
    # (1/M) |(W W^T)^k u|^2 -> C_2k sigma^4k |u|^2/M.
    catalan = [1, 1, 2, 5, 14, 42, 132, 429, 1430]
    space_in, space_out = Space("in"), Space("out")
    space_in.allocate(1)
    w = GaussianMatrix(space_in, space_out, sigma)
    u = np.ones((1, 1))
    v = u
    for k in range(1, 5):
        v = w.backward(w.forward(v))
        assert space_in.inner(u, v)[0, 0] == pytest.approx(
            catalan[k] * sigma ** (2 * k)
        )
        assert space_in.inner(v, v)[0, 0] == pytest.approx(
            catalan[2 * k] * sigma ** (4 * k)
        )


def test_new_directions_only_for_the_part_outside_the_mapped_span():
    space_in, space_out = Space("in"), Space("out")
    space_in.allocate(3)
    w = GaussianMatrix(space_in, space_out, 1.0)
    a = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    w.forward(a)
    assert space_out.size == 2
    w.forward(a @ np.array([[2.0], [-1.0]]))  # in the span already
    assert space_out.size == 2
    w.forward(np.array([[0.0], [0.0], [1.0]]))
    assert space_out.size == 3


def test_images_of_orthogonal_vectors_are_independent_with_norm_sigma():
    space_in, space_out = Space("in"), Space("out")
    space_in.allocate(2)
    w = GaussianMatrix(space_in, space_out, 0.7)
    image = w.forward(np.eye(2))
    np.testing.assert_allclose(space_out.inner(image, image), 0.49 * np.eye(2))
