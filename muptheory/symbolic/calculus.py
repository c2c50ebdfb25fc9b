"""The scaling calculus: coordinate sizes as powers of the width, in exact algebra.

Every vector in one training step of a width-M network has coordinates of a typical
size M^e, and e is what the calculus tracks. Exponents are linear forms in the
parameterization's unknowns (sympy symbols such as ``b_last`` or ``c_hidden``), and
the size of a sum of quantities is governed by the largest term, so a size is the
maximum of finitely many linear forms: an element of the max-plus (tropical)
semiring. Multiplying sizes adds exponents; adding quantities takes the maximum.

Sums over an index are sized by one of three rules, and every use names its rule:

- ``fixed``: a sum over a width-independent count (input dimension d, outputs C,
  batch P) keeps the size of its terms;
- ``clt``: a sum of M terms whose signs are independent (a fresh random matrix times
  a vector it has not seen) grows like M^{1/2};
- ``lln``: a sum of M terms that are correlated (an update built from h applied to
  h, or W W^T) grows like M.

Quantities that involve an inverse, such as (I + C_gamma)^{-1}, have a size that is
the negative of the dominant term: that is not a maximum, so the calculus splits
into *scenarios*, one for each term that may dominate, each with its assumption
written down. ``Calculation.dominant`` does the split; ``scenarios`` runs a method's
sizing function once per consistent choice. A piece that provably never exceeds
another under the scenario's assumptions is not split on (it could only tie), and a
choice that contradicts the earlier ones ends the run; both are decided exactly
(``polyhedra.py``).

Example:
    >>> calc = Calculation()
    >>> print(calc.sum_rule("u", Size.of(-sympy.Symbol("b")), "clt", note="h").exponent)
    1/2 - b
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from muptheory.symbolic import polyhedra

RULES: dict[str, Fraction] = {
    "fixed": Fraction(0),
    "clt": Fraction(1, 2),
    "lln": Fraction(1),
}
RULE_TEXT = {
    "fixed": "sum over a width-independent count: size unchanged",
    "clt": "sum of M sign-independent terms (CLT): times M^(1/2)",
    "lln": "sum of M correlated terms (law of large numbers): times M",
}


# -- linear forms as integers ------------------------------------------------------
#
# A size's linear forms are kept as integers over one denominator, the size's
# ``scale``: a form is a *direction*, the pairs (unknown's name, integer coefficient)
# sorted by name with zero coefficients left out, and an integer constant, and it
# stands for (sum of coefficient * unknown + constant) / scale. Names and integers
# compare, hash and add in C, so sizing does no rational arithmetic; a positive
# scale keeps every sign and every order, and sorting the forms as plain tuples
# orders them by the unknowns' names, then coefficients, then constants.
#
# Sizing reruns a method's step once per scenario, and scenarios share most of their
# products and sums, so the pure operations below are memoized within a process
# (``clear_caches`` empties them; no result is stored anywhere else).

# every unknown met so far, by name, to write forms back as sympy expressions
_SYMBOLS: dict[str, sympy.Symbol] = {}


@functools.cache
def _linear(expr) -> tuple[dict, Fraction]:
    """Split a linear sympy expression (or a number) into coefficients (by the
    unknown's name) and a constant, both exact rationals."""
    if isinstance(expr, Fraction | int):
        return {}, Fraction(expr)
    expr = sympy.expand(sympy.sympify(expr))
    coefficients: dict[str, Fraction] = {}
    constant = Fraction(0)
    for key, value in expr.as_coefficients_dict().items():
        value = Fraction(int(sympy.Rational(value).p), int(sympy.Rational(value).q))
        if key == 1:
            constant += value
        elif isinstance(key, sympy.Symbol):
            known = _SYMBOLS.setdefault(key.name, key)
            if known != key:
                raise ValueError(
                    f"two different unknowns are named {key.name!r} ({known!r} and "
                    f"{key!r}); sizes tell unknowns apart by name"
                )
            coefficients[key.name] = coefficients.get(key.name, Fraction(0)) + value
        else:
            raise ValueError(f"exponent {expr} is not linear in the unknowns")
    return {k: v for k, v in coefficients.items() if v != 0}, constant


@functools.cache
def _add_directions(x: tuple, y: tuple) -> tuple:
    """The direction of the sum of two forms (at the same scale)."""
    if not x or not y:
        return x or y
    total = dict(x)
    for name, value in y:
        total[name] = total.get(name, 0) + value
    if 0 in total.values():  # a coefficient cancelled
        total = {name: value for name, value in total.items() if value}
    return tuple(sorted(total.items()))


def _rescaled(forms: tuple, factor: int) -> tuple:
    """The same forms over a denominator ``factor`` times larger."""
    if factor == 1:
        return forms
    return tuple(
        (tuple((name, value * factor) for name, value in direction), constant * factor)
        for direction, constant in forms
    )


@functools.cache
def _forms_over(size: Size, scale: int) -> tuple:
    """The forms of ``size`` over the denominator ``scale`` (a multiple of its own)."""
    return _rescaled(size.forms, scale // size.scale)


def _reduced(forms: tuple, scale: int) -> Size:
    """The size of ``forms`` over ``scale``, with the smallest scale that keeps
    every number an integer (so equal sizes are equal tuples)."""
    if scale != 1:
        # the constants alone usually settle it (one of them shares no factor)
        divisor = math.gcd(scale, *[constant for _, constant in forms])
        if divisor != 1:
            divisor = math.gcd(
                divisor, *[value for direction, _ in forms for _, value in direction]
            )
        if divisor != 1:
            forms = tuple(
                (
                    tuple((name, value // divisor) for name, value in direction),
                    constant // divisor,
                )
                for direction, constant in forms
            )
            scale //= divisor
    return Size(forms, scale)


def _largest_per_direction(forms, into: dict) -> dict:
    """Add ``forms`` to ``into``, keeping the larger constant per direction."""
    for direction, constant in forms:
        if into.get(direction, constant) <= constant:
            into[direction] = constant
    return into


@functools.cache
def _product(x: Size, y: Size) -> Size:
    """The forms of a product of sizes: every sum of a form of each."""
    scale = math.lcm(x.scale, y.scale)
    xs, ys = _forms_over(x, scale), _forms_over(y, scale)
    forms: dict = {}
    for dx, kx in xs:
        for dy, ky in ys:
            direction, constant = _add_directions(dx, dy), kx + ky
            if forms.get(direction, constant) <= constant:
                forms[direction] = constant
    return _reduced(tuple(sorted(forms.items())), scale)


@functools.cache
def _maximum(x: Size, y: Size) -> Size:
    """The forms of a sum of sizes: both sets, the larger constant per direction."""
    scale = math.lcm(x.scale, y.scale)
    # start from the size with more forms: when the other brings no new direction
    # (one size's pieces among the other's), the forms are still in order
    first, second = (x, y) if len(x.forms) >= len(y.forms) else (y, x)
    forms = dict(_forms_over(first, scale))
    _largest_per_direction(_forms_over(second, scale), forms)
    items = tuple(forms.items())
    if len(items) != len(first.forms):
        items = tuple(sorted(items))
    return _reduced(items, scale)


@functools.cache
def _size_of(exponents: tuple) -> Size:
    """The size M^max(exponents) of sympy expressions or numbers."""
    parsed = [_linear(e) for e in exponents]
    scale = math.lcm(
        *(k.denominator for _, k in parsed),
        *(v.denominator for c, _ in parsed for v in c.values()),
    )
    forms: dict = {}
    for coefficients, constant in parsed:
        direction = tuple(sorted((n, int(v * scale)) for n, v in coefficients.items()))
        _largest_per_direction([(direction, int(constant * scale))], forms)
    return Size(tuple(sorted(forms.items())), scale)


@functools.cache
def _times_width(size: Size, power) -> Size:
    """``size`` times M^power."""
    shift = Fraction(str(power)) if not isinstance(power, Fraction) else power
    scale = math.lcm(size.scale, shift.denominator)
    step = shift.numerator * (scale // shift.denominator)
    forms = _forms_over(size, scale)
    return _reduced(tuple((d, k + step) for d, k in forms), scale)


@functools.cache
def _squared(size: Size) -> Size:
    if size.scale % 2 == 0:
        return Size(size.forms, size.scale // 2)
    return Size(_rescaled(size.forms, 2), size.scale)


@functools.cache
def _inverse(size: Size) -> Size:
    ((direction, constant),) = size.forms
    negated = tuple((name, -value) for name, value in direction)
    return Size(((negated, -constant),), size.scale)


@functools.cache
def _pieces(size: Size) -> tuple[Size, ...]:
    return tuple(_reduced((form,), size.scale) for form in size.forms)


def clear_caches() -> None:
    """Forget the memoized operations on linear forms (for timing from scratch)."""
    for memoized in (
        _size_of,
        _times_width,
        _add_directions,
        _forms_over,
        _squared,
        _inverse,
        _pieces,
        _product,
        _maximum,
        _linear,
        _contenders,
        _consistent,
    ):
        memoized.cache_clear()


def _to_sympy(direction: tuple, constant: int, scale: int) -> sympy.Expr:
    out = sympy.Rational(constant, scale)
    for name, value in direction:
        out += sympy.Rational(value, scale) * _SYMBOLS[name]
    return out


@dataclass(frozen=True)
class Size:
    """A coordinate size M^{max(terms)}, the terms linear forms in the unknowns.

    Stored as integer forms over one denominator ``scale`` (see above): of two forms
    with the same direction the larger constant always wins, so only it is kept.
    """

    forms: tuple  # sorted ((direction, constant), ...), integers over ``scale``
    scale: int = 1

    def __post_init__(self) -> None:
        # sizes are the keys of the memoized operations: hash the forms once
        object.__setattr__(self, "_hash", hash((self.forms, self.scale)))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def of(cls, *exponents) -> Size:
        return _size_of(exponents)

    @classmethod
    def one(cls) -> Size:
        return cls.of(0)

    def __mul__(self, other: Size) -> Size:
        return _product(self, other)

    def __add__(self, other: Size) -> Size:
        return _maximum(self, other)

    def squared(self) -> Size:
        """This size squared. Cross terms t_i + t_j never exceed max(2 t_i, 2 t_j),
        so only the doubled terms are kept."""
        return _squared(self)

    def times_width(self, power) -> Size:
        """This size times M^power."""
        return _times_width(self, power)

    def to_power(self, power: Fraction) -> Size:
        """This size raised to ``power``: its exponent times ``power``; defined for
        one-term sizes only (a power of a maximum is not a maximum of powers when
        ``power`` < 0)."""
        if len(self.forms) != 1:
            raise ValueError("only a one-term size has a max-plus power")
        ((direction, constant),) = self.forms
        power = Fraction(power)
        direction = tuple((n, v * power.numerator) for n, v in direction)
        form = (direction, constant * power.numerator)
        return _reduced((form,), self.scale * power.denominator)

    def inverse_of_single(self) -> Size:
        """1 / (this size); defined for one-term sizes only."""
        if len(self.forms) != 1:
            raise ValueError("only a one-term size has a max-plus inverse")
        return _inverse(self)

    def pieces(self) -> tuple[Size, ...]:
        """Each linear form as a one-term size."""
        return _pieces(self)

    @property
    def terms(self) -> list[sympy.Expr]:
        """The linear forms, as sympy expressions."""
        return [_to_sympy(d, k, self.scale) for d, k in self.forms]

    @property
    def exponent(self) -> str:
        """The exponent written out: ``max(t1, t2, ...)`` or the single term."""
        terms = [str(t) for t in self.terms]
        return f"max({', '.join(terms)})" if len(terms) > 1 else terms[0]

    def evaluate(self, values: dict | Point) -> Fraction:
        """The exponent at concrete values of the unknowns, exactly."""
        point = values if isinstance(values, Point) else Point(values)
        rows = self._integer_rows(point.names)
        q, x = point.denominator, point.numerators
        best = max(sum(map(operator.mul, a, x)) + k * q for a, k in rows)
        return Fraction(best, self.scale * q)

    def _integer_rows(self, names: tuple) -> list:
        """The forms as dense integer rows over ``names`` (memoized per order of
        names, for ``evaluate``)."""
        cache = self.__dict__.setdefault("_rows", {})
        if names not in cache:
            index = {n: i for i, n in enumerate(names)}
            rows = []
            for direction, constant in self.forms:
                a = [0] * len(names)
                for name, value in direction:
                    if name not in index:
                        raise ValueError(f"no value given for {name}")
                    a[index[name]] = value
                rows.append((tuple(a), constant))
            cache[names] = rows
        return cache[names]

    def __str__(self) -> str:
        return str(self.exponent)


class Point:
    """Values of the unknowns over one common denominator: x = numerator / denominator.

    Build it once to evaluate many sizes at the same exponents.
    """

    def __init__(self, values: dict) -> None:
        fractions = {s.name: _as_fraction(v) for s, v in values.items()}
        self.names = tuple(sorted(fractions))
        self.denominator = math.lcm(*(v.denominator for v in fractions.values()))
        self.numerators = tuple(
            fractions[n].numerator * (self.denominator // fractions[n].denominator)
            for n in self.names
        )


def _as_fraction(value) -> Fraction:
    if isinstance(value, Fraction | int):
        return Fraction(value)
    value = sympy.Rational(value)
    return Fraction(int(value.p), int(value.q))


def max_of(*sizes: Size) -> Size:
    """The size of a sum of quantities: the largest of them."""
    out = sizes[0]
    for s in sizes[1:]:
        out = out + s
    return out


@dataclass
class Step:
    """One line of a derivation: which quantity, how it was sized, its exponent."""

    key: str
    label: str
    rule: str
    size: Size
    note: str = ""

    def render(self, values: dict | None = None) -> str:
        rule = f" [{self.rule}]" if self.rule else ""
        note = f"  ({self.note})" if self.note else ""
        exponent = self.size.exponent if values is None else self.size.evaluate(values)
        return f"{self.label:<40} ~ M^({exponent}){rule}{note}"


@dataclass
class Calculation:
    """A record of sized quantities, with the scenario choices that shaped them.

    Attributes:
        steps: every sized quantity in order, for ``--explain``.
        quantities: the latest size of each named quantity.
        assumption_sizes: one-term sizes whose exponents the scenario assumes
            <= 0 (from ``dominant``).
        branches: each choice made, (quantity, dominant term's name, its size).
    """

    choices: tuple[int, ...] = ()
    steps: list[Step] = field(default_factory=list)
    quantities: dict[str, Size] = field(default_factory=dict)
    assumption_sizes: list[Size] = field(default_factory=list)
    branches: list[tuple] = field(default_factory=list)
    branch_sizes: list[int] = field(default_factory=list)
    generic_sizes: dict[str, Size] = field(default_factory=dict)

    def record(
        self, key: str, size: Size, rule: str = "", note: str = "", label: str = ""
    ) -> Size:
        """Store the size of quantity ``key`` (shown as ``label``) and return it."""
        self.steps.append(Step(key, label or key, rule, size, note))
        self.quantities[key] = size
        return size

    def sum_rule(
        self, key: str, term_size: Size, rule: str, note: str = "", label: str = ""
    ) -> Size:
        """Size a sum of terms of size ``term_size`` by the summation ``rule``."""
        if rule not in RULES:
            raise ValueError(f"unknown summation rule {rule!r}")
        return self.record(key, term_size.times_width(RULES[rule]), rule, note, label)

    def dominant(self, quantity: str, candidates: dict[str, Size]) -> Size:
        """The size of a sum whose dominant term must be chosen (for an inverse).

        Each linear piece of each candidate may dominate; the scenario being run
        picks one and records that every other piece is at most it. A choice that
        contradicts the scenario's earlier assumptions (no exponents satisfy them
        all, decided exactly) ends the run with ``InconsistentScenario``.
        """
        pieces = [(name, p) for name, size in candidates.items() for p in size.pieces()]
        pieces = list(_contenders(tuple(pieces), tuple(self.assumption_sizes)))
        index = len(self.branch_sizes)
        self.branch_sizes.append(len(pieces))
        pick = self.choices[index] if index < len(self.choices) else 0
        name, top = pieces[pick]
        below_top = top.inverse_of_single()
        for _other_name, piece in pieces:
            gap = piece * below_top
            if gap != ZERO:
                self.assumption_sizes.append(gap)
        if not _consistent(tuple(self.assumption_sizes)):
            raise InconsistentScenario(quantity)
        self.branches.append((quantity, name, top))
        return self.record(quantity, top, "dominant", f"the {name} term dominates")

    @property
    def assumptions(self) -> list[sympy.Expr]:
        """The assumed inequalities (each expression <= 0), as sympy expressions."""
        return [size.terms[0] for size in self.assumption_sizes]

    @property
    def assumption_text(self) -> list[str]:
        """One line per scenario choice, for the explanation."""
        return [
            f"{quantity}: the {name} term dominates, M^({top.terms[0]})"
            for quantity, name, top in self.branches
        ]


ZERO = Size(forms=(((), 0),))  # M^0, the size of a width-independent quantity


@functools.cache
def _contenders(pieces: tuple, assumptions: tuple) -> tuple:
    """The pieces that can dominate: a piece that another kept piece is provably at
    least as large as, wherever the scenario's assumptions hold, can only tie with
    it (that choice is covered by the other's), so it is not a branch of its own."""
    names = _names([p for _, p in pieces] + list(assumptions))
    rows = [_dense_row(size, names) for size in assumptions]

    def at_least(q: Size, p: Size) -> bool:  # q >= p wherever the assumptions hold
        gap = q * p.inverse_of_single()
        low = polyhedra.minimum(rows, _dense_row(gap, names), limit=2000)
        return low is not None and low >= 0

    kept = []
    for i, (name, p) in enumerate(pieces):
        covered = any(
            at_least(q, p) and (j < i or not at_least(p, q))
            for j, (_, q) in enumerate(pieces)
            if j != i
        )
        if not covered:
            kept.append((name, p))
    return tuple(kept)


def _names(sizes: list[Size]) -> list[str]:
    """The unknowns that one-term ``sizes`` involve, in name order."""
    return sorted({n for size in sizes for d, _ in size.forms for n, _ in d})


def _dense_row(size: Size, names: list[str]) -> polyhedra.Row:
    """A one-term size's exponent <= 0 as a polyhedron row over ``names``."""
    ((direction, constant),) = size.forms
    index = {n: i for i, n in enumerate(names)}
    dense = [0] * len(names)
    for name, value in direction:
        dense[index[name]] = value
    return polyhedra.row(dense, constant)


class InconsistentScenario(Exception):
    """A scenario's dominant-term choices contradict each other."""


@functools.cache
def _consistent(assumptions: tuple, limit: int = 2000) -> bool:
    """Whether some exponents make every one-term size's exponent <= 0 (True when
    undecided)."""
    names = _names(list(assumptions))
    rows = [_dense_row(size, names) for size in assumptions]
    return polyhedra.feasible(rows, limit=limit) is not False


@dataclass
class Scenario:
    """One consistent run of a sizing function."""

    calculation: Calculation

    @property
    def assumptions(self) -> list[sympy.Expr]:
        return self.calculation.assumptions

    @property
    def assumption_sizes(self) -> list[Size]:
        """Each assumption as a one-term size (its exponent must be <= 0)."""
        return self.calculation.assumption_sizes

    def holds_at(self, values: dict | Point) -> bool:
        """Whether every assumption of the scenario holds at these exponents."""
        point = values if isinstance(values, Point) else Point(values)
        q, x = point.denominator, point.numerators
        for size in self.calculation.assumption_sizes:
            ((a, k),) = size._integer_rows(point.names)
            if sum(map(operator.mul, a, x)) + k * q > 0:
                return False
        return True


def scenarios(sizing: Callable[[Calculation], None]) -> Iterator[Scenario]:
    """Run ``sizing`` once per consistent combination of dominant-term choices.

    The choices are enumerated depth first: a run reports how many options each
    branch point it met had, and the next run advances the last branch point
    that still has options (like an odometer). A run whose choices contradict each
    other stops at the contradicting branch point, and the odometer moves on from
    there, so no later choice is tried under it.
    """
    choices: list[int] = []
    while True:
        calc = Calculation(choices=tuple(choices))
        try:
            sizing(calc)
        except InconsistentScenario:
            pass
        else:
            yield Scenario(calc)
        sizes = calc.branch_sizes
        choices = list(choices[: len(sizes)]) + [0] * (len(sizes) - len(choices))
        # advance the odometer from the last branch point
        position = len(sizes) - 1
        while position >= 0 and choices[position] + 1 >= sizes[position]:
            position -= 1
        if position < 0:
            return
        choices = choices[:position] + [choices[position] + 1]
