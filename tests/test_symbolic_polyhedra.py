"""Exact feasibility and lexicographic minima (the solver under the desiderata)."""

from fractions import Fraction as F

from muptheory.methods import MethodConfig
from muptheory.symbolic import engine
from muptheory.symbolic.polyhedra import feasible, lexmin, minimum, row


def test_feasible_decides_a_triangle_and_an_empty_strip():
    # x >= 0, y >= 0, x + y <= 1 has points; x >= 1 and x <= 1/2 has none
    triangle = [row((-1, 0), 0), row((0, -1), 0), row((1, 1), -1)]
    assert feasible(triangle) is True
    assert feasible([row((-1,), 1), row((1,), F(-1, 2))]) is False


def test_lexmin_takes_each_coordinate_smallest_in_turn():
    # x >= 1/3, y >= 2 - 3x: x = 1/3 first, then y = 2 - 1 = 1
    rows = [row((-1, 0), F(1, 3)), row((-3, -1), 2)]
    assert lexmin(rows, 2) == (F(1, 3), F(1))


def test_lexmin_is_none_when_a_coordinate_is_unbounded_below():
    assert lexmin([row((1, 0), -1), row((0, -1), 0)], 2) is None


def test_minimum_of_a_gap_over_assumptions():
    # under x <= y, the gap y - x is at least 0; x - y has no lower bound
    rows = [row((1, -1), 0)]
    assert minimum(rows, row((-1, 1), 0)) == 0
    assert minimum(rows, row((1, -1), 0)) is None


def test_rows_scale_to_primitive_integer_directions():
    assert row((F(1, 2), F(-3, 4)), F(1, 4)) == ((2, -3), F(1))


def test_fresh_derivation_after_clearing_caches_gives_the_same_row():
    config = MethodConfig.create("tp")
    first = engine.derive_mup(config)
    engine.clear_caches()
    again = engine.derive_mup(config)
    assert again.parameterization == first.parameterization
    assert again.explanation == first.explanation
    assert any("[clt]" in line for line in again.explanation)
