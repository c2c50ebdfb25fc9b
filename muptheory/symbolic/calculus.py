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


Linear = tuple  # (frozenset of (symbol, Fraction) pairs, Fraction constant)


@functools.cache
def _linear(expr) -> tuple[frozenset, Fraction]:
    """Split a linear sympy expression (or a number) into coefficients and constant."""
    if isinstance(expr, Fraction | int):
        return frozenset(), Fraction(expr)
    expr = sympy.expand(sympy.sympify(expr))
    coefficients, constant = {}, Fraction(0)
    for key, value in expr.as_coefficients_dict().items():
        value = Fraction(int(sympy.Rational(value).p), int(sympy.Rational(value).q))
        if key == 1:
            constant += value
        elif isinstance(key, sympy.Symbol):
            coefficients[key] = coefficients.get(key, Fraction(0)) + value
        else:
            raise ValueError(f"exponent {expr} is not linear in the unknowns")
    return frozenset((k, v) for k, v in coefficients.items() if v != 0), constant


# Sizing reruns a method's step once per scenario, and scenarios share most of their
# products and sums, so the pure operations on linear forms are memoized within a
# process (``clear_caches`` empties them; no result is stored anywhere else).


@functools.cache
def _add_linear(x: frozenset, y: frozenset) -> frozenset:
    total: dict = dict(x)
    for k, v in y:
        total[k] = total.get(k, Fraction(0)) + v
    return frozenset((k, v) for k, v in total.items() if v != 0)


def _form_order(form) -> tuple:
    """A cheap deterministic order of linear forms (by symbol names, then values)."""
    coefficients, constant = form
    return (_coefficient_order(coefficients), constant)


@functools.cache
def _coefficient_order(coefficients: frozenset) -> list:
    return sorted((s.name, v) for s, v in coefficients)


@functools.cache
def _product(x: tuple, y: tuple) -> tuple:
    """The forms of a product of sizes: every sum of a form of each."""
    forms: dict = {}
    for cx, kx in x:
        for cy, ky in y:
            coefficients, constant = _add_linear(cx, cy), kx + ky
            if coefficients not in forms or forms[coefficients] < constant:
                forms[coefficients] = constant
    return tuple(sorted(forms.items(), key=_form_order))


@functools.cache
def _maximum(x: tuple, y: tuple) -> tuple:
    """The forms of a sum of sizes: both sets, the larger constant per direction."""
    forms = dict(x)
    for coefficients, constant in y:
        if coefficients not in forms or forms[coefficients] < constant:
            forms[coefficients] = constant
    return tuple(sorted(forms.items(), key=_form_order))


def clear_caches() -> None:
    """Forget the memoized operations on linear forms (for timing from scratch)."""
    for memoized in (
        _add_linear,
        _coefficient_order,
        _product,
        _maximum,
        _linear,
        _contenders,
        _consistent,
    ):
        memoized.cache_clear()


def _to_sympy(coefficients: frozenset, constant: Fraction) -> sympy.Expr:
    out = sympy.Rational(constant.numerator, constant.denominator)
    for symbol, value in coefficients:
        out += sympy.Rational(value.numerator, value.denominator) * symbol
    return out


