"""The muP desiderata as conditions on sized quantities, and their exact solution.

THEORY section 3 asks, one step from initialization and per coordinate:

1. stable initialization: pre-activations Theta(1), output O(1);
2. maximal updates: each layer's own update Delta W_l h_(l-1) is Theta(1);
3. stable, nontrivial training: the output change is Theta(1) and nothing blows
   up; hidden features change by Theta(1);
4. every knob of a local rule keeps 1-3 (the rule adds its own conditions).

A quantity "Theta(1)" has size exponent max(pieces) = 0: every piece <= 0 and at
least one piece = 0. A quantity "O(1)" has every piece <= 0. ``solve`` picks, for
each Theta(1) quantity, which piece is tight, solves the linear equations exactly
(fraction-free Gauss-Jordan elimination on integer rows), and checks the inequalities
exactly. Where the desiderata leave an exponent inside an interval (BP's b_L >= 1 is
the classic case) the smallest value is taken, by exact Fourier-Motzkin elimination
(``polyhedra.py``): the largest initialization that keeps the conditions, as muP
takes the largest updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import sympy

from muptheory.symbolic import polyhedra
from muptheory.symbolic.calculus import Size


@dataclass(frozen=True)
class Condition:
    """A requirement on one quantity.

    Attributes:
        key: the quantity's key in the calculation (generic over the two passes).
        kind: ``"theta"`` (exactly Theta(1)) or ``"bounded"`` (at most O(1)).
        desideratum: the item of THEORY section 3 it comes from (1-4).
        text: what the condition says, for messages and explanations.
        strict: whether ``classify`` counts a miss as instability. A rule's own
            maximal-update conditions (trained feedback learning Theta(1)) are not
            strict: missing them from below leaves training stable, and
            ``classify`` reports it as a remark.
    """

    key: str
    kind: str
    desideratum: int
    text: str
    strict: bool = True


STABILITY: tuple[Condition, ...] = (
    Condition(
        "preactivation[first]", "theta", 1, "first-layer pre-activations Theta(1)"
    ),
    Condition("preactivation[hidden]", "theta", 1, "hidden pre-activations Theta(1)"),
    Condition("output[init]", "bounded", 1, "output at initialization O(1)"),
    Condition("update[first]", "bounded", 3, "first layer's update O(1)"),
    Condition("update[hidden]", "bounded", 3, "hidden layer's update O(1)"),
    Condition("update[last]", "bounded", 3, "last layer's update O(1)"),
    Condition(
        "feature_change[first]", "bounded", 3, "first-layer features do not blow up"
    ),
    Condition("feature_change[hidden]", "bounded", 3, "hidden features do not blow up"),
    Condition("output_change", "bounded", 3, "output change does not blow up"),
)

MAXIMAL: tuple[Condition, ...] = (
    Condition("update[first]", "theta", 2, "first layer's own update Theta(1)"),
    Condition("update[hidden]", "theta", 2, "hidden layer's own update Theta(1)"),
    Condition("update[last]", "theta", 2, "last layer's own update Theta(1)"),
    Condition("output_change", "theta", 3, "output change Theta(1) (nontrivial)"),
    Condition("feature_change[hidden]", "theta", 3, "hidden features move Theta(1)"),
)

KNOB_TEXT = {
    "activity_shift": "PC activity shifts v_l - h_l stay O(1)",
    "inference_conditioning": "PC inference stays well conditioned: C_gamma O(1)",
}
# the quantities of rules whose conditions are written "<quantity> O(1)/Theta(1)"
KNOB_QUANTITY = {
    "feedback_init[last]": "top feedback at init, V_L(0) x for Theta(1) x,",
    "feedback_init[hidden]": "hidden feedback at init, V_l(0) x for Theta(1) x,",
    "reconstruction_step[last]": "top feedback's reconstruction step dV_L s",
    "reconstruction_step[hidden]": "hidden feedback's reconstruction step dV_l s",
    "target_displacement[hidden]": "target displacement sent down by V_L",
    "target_displacement[first]": "target displacement sent down by V_l",
}


# The whole system is first tested for a common point by elimination, but only while
# that stays cheap (at most this many rows per step); past it the depth-first search
# below decides, exactly, on its own.
PRESCREEN_ROWS = 300


def knob_conditions(
    bounded_keys: tuple[str, ...],
    theta_keys: tuple[str, ...] = (),
    maximal_keys: tuple[str, ...] = (),
) -> tuple[Condition, ...]:
    """A rule's own conditions: quantities kept O(1), ratios pinned to Theta(1),
    and its own maximal updates (Theta(1) for muP, remarks for ``classify``)."""

    def text(key: str, size: str) -> str:
        return KNOB_TEXT.get(key, f"{KNOB_QUANTITY.get(key, key)} {size}")

    out = [Condition(k, "bounded", 4, text(k, "O(1)")) for k in bounded_keys]
    out += [Condition(k, "theta", 4, text(k, "Theta(1)")) for k in theta_keys]
    out += [
        Condition(k, "theta", 4, text(k, "Theta(1)"), strict=False)
        for k in maximal_keys
    ]
    return tuple(out)


def solve(
    theta: list[Size],
    bounded: list[Size],
    unknowns: list[sympy.Symbol],
) -> list[dict[sympy.Symbol, sympy.Rational]]:
    """All solutions of max(pieces) = 0 for each ``theta`` size, with ``bounded`` <= 0.

    Every piece of every size must be <= 0. A piece that is provably at most another
    piece of the same Theta(1) quantity wherever the inequalities hold is dropped
    first (if it is tight, so is the other). Then each choice of one tight piece per
    Theta(1) quantity is a linear system, solved exactly; its solution is kept when
    it meets every inequality, with free directions pinned at their smallest
    feasible value (lexicographically, in the order of ``unknowns``). Returns each
    distinct solution once.

    The choices are walked depth first, one equation at a time, so systems that
    share tight pieces share their elimination, and a branch stops as soon as its
    equations are inconsistent or pin a point that breaks an inequality.
    """
    space = _Space(unknowns, [*bounded, *theta])
    inequalities = list(_bounded_index(space, [*bounded, *theta]).items())
    rows = [polyhedra.row(a, k) for a, k in inequalities]
    if polyhedra.feasible(rows, limit=PRESCREEN_ROWS) is False:
        return []
    known = _Known(dict(inequalities))
    choices = sorted(
        (_undominated(space.vectors(size), known) for size in theta),
        key=len,
    )
    search = _Search(space, inequalities)
    search.walk(choices, _Equations(len(unknowns)))
    return [
        {
            u: sympy.Rational(v.numerator, v.denominator)
            for u, v in zip(unknowns, point, strict=True)
        }
        for point in search.solutions
    ]


def tie_set(
    theta: list[Size], assumptions: list[Size], unknowns: list[sympy.Symbol]
) -> tuple | None:
    """The set on which every solution lies, when the scenario's choices all tie
    there; None otherwise.

    A Theta(1) quantity with a single piece is an equation every solution meets.
    When each assumption of the scenario (a gap between two terms, <= 0) vanishes
    identically on the solutions of those equations, every choice the scenario made
    is a tie wherever the desiderata can hold: there its sizes equal those of any
    other scenario that ties on the same set, and so do its solutions. Returns that
    set as a hashable key (the equations in reduced form).
    """
    space = _Space(unknowns, [*theta, *assumptions])
    equations: _Equations | None = _Equations(len(unknowns))
    for size in theta:
        if len(size.forms) == 1:
            equations = equations.add(*space.vectors(size))
            if equations is None:
                return None  # no solution at all: ``solve`` says so quickly
    for size in assumptions:
        if not equations.implies(*space.vectors(size)):
            return None
    return equations.key()


# -- exact linear forms over the unknowns --------------------------------------------

Vector = tuple[tuple[int, ...], int]  # integer coefficients, integer constant


class _Space:
    """Linear forms as integer vectors over ``unknowns``, all sizes brought to one
    common denominator (a positive scale: a form's sign, and so every condition,
    is kept)."""

    def __init__(self, unknowns: list, sizes: list[Size]) -> None:
        self.index = {u.name: i for i, u in enumerate(unknowns)}
        self.n = len(unknowns)
        self.scale = math.lcm(*(size.scale for size in sizes))

    def vectors(self, size: Size) -> list[Vector]:
        """The forms of ``size`` as vectors over the common denominator."""
        factor = self.scale // size.scale
        out = []
        for direction, constant in size.forms:
            coefficients = [0] * self.n
            for name, value in direction:
                coefficients[self.index[name]] = value * factor
            out.append((tuple(coefficients), constant * factor))
        return out


def _bounded_index(space: _Space, sizes: list[Size]) -> dict:
    """Coefficient vector -> the largest constant of a form known to be <= 0."""
    index: dict = {}
    for size in sizes:
        for coefficients, constant in space.vectors(size):
            if index.get(coefficients, constant) <= constant:
                index[coefficients] = constant
    return index


def _undominated(pieces: list[Vector], known: _Known) -> list[Vector]:
    """The pieces that no other piece of the same quantity provably dominates
    (p is dominated by q when ``known`` shows p - q <= 0)."""
    kept = list(pieces)
    for piece in list(kept):
        for other in kept:
            if other is not piece and known.shows_nonpositive(piece, other):
                kept.remove(piece)
                break
    return kept


class _Known:
    """Forms known to be <= 0, and what follows from one or two of them.

    p - q <= 0 follows when its direction is that of one known form, or the sum of
    two, with a constant no larger than theirs (or when it is a nonpositive
    constant). Directions are compared by an integer key (digits of a balanced
    base wide enough for every sum and difference met here), which is linear:
    key(p - q) = key(p) - key(q), so each test is a subtraction and a look-up in a
    table of the known forms' keys and, built on first need, of the keys of their
    pairwise sums.
    """

    def __init__(self, known: dict) -> None:
        # the pieces tested are forms of Theta(1) quantities, whose directions are
        # all among the known ones, so every digit met is at most twice the widest
        widest = max((abs(v) for c in known for v in c), default=0)
        self.base = 4 * widest + 3
        self._keys: dict[tuple[int, ...], int] = {}
        self.single = {self.key(c): k for c, k in known.items()}
        self._pairs: dict[int, int] | None = None

    def key(self, direction: tuple[int, ...]) -> int:
        if direction not in self._keys:
            self._keys[direction] = sum(
                v * self.base**i for i, v in enumerate(direction)
            )
        return self._keys[direction]

    @property
    def pairs(self) -> dict[int, int]:
        """Key of the sum of two known forms -> the largest constant of such a sum."""
        if self._pairs is None:
            items = list(self.single.items())
            pairs: dict[int, int] = {}
            for i, (key_a, k_a) in enumerate(items):
                for key_b, k_b in items[i:]:
                    total, k = key_a + key_b, k_a + k_b
                    if pairs.get(total, k) <= k:
                        pairs[total] = k
            self._pairs = pairs
        return self._pairs

    def shows_nonpositive(self, p: Vector, q: Vector) -> bool:
        """Whether p - q <= 0 follows from at most two known forms."""
        gap_key, gap_k = self.key(p[0]) - self.key(q[0]), p[1] - q[1]
        if gap_key == 0:
            return gap_k <= 0
        if gap_k <= self.single.get(gap_key, gap_k - 1):
            return True
        return gap_k <= self.pairs.get(gap_key, gap_k - 1)


# -- the tight pieces: exact elimination, one equation at a time ---------------------


class _Equations:
    """Equations a . x + k = 0 in reduced row echelon form, pivots leftmost.

    Rows are integer (fraction-free): ``rows`` maps each pivot column p to a row
    (coefficients then constant) that is positive at p and zero at the other
    pivots, so x_p = -(k + sum over free f of a_f x_f) / a_p. The non-pivot columns
    are the free unknowns, as in ``sympy.linsolve``.
    """

    def __init__(self, n: int, rows: dict | None = None) -> None:
        self.n = n
        self.rows: dict[int, tuple[int, ...]] = rows or {}
        self.free = [i for i in range(n) if i not in self.rows]

    def _reduced(self, equation: Vector) -> tuple[int, ...]:
        """The equation (coefficients then constant) with every pivot eliminated."""
        coefficients, constant = equation
        e = (*coefficients, constant)
        for col, r in self.rows.items():
            if e[col]:
                e = _primitive(
                    [r[col] * x - e[col] * y for x, y in zip(e, r, strict=True)]
                )
        return e

    def implies(self, equation: Vector) -> bool:
        """Whether every solution of these equations meets ``equation`` too."""
        return not any(self._reduced(equation))

    def add(self, equation: Vector) -> _Equations | None:
        """These equations and one more; None when they are inconsistent."""
        e = self._reduced(equation)
        lead = next((i for i in range(self.n) if e[i]), None)
        if lead is None:
            return self if e[self.n] == 0 else None
        if e[lead] < 0:
            e = tuple(-x for x in e)
        rows = {}
        for col, r in self.rows.items():
            rows[col] = (
                _primitive(
                    [e[lead] * x - r[lead] * y for x, y in zip(r, e, strict=True)]
                )
                if r[lead]
                else r
            )
        rows[lead] = _primitive(e)
        return _Equations(self.n, rows)

    def substitute(self, inequalities: list[Vector]) -> list[Vector]:
        """The inequalities over the free unknowns, pivots substituted (each row
        scaled by the positive lcm of the pivots, which keeps its sign)."""
        n, rows = self.n, self.rows
        scale = math.lcm(*(r[p] for p, r in rows.items())) if rows else 1
        weights = {p: scale // r[p] for p, r in rows.items()}
        out = []
        for coefficients, constant in inequalities:
            reduced = [coefficients[f] * scale for f in self.free]
            k = constant * scale
            for p, r in rows.items():
                a = coefficients[p]
                if a:
                    w = a * weights[p]
                    k -= w * r[n]
                    reduced = [
                        v - w * r[f] for v, f in zip(reduced, self.free, strict=True)
                    ]
            out.append((tuple(reduced), k))
        return out

    def point(self, free_values: dict[int, Fraction]) -> tuple[Fraction, ...]:
        """The solution with the free unknowns at ``free_values``."""
        x = [Fraction(0)] * self.n
        for i, v in free_values.items():
            x[i] = v
        for p, r in self.rows.items():
            total = r[self.n] + sum((r[f] * v for f, v in free_values.items()), 0)
            x[p] = Fraction(-total, r[p]) if isinstance(total, int) else -total / r[p]
        return tuple(x)

    def key(self) -> tuple:
        return tuple(sorted(self.rows.items()))


def _primitive(values) -> tuple[int, ...]:
    divisor = math.gcd(*values) or 1
    return tuple(v // divisor for v in values)


class _Search:
    """Walks the choices of tight pieces and collects the distinct solutions.

    A branch is cut when its equations are inconsistent, or when the inequalities
    restricted to its solutions (few free unknowns left) have no common point:
    every system below it adds equations, so it has no solution either.
    """

    def __init__(self, space: _Space, inequalities: list[Vector]) -> None:
        self.space = space
        self.inequalities = inequalities
        self.solutions: list[tuple[Fraction, ...]] = []
        self._leaves: dict[tuple, tuple | None] = {}
        # equation systems met more than once (by different choices) are
        # restricted and tested once
        self._restricted: dict[tuple, list[polyhedra.Row] | None] = {}
        self._possible_at: dict[tuple, bool] = {}

    def walk(self, choices: list[list[Vector]], equations: _Equations) -> None:
        if not choices:
            self._leaf(equations)
            return
        for piece in choices[0]:
            more = equations.add(piece)
            if more is None or (more is not equations and not self._possible(more)):
                continue
            self.walk(choices[1:], more)

    def _restrict(self, equations: _Equations) -> list[polyhedra.Row] | None:
        """The inequalities over the free unknowns once the equations hold, as
        distinct rows; None when one of them fails whatever the free unknowns are.
        """
        key = equations.key()
        if key not in self._restricted:
            # substitution maps many inequalities to the same row: keep each once
            rows = dict.fromkeys(equations.substitute(self.inequalities))
            if any(not any(a) and k > 0 for a, k in rows):
                self._restricted[key] = None
            else:
                self._restricted[key] = [polyhedra.row(a, k) for a, k in rows if any(a)]
        return self._restricted[key]

    def _possible(self, equations: _Equations) -> bool:
        if len(equations.free) > 2:
            return True  # elimination over many unknowns costs more than it saves
        key = equations.key()
        if key not in self._possible_at:
            bounding = self._restrict(equations)
            self._possible_at[key] = bounding is not None and (
                not equations.free or polyhedra.feasible(bounding) is not False
            )
        return self._possible_at[key]

    def _leaf(self, equations: _Equations) -> None:
        key = equations.key()
        if key not in self._leaves:
            self._leaves[key] = self._solve(equations)
        point = self._leaves[key]
        if point is not None and point not in self.solutions:
            self.solutions.append(point)

    def _solve(self, equations: _Equations) -> tuple[Fraction, ...] | None:
        bounding = self._restrict(equations)
        if bounding is None:
            return None  # an inequality fails whatever the free unknowns are
        if not equations.free:
            return equations.point({})
        # each free unknown in turn at its smallest value the inequalities allow
        if not bounding:
            return None  # nothing bounds the free directions
        values = polyhedra.lexmin(bounding, len(equations.free))
        if values is None:
            return None
        return equations.point(dict(zip(equations.free, values, strict=True)))
