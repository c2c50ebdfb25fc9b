"""Sizes in exact integer arithmetic: the max-plus algebra of linear exponents."""

from fractions import Fraction as F

import sympy

from muptheory.symbolic.calculus import Point, Size
from muptheory.symbolic.polyhedra import row

b, c = sympy.symbols("b_test c_test", real=True)


def test_equal_exponents_built_over_different_denominators_are_equal_sizes():
    # b/2 + b/2 and b: the same exponent, whatever denominator the factors carried
    assert Size.of(b / 2) * Size.of(b / 2) == Size.of(b)
    assert Size.of(F(1, 3)).times_width(F(2, 3)) == Size.one().times_width(1)
    assert Size.of(b / 2).squared() == Size.of(b)


def test_sum_keeps_the_larger_constant_per_direction_in_name_order():
    size = Size.of(c - 1, -b) + Size.of(F(1, 2) - b, c / 3)
    assert size.exponent == "max(1/2 - b_test, c_test/3, c_test - 1)"


def test_product_adds_every_pair_of_terms():
    size = Size.of(-b, c) * Size.of(F(1, 2), b / 2)
    assert size.terms == [F(1, 2) - b, -b / 2, b / 2 + c, c + F(1, 2)]


def test_power_and_inverse_of_a_one_term_size():
    assert Size.of(2 * b - 1).to_power(F(-1, 2)).exponent == "1/2 - b_test"
    assert Size.of(b - F(1, 3)).inverse_of_single() == Size.of(F(1, 3) - b)


def test_evaluate_is_exact_at_rational_points():
    size = Size.of(b / 2 - c, F(1, 3) - b)
    assert size.evaluate(Point({b: F(1, 3), c: F(-1, 7)})) == F(13, 42)


def test_integer_rows_keep_integer_constants_where_exact():
    assert row((2, 4), 4) == ((1, 2), 2)
    assert row((2, 4), 3) == ((1, 2), F(3, 2))