@dataclass(frozen=True)
class Size:
    """A coordinate size M^{max(terms)}, the terms linear forms in the unknowns.

    Stored as a map from coefficient vectors to constants: of two forms with the same
    coefficients the larger constant always wins, so only it is kept.
    """

    forms: tuple  # sorted ((coefficients, constant), ...)

    @classmethod
    def _from_map(cls, forms: dict) -> Size:
        return cls(tuple(sorted(forms.items(), key=_form_order)))

    @classmethod
    def of(cls, *exponents) -> Size:
        forms: dict = {}
        for e in exponents:
            coefficients, constant = _linear(e)
            if coefficients not in forms or forms[coefficients] < constant:
                forms[coefficients] = constant
        return cls._from_map(forms)

    @classmethod
    def one(cls) -> Size:
        return cls.of(0)

    def __mul__(self, other: Size) -> Size:
        return Size(_product(self.forms, other.forms))

    def __add__(self, other: Size) -> Size:
        return Size(_maximum(self.forms, other.forms))

    def squared(self) -> Size:
        """This size squared. Cross terms t_i + t_j never exceed max(2 t_i, 2 t_j),
        so only the doubled terms are kept."""
        return Size(
            tuple((frozenset((k, 2 * v) for k, v in c), 2 * k) for c, k in self.forms)
        )

    def times_width(self, power) -> Size:
        """This size times M^power."""
        shift = Fraction(str(power)) if not isinstance(power, Fraction) else power
        return Size(tuple((c, k + shift) for c, k in self.forms))

    def inverse_of_single(self) -> Size:
        """1 / (this size); defined for one-term sizes only."""
        if len(self.forms) != 1:
            raise ValueError("only a one-term size has a max-plus inverse")
        ((coefficients, constant),) = self.forms
        return Size(((frozenset((k, -v) for k, v in coefficients), -constant),))

    @property
    def terms(self) -> list[sympy.Expr]:
        """The linear forms, as sympy expressions."""
        return [_to_sympy(c, k) for c, k in self.forms]

    @property
    def exponent(self) -> str:
        """The exponent written out: ``max(t1, t2, ...)`` or the single term."""
        terms = [str(t) for t in self.terms]
        return f"max({', '.join(terms)})" if len(terms) > 1 else terms[0]

    def evaluate(self, values: dict | Point) -> Fraction:
        """The exponent at concrete values of the unknowns, exactly."""
        point = values if isinstance(values, Point) else Point(values)
        scale, rows = self._integer_rows(point.symbols)
        q, x = point.denominator, point.numerators
        best = max(sum(map(operator.mul, a, x)) + k * q for a, k in rows)
        return Fraction(best, scale * q)

    def _integer_rows(self, symbols: tuple) -> tuple[int, list]:
        """The forms times one common denominator, as integer rows over ``symbols``
        (memoized per order of symbols, for ``evaluate``)."""
        cache = self.__dict__.setdefault("_rows", {})
        if symbols not in cache:
            index = {s: i for i, s in enumerate(symbols)}
            denominators = [k.denominator for _, k in self.forms]
            denominators += [v.denominator for c, _ in self.forms for _, v in c]
            scale = math.lcm(*denominators)
            rows = []
            for coefficients, constant in self.forms:
                a = [0] * len(symbols)
                for symbol, value in coefficients:
                    if symbol not in index:
                        raise ValueError(f"no value given for {symbol}")
                    a[index[symbol]] = int(value * scale)
                rows.append((tuple(a), int(constant * scale)))
            cache[symbols] = (scale, rows)
        return cache[symbols]

    def __str__(self) -> str:
        return str(self.exponent)


