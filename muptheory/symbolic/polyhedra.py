"""Exact feasibility and lexicographic minima of small polyhedra, in rationals.

A polyhedron is the set {x : a_i . x + k_i <= 0 for every row i} in the unknown
exponents. The desiderata and the scenario assumptions are such sets with few
unknowns (4 to 10), so Fourier-Motzkin elimination decides them exactly: to remove
x_j, every row with a_pj > 0 is combined with every row with a_qj < 0 as
|a_qj| row_p + a_pj row_q, which has no x_j and holds wherever both rows hold. The
projection of the set onto the remaining unknowns is exactly what those combinations
and the rows without x_j describe.

Rows are kept as a primitive integer direction (gcd 1) and a rational constant, one
row per direction (the largest constant is the tightest), so duplicates never pile
up. Elimination can still grow the row count quadratically; ``feasible`` takes a
``limit`` past which it answers ``None`` (undecided), which callers use only to skip
work, never to decide an exponent.

Example:
    >>> rows = [row((1, 0), -1), row((1, -1), 0)]  # x <= 1 and x <= y
    >>> feasible(rows)
    True
    >>> lexmin([row((-1, 0), 0), row((0, -1), Fraction(1, 2)), *rows], 2)
    (Fraction(0, 1), Fraction(1, 2))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

# (primitive integer direction, constant: an exact rational, int or Fraction)
Row = tuple[tuple[int, ...], Fraction | int]


class TooManyRows(Exception):
    """Elimination produced more rows than the caller's limit."""


