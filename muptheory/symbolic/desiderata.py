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
(sympy), and checks the inequalities by exact linear programming
(``sympy.solvers.simplex``). Where the desiderata leave an exponent inside an
interval (BP's b_L >= 1 is the classic case) the smallest value is taken: the
largest initialization that keeps the conditions, as muP takes the largest updates.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import sympy
from sympy.solvers.simplex import InfeasibleLPError, UnboundedLPError, linprog

from muptheory.symbolic.calculus import Size, _to_sympy


@dataclass(frozen=True)
class Condition:
    """A requirement on one quantity.

    Attributes:
        key: the quantity's key in the calculation (generic over the two passes).
        kind: ``"theta"`` (exactly Theta(1)) or ``"bounded"`` (at most O(1)).
        desideratum: the item of THEORY section 3 it comes from (1-4).
        text: what the condition says, for messages and explanations.
    """

    key: str
    kind: str
    desideratum: int
    text: str


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


def knob_conditions(
    bounded_keys: tuple[str, ...], theta_keys: tuple[str, ...] = ()
) -> tuple[Condition, ...]:
    """A rule's own conditions: quantities kept O(1), and ratios pinned to Theta(1)."""
    out = [
        Condition(k, "bounded", 4, KNOB_TEXT.get(k, f"{k} O(1)")) for k in bounded_keys
    ]
    out += [
        Condition(k, "theta", 4, KNOB_TEXT.get(k, f"{k} Theta(1)")) for k in theta_keys
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
    Theta(1) quantity is a linear system, solved exactly (``sympy.linsolve``); its
    solution is kept when it meets every inequality, with free directions pinned at
    their smallest feasible value by exact linear programming. Returns each distinct
    solution once.
    """
    forms = _bounded_index([*bounded, *theta])
    inequalities = list(forms.items())
    if not _plausible(inequalities, unknowns):
        return []
    choices = sorted((_undominated(size, forms, unknowns) for size in theta), key=len)
    solutions: list[dict] = []
    cache: dict = {}
    for tight in itertools.product(*choices):
        equations = list(dict.fromkeys(tight))
        solution = _solve_linear(equations, inequalities, unknowns, cache)
        if solution is not None and solution not in solutions:
            solutions.append(solution)
    return solutions


def _plausible(inequalities, unknowns, margin: float = 1e-7) -> bool:
    """A quick screen: can every form be <= 0 at once?

    Solves min t subject to form(x) <= t in floating point (HiGHS). A scenario whose
    optimum is clearly positive has no solution and is skipped; everything else goes
    on to the exact solution, so floating point only ever saves time, never decides
    an exponent.
    """
    import numpy as np
    from scipy.optimize import linprog as float_linprog

    index = {s: i for i, s in enumerate(unknowns)}
    n = len(unknowns)
    a = np.zeros((len(inequalities), n + 1))
    b = np.zeros(len(inequalities))
    for row, (coefficients, constant) in enumerate(inequalities):
        for symbol, value in coefficients:
            a[row, index[symbol]] = float(value)
        a[row, n] = -1.0
        b[row] = -float(constant)
    objective = np.zeros(n + 1)
    objective[n] = 1.0
    bounds = [(None, None)] * n + [(-1.0, None)]
    result = float_linprog(objective, A_ub=a, b_ub=b, bounds=bounds, method="highs")
    return not (result.status == 0 and result.fun > margin)


def _bounded_index(sizes: list[Size]) -> dict:
    """Coefficient vector -> the largest constant of a form known to be <= 0."""
    index: dict = {}
    for size in sizes:
        for coefficients, constant in size.forms:
            if coefficients not in index or index[coefficients] < constant:
                index[coefficients] = constant
    return index


def _undominated(size: Size, bounded: dict, unknowns: list) -> list[sympy.Expr]:
    """The pieces of ``size`` that no other piece provably dominates.

    p is dominated by another piece q when p - q <= 0 follows from one or two forms
    known to be <= 0 (or is a nonpositive constant). Forms are compared as integer
    vectors over ``unknowns`` (scaled by a common denominator) for speed.
    """
    scale = _common_denominator([*size.forms, *bounded.items()])
    vector = {
        form: _as_vector(form, unknowns, scale)
        for form in [*size.forms, *bounded.items()]
    }
    known: dict = {}
    for form in bounded.items():
        coefficients, constant = vector[form]
        if coefficients not in known or known[coefficients] < constant:
            known[coefficients] = constant
    known_items = list(known.items())
    kept = list(size.forms)
    for piece in list(kept):
        p_c, p_k = vector[piece]
        for other in kept:
            if other is piece:
                continue
            q_c, q_k = vector[other]
            gap_c = tuple(x - y for x, y in zip(p_c, q_c, strict=True))
            gap_k = p_k - q_k
            if _follows(gap_c, gap_k, known, known_items):
                kept.remove(piece)
                break
    return [_to_sympy(c, k) for c, k in kept]


def _follows(gap_c: tuple, gap_k: int, known: dict, known_items: list) -> bool:
    """Whether gap <= 0 follows from at most two known nonpositive forms."""
    if not any(gap_c):
        return gap_k <= 0
    if gap_c in known and gap_k <= known[gap_c]:
        return True
    for coefficients, constant in known_items:
        rest = tuple(x - y for x, y in zip(gap_c, coefficients, strict=True))
        if not any(rest):
            if gap_k - constant <= 0:
                return True
        elif rest in known and gap_k - constant <= known[rest]:
            return True
    return False


def _common_denominator(forms) -> int:
    denominators = [constant.denominator for _, constant in forms]
    denominators += [
        v.denominator for coefficients, _ in forms for _, v in coefficients
    ]
    return math.lcm(*denominators) if denominators else 1


def _as_vector(form, unknowns: list, scale: int) -> tuple[tuple, int]:
    coefficients, constant = form
    values = dict(coefficients)
    vec = tuple(int(values.get(u, 0) * scale) for u in unknowns)
    return vec, int(constant * scale)


def _solve_linear(equations, inequalities, unknowns, cache: dict | None = None):
    """Solve the tight pieces exactly; pin free directions by exact LP; check all."""
    general = sympy.linsolve(equations, unknowns)
    if not general:
        return None
    (point,) = general
    if cache is not None and point in cache:
        return cache[point]
    free = [
        u for u in unknowns if any(u in sympy.sympify(v).free_symbols for v in point)
    ]
    assignment = dict(zip(unknowns, point, strict=True))
    if free:
        pinned = _pin_free(assignment, inequalities, free)
        assignment = (
            None
            if pinned is None
            else {k: sympy.sympify(v).subs(pinned) for k, v in assignment.items()}
        )
    result = None
    if assignment is not None:
        values = {k: _fraction(v) for k, v in assignment.items()}
        if all(size_evaluate(form, values) <= 0 for form in inequalities):
            result = {
                k: sympy.Rational(v.numerator, v.denominator) for k, v in values.items()
            }
    if cache is not None:
        cache[point] = result
    return result


def _fraction(value) -> Fraction:
    value = sympy.Rational(value)
    return Fraction(int(value.p), int(value.q))


def size_evaluate(form, values: dict) -> Fraction:
    """A linear form (coefficients, constant) at exact values."""
    coefficients, constant = form
    return constant + sum((c * values[s] for s, c in coefficients), Fraction(0))


def _pin_free(assignment: dict, inequalities, free: list) -> dict | None:
    """Lexicographic exact LP over the free directions of a parametric solution.

    Each free unknown in turn takes its smallest value allowed by the inequalities.
    ``sympy.solvers.simplex.linprog`` keeps its variables nonnegative, so every free
    unknown is the difference of two nonnegative parts.
    """
    rows = [sympy.expand(_to_sympy(c, k).subs(assignment)) for c, k in inequalities]
    rows = [r for r in rows if not r.is_Number]
    if not rows:
        return None  # nothing bounds the free directions
    a, b = sympy.linear_eq_to_matrix(rows, free)
    n = len(free)
    pinned: dict = {}
    for index, symbol in enumerate(free):
        objective = [0] * (2 * n)
        objective[index], objective[n + index] = 1, -1
        try:
            value, _ = linprog(objective, a.row_join(-a), b)
        except (InfeasibleLPError, UnboundedLPError):
            return None
        pinned[symbol] = value
        row = sympy.Matrix([[1 if j == index else 0 for j in range(n)]])
        a = a.col_join(row).col_join(-row)
        b = b.col_join(sympy.Matrix([value, -value]))
    return pinned