class Point:
    """Values of the unknowns over one common denominator: x = numerator / denominator.

    Build it once to evaluate many sizes at the same exponents.
    """

    def __init__(self, values: dict) -> None:
        fractions = {s: _as_fraction(v) for s, v in values.items()}
        self.symbols = tuple(sorted(fractions, key=lambda s: s.name))
        self.denominator = math.lcm(*(v.denominator for v in fractions.values()))
        self.numerators = tuple(
            fractions[s].numerator * (self.denominator // fractions[s].denominator)
            for s in self.symbols
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
        assumption_forms: linear forms assumed <= 0 by the scenario (from
            ``dominant``), as (coefficients, constant).
        branches: each choice made, (quantity, dominant term's name, its form).
    """

    choices: tuple[int, ...] = ()
    steps: list[Step] = field(default_factory=list)
    quantities: dict[str, Size] = field(default_factory=dict)
    assumption_forms: list[tuple] = field(default_factory=list)
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
        pieces = [(name, f) for name, size in candidates.items() for f in size.forms]
        pieces = list(_contenders(tuple(pieces), tuple(self.assumption_forms)))
        index = len(self.branch_sizes)
        self.branch_sizes.append(len(pieces))
        pick = self.choices[index] if index < len(self.choices) else 0
        name, top = pieces[pick]
        for _other_name, form in pieces:
            gap = (_add_linear(form[0], _negate(top[0])), form[1] - top[1])
            if gap[0] or gap[1]:
                self.assumption_forms.append(gap)
        if not _consistent(tuple(self.assumption_forms)):
            raise InconsistentScenario(quantity)
        self.branches.append((quantity, name, top))
        return self.record(
            quantity, Size((top,)), "dominant", f"the {name} term dominates"
        )

    @property
    def assumptions(self) -> list[sympy.Expr]:
        """The assumed inequalities (each expression <= 0), as sympy expressions."""
        return [_to_sympy(c, k) for c, k in self.assumption_forms]

    @property
    def assumption_text(self) -> list[str]:
        """One line per scenario choice, for the explanation."""
        return [
            f"{quantity}: the {name} term dominates, M^({_to_sympy(*top)})"
            for quantity, name, top in self.branches
        ]


@functools.cache
def _contenders(pieces: tuple, assumptions: tuple) -> tuple:
    """The pieces that can dominate: a piece that another kept piece is provably at
    least as large as, wherever the scenario's assumptions hold, can only tie with
    it (that choice is covered by the other's), so it is not a branch of its own."""
    forms = [f for _, f in pieces] + list(assumptions)
    symbols = sorted({s for c, _ in forms for s, _ in c}, key=lambda s: s.name)
    rows = [_dense_row(form, symbols) for form in assumptions]

    def at_least(q, p) -> bool:  # q >= p wherever the assumptions hold
        gap = (_add_linear(q[0], _negate(p[0])), q[1] - p[1])
        low = polyhedra.minimum(rows, _dense_row(gap, symbols), limit=2000)
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


def _dense_row(form, symbols: list):
    coefficients, constant = form
    index = {s: i for i, s in enumerate(symbols)}
    dense = [Fraction(0)] * len(symbols)
    for symbol, value in coefficients:
        dense[index[symbol]] = value
    return polyhedra.row(dense, constant)


class InconsistentScenario(Exception):
    """A scenario's dominant-term choices contradict each other."""


def _negate(coefficients: frozenset) -> frozenset:
    return frozenset((k, -v) for k, v in coefficients)


@functools.cache
def _consistent(forms: tuple, limit: int = 2000) -> bool:
    """Whether some exponents make every form <= 0 (True when undecided)."""
    symbols = sorted({s for c, _ in forms for s, _ in c}, key=lambda s: s.name)
    index = {s: i for i, s in enumerate(symbols)}
    rows = []
    for coefficients, constant in forms:
        dense = [Fraction(0)] * len(symbols)
        for symbol, value in coefficients:
            dense[index[symbol]] = value
        rows.append(polyhedra.row(dense, constant))
    return polyhedra.feasible(rows, limit=limit) is not False


@dataclass
class Scenario:
    """One consistent run of a sizing function."""

    calculation: Calculation

    @property
    def assumptions(self) -> list[sympy.Expr]:
        return self.calculation.assumptions

    @functools.cached_property
    def _all_assumptions(self) -> Size:
        # every assumed form as one size's rows, for ``holds_at``
        return Size(tuple(self.calculation.assumption_forms))

    @functools.cached_property
    def assumption_sizes(self) -> list[Size]:
        """Each assumption as a one-term size (its exponent must be <= 0)."""
        return [Size((form,)) for form in self.calculation.assumption_forms]

    def holds_at(self, values: dict | Point) -> bool:
        """Whether every assumption of the scenario holds at these exponents."""
        point = values if isinstance(values, Point) else Point(values)
        if not self.calculation.assumption_forms:
            return True
        _, rows = self._all_assumptions._integer_rows(point.symbols)
        q, x = point.denominator, point.numerators
        return all(sum(map(operator.mul, a, x)) + k * q <= 0 for a, k in rows)


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