def row(coefficients: Sequence[Fraction | int], constant: Fraction | int) -> Row:
    """The row coefficients . x + constant <= 0, scaled to a primitive direction.

    A positive scaling leaves the inequality unchanged, so the coefficients are
    cleared of denominators and divided by their gcd; the constant follows exactly.
    """
    if all(type(v) is int for v in coefficients):
        divisor = math.gcd(*coefficients) or 1
        direction = tuple(v // divisor for v in coefficients)
        if type(constant) is int:
            # an integer constant stays an int where the division is exact
            if constant % divisor == 0:
                return direction, constant // divisor
            return direction, Fraction(constant, divisor)
        return direction, Fraction(constant) / divisor
    fractions = [Fraction(v) for v in coefficients]
    scale = math.lcm(*(v.denominator for v in fractions)) if fractions else 1
    ints = [int(v * scale) for v in fractions]
    divisor = math.gcd(*ints) or 1
    return tuple(v // divisor for v in ints), Fraction(constant) * scale / divisor


# -- elimination in integers ------------------------------------------------------
#
# Inside elimination a row's constant is kept as an integer numerator and a positive
# denominator, coprime, so that combining rows is integer arithmetic; rows are
# indexed by direction: {direction: (numerator, denominator)}.

Constants = dict[tuple[int, ...], tuple[int, int]]


def _index(rows: Iterable[Row]) -> Constants | None:
    """One row per direction (the tightest); None when a constant row fails."""
    return _index_integer(
        (direction, k.numerator, k.denominator)
        if isinstance(k, Fraction)
        else (direction, int(k), 1)
        for direction, k in rows
    )


def _index_integer(
    rows: Iterable[tuple[tuple[int, ...], int, int]],
) -> Constants | None:
    out: Constants = {}
    for direction, numerator, denominator in rows:
        if not any(direction):
            if numerator > 0:
                return None
            continue
        tightest = out.get(direction)
        if tightest is None or tightest[0] * denominator < numerator * tightest[1]:
            out[direction] = (numerator, denominator)
    return out


def _eliminate(rows: Constants, j: int, limit: int | None) -> Constants | None:
    """Fourier-Motzkin: the rows of the projection that forgets x_j (None: empty)."""
    upper, lower, out = [], [], []
    for direction, (numerator, denominator) in rows.items():
        if direction[j] > 0:
            upper.append((direction, numerator, denominator))
        elif direction[j] < 0:
            lower.append((direction, numerator, denominator))
        else:
            out.append((direction, numerator, denominator))
    if limit is not None and len(out) + len(upper) * len(lower) > limit:
        raise TooManyRows
    for p, kp, dp in upper:
        for q, kq, dq in lower:
            wp, wq = -q[j], p[j]
            combined = [wp * x + wq * y for x, y in zip(p, q, strict=True)]
            divisor = math.gcd(*combined) or 1
            # (wp kp / dp + wq kq / dq) / divisor, reduced
            numerator = wp * kp * dq + wq * kq * dp
            denominator = dp * dq * divisor
            common = math.gcd(numerator, denominator)
            out.append(
                (
                    tuple(v // divisor for v in combined),
                    numerator // common,
                    denominator // common,
                )
            )
    return _index_integer(out)


def _bound(numerator: int, denominator: int, coefficient: int) -> Fraction:
    """The x_j at which coefficient x_j + numerator / denominator = 0."""
    return Fraction(-numerator, denominator * coefficient)


def feasible(rows: Iterable[Row], *, limit: int | None = None) -> bool | None:
    """Whether some x meets every row; None if elimination passes ``limit`` rows."""
    index = _index(rows)
    if index is None:
        return False
    if not index:
        return True
    n = len(next(iter(index)))
    try:
        for j in reversed(range(n)):
            index = _eliminate(index, j, limit)
            if index is None:
                return False
    except TooManyRows:
        return None
    return True


def lexmin(rows: Iterable[Row], n: int) -> tuple[Fraction, ...] | None:
    """The lexicographically smallest x meeting every row: x_1 as small as the rows
    allow, then x_2 given x_1, and so on. None when the set is empty or some x_j is
    unbounded below."""
    index = _index(rows)
    if index is None:
        return None
    point: list[Fraction] = []
    for j in range(n):
        # project onto x_j (x_1..x_(j-1) are already fixed and substituted)
        projected = index
        for other in reversed(range(j + 1, n)):
            projected = _eliminate(projected, other, None)
            if projected is None:
                return None
        low, high = None, None
        for direction, (numerator, denominator) in projected.items():
            a = direction[j]
            if a == 0:
                continue
            bound = _bound(numerator, denominator, a)
            if a < 0:
                low = bound if low is None or bound > low else low
            else:
                high = bound if high is None or bound < high else high
        if low is None or (high is not None and low > high):
            return None
        point.append(low)
        index = _index(_substitute(index, j, low))
        if index is None:
            return None
    return tuple(point)


def _substitute(rows: Constants, j: int, value: Fraction) -> list[Row]:
    out = []
    for direction, (numerator, denominator) in rows.items():
        constant = Fraction(numerator, denominator)
        if direction[j] == 0:
            out.append((direction, constant))
            continue
        rest = list(direction)
        rest[j] = 0
        out.append(row(rest, constant + direction[j] * value))
    return out


def minimum(
    rows: Iterable[Row], objective: Row, *, limit: int | None = None
) -> Fraction | None:
    """The smallest value of ``objective`` (direction . x + constant) over the rows;
    None when it is unbounded below, the set is empty, or elimination passes
    ``limit`` rows (undecided)."""
    # z = objective(x) as a new first coordinate, then every x_j eliminated
    direction, constant = objective
    extended = [((0, *d), k) for d, k in rows]
    extended.append(((-1, *direction), constant))
    extended.append(((1, *(-v for v in direction)), -constant))
    index = _index(extended)
    if index is None:
        return None
    try:
        for j in reversed(range(1, len(direction) + 1)):
            index = _eliminate(index, j, limit)
            if index is None:
                return None
    except TooManyRows:
        return None
    low = None
    for d, (numerator, denominator) in index.items():
        if d[0] < 0:
            bound = _bound(numerator, denominator, d[0])
            low = bound if low is None or bound > low else low
    return low
