"""Derive muP and classify parameterizations from the sized training step.

``derive_mup`` sizes one training step of the method symbolically in the six
width-only exponents (b and c of the first, hidden and last groups), then solves the
desiderata (``desiderata.py``) exactly in every scenario of the calculus. The result
is printed in the fan-in convention unless asked otherwise.

``classify`` sizes the same step at given exponents and reads off stability, the
regime and, for every failed condition, the offending quantity's exponent. Regimes:

- ``unstable``: a pre-activation is not Theta(1), or something grows with width;
- ``trivial``: the output does not move in the limit, or only the readout's own
  update moves it while every hidden layer's effect on the output vanishes;
- ``feature_learning``: stable, nontrivial, hidden features move Theta(1) (r = 0);
- ``kernel``: stable, features frozen (r > 0), and the hidden layers' learning still
  moves the output by Theta(1) through the readout (the NTK-type regime).

r is Tensor Programs IV's exponent, Delta h_(L-1) = Theta(M^(-r)). The "trivial"
reading of readout-only training is this tool's choice: Tensor Programs IV counts it
as a kernel regime with the NNGP kernel; here it is kept apart because it is the
random-feature model every rule shares (only the last layer learns), and the
``readout_only`` flag says when it happens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from muptheory.errors import InvalidInputError, UnsupportedError
from muptheory.methods import MethodConfig
from muptheory.parameterization import GROUPS, LayerExponents, Parameterization
from muptheory.symbolic import calculus, desiderata
from muptheory.symbolic.calculus import Calculation, Point, Scenario, Size, scenarios
from muptheory.symbolic.network import (
    PASS_SUFFIX,
    Rule,
    Unknowns,
    size_initialization,
    size_step,
)

REGIMES = ("unstable", "trivial", "kernel", "feature_learning")

# The range of the PC knob that the analysis covers (THEORY section 5).
GAMMA_BAR_LAST_RANGE = (Fraction(-1), Fraction(0))


# -- rules ---------------------------------------------------------------------------


def rule_for(config: MethodConfig, *, derive: bool = False) -> Rule:
    """The sizing rule of a configured method (``derive``: the training stage of a
    derivation, with the rule's initialization exponents already pinned)."""
    from muptheory.symbolic.bp import Backprop
    from muptheory.symbolic.gnt import GaussNewtonTargets
    from muptheory.symbolic.pc import PredictiveCoding
    from muptheory.symbolic.tp import TargetPropagation

    if config.method == "bp":
        if config.optimizer in ("kfac", "shampoo"):
            try:
                from muptheory.symbolic.second_order import SecondOrder
            except ImportError:
                raise UnsupportedError(
                    f"the {config.optimizer} rule is not in the calculus yet"
                ) from None
            return SecondOrder(config.optimizer)
        return Backprop(config.optimizer)
    if config.method == "gnt":
        return GaussNewtonTargets(config.lambda_bar)
    if config.method == "pc":
        return PredictiveCoding(
            config.gamma_bar_last,
            config.gamma_bar_hidden,
            inference=config.inference,
            last_layer_gamma=config.last_layer_gamma,
        )
    if config.feedback == "trained":
        from muptheory.symbolic.feedback import TrainedFeedback

        return TrainedFeedback(difference=config.method == "dtp", init_pinned=derive)
    return TargetPropagation(config.mu_bar, difference=config.method == "dtp")


def _symbolic_key(config: MethodConfig) -> tuple:
    """The options that change the symbolic sizes (not prefactors or step counts)."""
    inference = "sequential" if config.inference == "sequential" else "equilibrium"
    return (
        config.method,
        config.optimizer,
        config.lambda_bar,
        config.gamma_bar_hidden,
        config.gamma_bar_last,
        config.last_layer_gamma,
        inference,
        config.mu_bar,
        config.feedback,
    )


@dataclass
class Sized:
    """Every scenario of a method's sized step, with its conditions."""

    config: MethodConfig
    unknowns: Unknowns
    scenarios: list[Scenario]
    knobs: tuple[desiderata.Condition, ...]
    rule: Rule


_SIZED: dict[tuple, Sized] = {}


def clear_caches() -> None:
    """Forget every sized step and memoized operation, so the next derivation
    starts from scratch (benchmarks time it that way)."""
    _SIZED.clear()
    _DERIVED_DAMPING.clear()
    calculus.clear_caches()


def sized(config: MethodConfig, *, derive: bool = False) -> Sized:
    """The method's sized step, computed once per set of symbolic options.

    With ``derive`` a rule's own initialization exponents (trained feedback's b_fb)
    are pinned by their initialization desideratum before the step is sized, as the
    forward b_1 and b_l are (``Unknowns.training``): fewer unknowns, fewer pieces.
    """
    key = (*_symbolic_key(config), derive and config.feedback == "trained")
    if key not in _SIZED:
        rule = rule_for(config, derive=derive)
        unknowns = Unknowns.training(getattr(rule, "extra_unknowns", ()))
        runs = list(scenarios(lambda calc: size_step(calc, unknowns, rule)))
        knobs = desiderata.knob_conditions(
            rule.knob_conditions(), rule.knob_theta(), rule.knob_maximal()
        )
        _SIZED[key] = Sized(config, unknowns, runs, knobs, rule)
    return _SIZED[key]


def generic(scenario: Scenario, key: str) -> Size:
    """A quantity's size over the first and a later step (the larger of the two)."""
    cache = scenario.calculation.generic_sizes
    if key not in cache:
        q = scenario.calculation.quantities
        later = q.get(key + PASS_SUFFIX[2])
        cache[key] = q[key] if later is None else q[key] + later
    return cache[key]


# -- derivation ----------------------------------------------------------------------


@dataclass
class Derivation:
    """A method's muP and how it was found."""

    config: MethodConfig
    parameterization: Parameterization  # fan-in convention
    extra: dict[str, Fraction] = field(default_factory=dict)  # knob exponents
    # trained TP/DTP feedback: {"b": {group: e}, "c": {group: e}}, fan-in convention
    feedback: dict | None = None
    label: str | None = None
    explain: Callable[[], list[str]] | None = field(default=None, repr=False)
    later_notes: list[Callable[[], str]] = field(default_factory=list, repr=False)
    _notes: list[str] = field(default_factory=list)
    _explanation: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def notes(self) -> list[str]:
        """Remarks on the derivation; notes that need a sweep of ``classify`` (TP's
        kernel-regime scan) are written on first use, not while deriving."""
        while self.later_notes:
            self._notes.append(self.later_notes.pop(0)())
        return self._notes

    @notes.setter
    def notes(self, value: list[str]) -> None:
        self._notes = list(value)

    @property
    def explanation(self) -> list[str]:
        """The derivation's steps (``--explain``), written out on first use."""
        if self._explanation is None:
            self._explanation = self.explain() if self.explain else []
        return self._explanation

    def in_convention(self, convention: str) -> Parameterization:
        return self.parameterization.to(convention)

    def to_json(self, convention: str = "fan_in") -> dict:
        p = self.in_convention(convention)
        return {
            "method": self.config.method,
            "convention": convention,
            "options": self.config.options(),
            "b": p.b.to_json(),
            "c": p.c.to_json(),
            "notes": list(self.notes),
            **(
                {"damping": {k: str(v) for k, v in self.extra.items()}}
                if self.extra
                else {}
            ),
            **(
                {
                    "feedback": {
                        kind: {g: str(v) for g, v in groups.items()}
                        for kind, groups in self.feedback.items()
                    }
                }
                if self.feedback
                else {}
            ),
        }


def derive_mup(config: MethodConfig) -> Derivation:
    """The unique exponents meeting the desiderata with equality, exactly.

    Raises:
        InvalidInputError: when the method's knobs sit outside the range where the
            desiderata can be met, naming the condition that fails.
    """
    _check_supported(config)
    _check_nothing_given_to_derive(config)
    s = sized(config, derive=True)
    symbols = _solve_order(s.unknowns)
    found: list[tuple[dict, Scenario]] = []
    # a scenario whose choices are all ties wherever the desiderata can hold (K-FAC's
    # damping of the order of its eigenvalue) has the same solutions as an earlier
    # one that ties on the same set: it is solved once
    tied_sets: set = set()
    for scenario in s.scenarios:
        theta = [generic(scenario, c.key) for c in desiderata.MAXIMAL]
        theta += [
            generic(scenario, c.key) for c in desiderata.STABILITY if c.kind == "theta"
        ]
        theta += [generic(scenario, c.key) for c in s.knobs if c.kind == "theta"]
        tied = desiderata.tie_set(theta, scenario.assumption_sizes, symbols)
        if tied is not None:
            if tied in tied_sets:
                continue
            tied_sets.add(tied)
        bounded = list(scenario.assumption_sizes)
        bounded += [
            generic(scenario, c.key)
            for c in (*desiderata.STABILITY, *s.knobs)
            if c.kind == "bounded"
        ]
        for solution in desiderata.solve(theta, bounded, symbols):
            if all(solution != other for other, _ in found):
                found.append((solution, scenario))
    if not found:
        raise InvalidInputError(_no_solution_reason(config, s, symbols))
    # several scenarios can each meet the desiderata (a knob that leaves b_last
    # free); as within one scenario, the smallest exponents in the pinning order win
    found.sort(key=lambda pair: [pair[0][symbol] for symbol in symbols])
    solution, scenario = found[0]
    param = _parameterization(solution, s.unknowns, name=f"mup-{config.method}")
    derivation = Derivation(config, param.to_fan_in())
    extra = {
        name: s.unknowns.value(symbol, solution)
        for name, symbol in s.unknowns.extra.items()
    }
    if config.feedback == "trained" and config.method in ("tp", "dtp"):
        from muptheory.symbolic.feedback import (
            FEEDBACK_UNKNOWNS,
            fan_in_feedback,
            pinned_init,
        )

        extra = {**pinned_init(), **extra}
        derivation.feedback = fan_in_feedback(extra)
        extra = {k: v for k, v in extra.items() if k not in FEEDBACK_UNKNOWNS}
    derivation.extra = extra
    derivation.explain = lambda: _explanation(scenario, solution, s)
    derivation.notes = _notes(config, scenario)
    if derivation.feedback:
        derivation.notes += _feedback_notes(config, derivation.feedback)
    if len(found) > 1:
        others = "; ".join(_format_solution(sol, s.unknowns) for sol, _ in found[1:])
        derivation.notes.append(
            f"other scenarios also meet the desiderata ({others}); "
            "the smallest exponents are reported"
        )
    if config.method in ("tp", "dtp"):
        feedback = derivation.feedback
        derivation.later_notes.append(lambda: _kernel_scan_note(config, feedback))
    return derivation


def _solve_order(u: Unknowns) -> list[sympy.Symbol]:
    # pinning order for free directions: initializations from the top, then rates
    order = [
        u.b["last"],
        u.b["hidden"],
        u.b["first"],
        u.c["first"],
        u.c["hidden"],
        u.c["last"],
        *u.extra.values(),
    ]
    return [s for s in order if isinstance(s, sympy.Symbol)]


def _parameterization(solution: dict, u: Unknowns, *, name: str) -> Parameterization:
    b = LayerExponents(*(u.value(u.b[g], solution) for g in GROUPS))
    c = LayerExponents(*(u.value(u.c[g], solution) for g in GROUPS))
    return Parameterization(b=b, c=c, convention="width_only", name=name)


def _initialization_stage() -> tuple[list[str], dict]:
    """Solve desideratum 1 for the first and hidden b; return the explanation."""
    u = Unknowns.symbols()
    calc = Calculation()
    size_initialization(calc, u.b)
    equations = [
        calc.quantities[c.key].terms[0]
        for c in desiderata.STABILITY
        if c.kind == "theta"
    ]
    (point,) = sympy.linsolve(equations, [u.b["first"], u.b["hidden"]])
    pinned = dict(zip([u.b["first"], u.b["hidden"]], point, strict=True))
    lines = ["Initialization (desideratum 1):"]
    lines += ["  " + step.render() for step in calc.steps]
    lines += [f"  pre-activations Theta(1) pin {k} = {v}" for k, v in pinned.items()]
    lines.append(
        f"  output O(1) requires {calc.quantities['output[init]'].terms[0]} <= 0 "
        "once those hold"
    )
    return lines, pinned


def _explanation(scenario: Scenario, solution: dict, s: Sized) -> list[str]:
    init_lines, pinned = _initialization_stage()
    for g in ("first", "hidden"):
        assert pinned[sympy.Symbol(f"b_{g}", real=True)] == s.unknowns.b[g]
    if s.config.feedback == "trained" and s.config.method in ("tp", "dtp"):
        from muptheory.symbolic.feedback import init_stage_lines

        init_lines += init_stage_lines()
    return init_lines + _explain(scenario, solution, s)


def _derived_options(config: MethodConfig) -> tuple[str, ...]:
    """The options a derivation of ``config`` finds itself: K-FAC's or Shampoo's
    damping exponents, trained feedback's exponents."""
    if config.method == "bp" and config.optimizer in _DAMPING_FIELDS:
        return tuple(name for name, _ in _DAMPING_FIELDS[config.optimizer])
    if config.method in ("tp", "dtp") and config.feedback == "trained":
        return ("feedback_b", "feedback_c", "feedback_c_last")
    return ()


def without_derived_options(config: MethodConfig) -> MethodConfig:
    """``config`` with the options its derivation finds at their defaults: what
    ``derive_mup`` takes when a run keeps the given ones (``--param mup``)."""
    defaults = MethodConfig(config.method)
    return dataclasses.replace(
        config, **{name: getattr(defaults, name) for name in _derived_options(config)}
    )


def _check_nothing_given_to_derive(config: MethodConfig) -> None:
    """A derivation finds these options itself; taking given ones would silently
    ignore them, so they are an error."""
    defaults = MethodConfig(config.method)
    given = [
        f"--{name.replace('_', '-')}"
        for name in _derived_options(config)
        if getattr(config, name) != getattr(defaults, name)
    ]
    if given:
        what = "damping" if config.method == "bp" else "feedback"
        raise InvalidInputError(
            f"{', '.join(given)}: the {what} exponents are what the derivation "
            "finds (see its output); give them to classify or coordcheck instead"
        )


def _format_solution(solution: dict, u: Unknowns) -> str:
    p = _parameterization(solution, u, name="").to_fan_in()

    def row(exps: LayerExponents) -> str:
        return "(" + ", ".join(str(v) for v in exps.as_tuple()) + ")"

    return f"b = {row(p.b)}, c = {row(p.c)}"


def _check_supported(config: MethodConfig) -> None:
    if config.method in ("tp", "dtp"):
        defaults = MethodConfig(config.method)
        trained = config.feedback == "trained"
        if not trained and (
            config.feedback_b != defaults.feedback_b
            or config.feedback_c != defaults.feedback_c
            or config.feedback_c_last != defaults.feedback_c_last
        ):
            raise InvalidInputError(
                "--feedback-b/--feedback-c/--feedback-c-last apply to trained "
                "feedback only "
                "(--feedback trained); the ridge feedback has no weights"
            )
        if trained and config.mu_bar != defaults.mu_bar:
            raise InvalidInputError(
                "--mu-bar applies to the ridge feedback only; trained feedback has no "
                "ridge constant"
            )
    if config.method == "pc":
        low, high = GAMMA_BAR_LAST_RANGE
        g = config.gamma_bar_last
        if g < low:
            raise InvalidInputError(
                f"gamma_bar_last = {g} is below {low}: C_gamma grows like "
                f"M^({-g - 1}), so the energy's curvature along the outputs diverges and "
                "reaching the inference equilibrium takes a width-dependent number of steps"
                if config.inference != "sequential"
                else f"gamma_bar_last = {g} is below {low}: the activity shifts "
                f"v_l - h_l grow like M^({-g - 1}) and the activities blow up"
            )
        if g > high:
            raise InvalidInputError(
                f"gamma_bar_last = {g} is above {high}: gamma_L then vanishes against the "
                "hidden coefficients, the inferred errors vanish with it, and PC would need "
                f"hidden learning rates growing like M^({g}) beyond SGD's; the analysis "
                f"covers [{low}, {high}]"
            )
        if config.gamma_bar_hidden != 0:
            raise UnsupportedError(
                "gamma_bar_hidden other than 0 is not supported: the analysis fixes the "
                "hidden energy coefficients to Theta(1)"
            )


def _no_solution_reason(config: MethodConfig, s: Sized, symbols) -> str:
    """Say which knob condition stops the desiderata from being met."""
    relaxed = []
    for scenario in s.scenarios:
        theta = [generic(scenario, c.key) for c in desiderata.MAXIMAL]
        theta += [
            generic(scenario, c.key) for c in desiderata.STABILITY if c.kind == "theta"
        ]
        bounded = list(scenario.assumption_sizes)
        bounded += [
            generic(scenario, c.key)
            for c in desiderata.STABILITY
            if c.kind == "bounded"
        ]
        for solution in desiderata.solve(theta, bounded, symbols):
            for knob in s.knobs:
                e = generic(scenario, knob.key).evaluate(solution)
                if e > 0:
                    relaxed.append(f"{knob.text} fails: it grows like M^({e})")
    if relaxed:
        return f"no muP for {config.method} with these options: " + "; ".join(
            dict.fromkeys(relaxed)
        )
    return f"no muP for {config.method} with these options: the desiderata are inconsistent"


def _explain(scenario: Scenario, solution: dict, s: Sized) -> list[str]:
    calc = scenario.calculation
    lines = ["Sizes of one training step (width-only exponents; M is the width):"]
    lines += ["  " + step.render() for step in calc.steps]
    if calc.assumption_text:
        lines.append("Scenario (which term dominates each inverse):")
        lines += ["  " + text for text in calc.assumption_text]
    lines.append("Conditions and the exponents they pin:")
    for c in (*desiderata.STABILITY, *desiderata.MAXIMAL, *s.knobs):
        size = generic(scenario, c.key)
        want = "= 0" if c.kind == "theta" else "<= 0"
        lines.append(
            f"  [{c.desideratum}] {c.text}: max({', '.join(map(str, size.terms))}) {want}"
            f"  -> {size.evaluate(solution)}"
        )
    lines.append(
        "Solution (width-only): " + ", ".join(f"{k} = {v}" for k, v in solution.items())
    )
    return lines


def _notes(config: MethodConfig, scenario: Scenario) -> list[str]:
    notes = []
    if config.method == "bp" and config.optimizer == "sgd":
        notes.append(
            "b_last is pinned at the smallest value the conditions allow "
            "(any b_last >= 1 is stable; 1 is the largest initialization)"
        )
    if config.method == "pc":
        if config.last_layer_gamma:
            notes.append(
                "the last layer's update carries gamma_L: c_last = 1 - gamma_bar_last"
            )
        else:
            notes.append(
                "the last layer's update does not carry gamma_L (default); with "
                "--last-layer-gamma c_last becomes 1 - gamma_bar_last"
            )
    return notes


def _kernel_scan_note(config: MethodConfig, feedback: dict | None = None) -> str:
    """Whether any stable TP parameterization on a grid lands in the kernel regime
    (trained feedback: at the derived feedback exponents ``feedback``)."""
    grid = [Fraction(k, 2) for k in range(-2, 5)]
    kernel, checked = [], 0
    for b_last in (Fraction(1, 2), Fraction(1)):
        for c_first in grid:
            for c_hidden in grid:
                for c_last in grid:
                    p = Parameterization(
                        b=(Fraction(1, 2), Fraction(1, 2), b_last),
                        c=(c_first, c_hidden, c_last),
                    )
                    checked += 1
                    if classify(config, p, feedback=feedback).regime == "kernel":
                        kernel.append(p)
    scope = f"mu_bar = {config.mu_bar}"
    if config.feedback == "trained":
        scope = "trained feedback at the derived feedback exponents"
    if not kernel:
        return (
            f"kernel regime: none among {checked} parameterizations scanned ({scope}); "
            "the target displacement is built from batch activations"
            + (" and feedback weights independent of W_L" if feedback else "")
            + ", so W_L Delta h is a CLT sum and frozen features cannot move the output"
        )
    example = kernel[0]
    return (
        f"kernel regime: found with {scope} at b={example.b.to_json()} "
        f"c={example.c.to_json()} ({len(kernel)} of {checked} scanned)"
    )


# -- classification -----------------------------------------------------------------


@dataclass
class Failure:
    condition: str
    quantity: str
    exponent: Fraction


@dataclass
class Classification:
    """What a parameterization does under a method."""

    config: MethodConfig
    parameterization: Parameterization
    stable: bool
    regime: str
    r: Fraction | None
    readout_only: bool
    failures: list[Failure]
    exponents: dict[str, Fraction]
    reasons: list[str]
    explanation: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "method": self.config.method,
            "options": self.config.options(),
            "parameterization": self.parameterization.to_json(),
            "stable": self.stable,
            "regime": self.regime,
            "r": None if self.r is None else str(self.r),
            "readout_only": self.readout_only,
            "failures": [
                {
                    "condition": f.condition,
                    "quantity": f.quantity,
                    "exponent": str(f.exponent),
                }
                for f in self.failures
            ],
            "exponents": {k: str(v) for k, v in self.exponents.items()},
            "reasons": list(self.reasons),
        }


def _width_only(config: MethodConfig, param: Parameterization) -> Parameterization:
    """``param`` in the width-only convention with its multipliers moved into b, c."""
    c_rate = 1 if config.method == "bp" and config.optimizer == "adam" else 2
    if any(v != 0 for v in param.a.as_tuple()) and (
        config.method == "bp" and config.optimizer in ("kfac", "shampoo")
    ):
        raise UnsupportedError(
            "multipliers (a != 0) are not supported with K-FAC or Shampoo: "
            "use the equivalent parameterization with a = 0"
        )
    return param.without_multipliers(c_rate=c_rate).to_width_only()


def width_only_values(
    config: MethodConfig, param: Parameterization, u: Unknowns
) -> dict[sympy.Symbol, sympy.Rational]:
    """The parameterization as numbers for the unknowns (width-only, a = 0)."""
    p = _width_only(config, param)
    values = {}
    for g in GROUPS:
        for symbol, value in ((u.b[g], p.b[g]), (u.c[g], p.c[g])):
            if isinstance(symbol, sympy.Symbol):
                values[symbol] = sympy.Rational(value.numerator, value.denominator)
    return values


def initialization(
    config: MethodConfig, param: Parameterization
) -> tuple[dict[str, Fraction], list[str]]:
    """Sizes of the forward pass at initialization under ``param``'s own b.

    The training step is sized once desideratum 1 holds (width-only b_1 = 0,
    b_l = 1/2), so its pre-activations are Theta(1) by construction; this sizes
    them, and the output at init, at the b the user gave.

    Returns:
        The exponents of ``preactivation[first]``, ``preactivation[hidden]`` (the
        first hidden layer: deeper ones compound when b_l is off), their
        activations and ``output[init]``, and the explanation lines.
    """
    u = Unknowns.symbols()
    calc = Calculation()
    size_initialization(calc, u.b)
    p = _width_only(config, param)
    at = Point({u.b[g]: p.b[g] for g in GROUPS})
    sizes = {key: q.evaluate(at) for key, q in calc.quantities.items()}
    lines = ["Initialization at the given b (desideratum 1):"]
    lines += ["  " + step.render(at) for step in calc.steps]
    return sizes, lines


def _scenario_at(s: Sized, values: dict) -> Scenario:
    for scenario in s.scenarios:
        if scenario.holds_at(values):
            return scenario
    raise UnsupportedError("no scenario of the calculus covers these exponents")


def _knob_values(
    config: MethodConfig, s: Sized, feedback: dict | None
) -> dict[sympy.Symbol, Fraction]:
    """Numbers for the rule's own unknowns: trained feedback's exponents from the
    config (one fan-in b for every feedback map; c for the hidden maps and c_last
    for the top map, as the simulator takes them) unless ``feedback`` gives them
    per group."""
    trained = config.feedback == "trained" and config.method in ("tp", "dtp")
    if feedback is not None and not trained:
        raise InvalidInputError(
            "feedback exponents apply to TP/DTP with trained feedback only"
        )
    if not s.unknowns.extra:
        return {}
    if config.method == "bp" and config.optimizer in _DAMPING_FIELDS:
        named = damping_exponents(config)
        return {s.unknowns.extra[k]: v for k, v in named.items()}
    if not trained:
        raise UnsupportedError(
            f"classify needs the {', '.join(s.unknowns.extra)} exponents, which the "
            "command line does not take yet; derive them with `exponents`"
        )
    from muptheory.symbolic.feedback import FEEDBACK_GROUPS, width_only_feedback

    if feedback is None:
        feedback = {
            "b": dict.fromkeys(FEEDBACK_GROUPS, config.feedback_b),
            "c": {"hidden": config.feedback_c, "last": config.feedback_c_last},
        }
    try:
        named = width_only_feedback(feedback["b"], feedback["c"])
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidInputError(
            "feedback exponents must be {'b': {'hidden': e, 'last': e}, 'c': {...}} "
            f"with rational e ({err})"
        ) from None
    # a step sized with b_fb pinned has only the c_fb unknowns
    return {s.unknowns.extra[k]: v for k, v in named.items() if k in s.unknowns.extra}


# K-FAC's and Shampoo's damping options: config field -> (engine unknown prefix)
_DAMPING_FIELDS = {
    "kfac": (("damping_a", "rho_A"), ("damping_g", "rho_G")),
    "shampoo": (("damping", "rho"),),
}


def damping_exponents(config: MethodConfig) -> dict[str, Fraction]:
    """K-FAC's or Shampoo's damping exponents, rho = rho0 M^(exponent), by the
    engine's names (``rho_A_hidden``...): the config's where it gives them, else
    the ones ``derive_mup`` finds for the optimizer's muP (``Derivation.extra``)."""
    fields_ = _DAMPING_FIELDS[config.optimizer]
    derived = None
    out: dict[str, Fraction] = {}
    for field_name, prefix in fields_:
        given = getattr(config, field_name)
        for group, value in zip(GROUPS, given or (None,) * 3, strict=True):
            if value is None:
                if derived is None:
                    derived = _derived_damping(config.optimizer)
                value = derived[f"{prefix}_{group}"]
            out[f"{prefix}_{group}"] = Fraction(value)
    return out


def _derived_damping(optimizer: str) -> dict[str, Fraction]:
    key = ("damping", optimizer)
    if key not in _DERIVED_DAMPING:
        derivation = derive_mup(MethodConfig.create("bp", optimizer=optimizer))
        _DERIVED_DAMPING[key] = dict(derivation.extra)
    return _DERIVED_DAMPING[key]


_DERIVED_DAMPING: dict[tuple, dict[str, Fraction]] = {}


def _damping_reason(config: MethodConfig) -> str | None:
    """The line of ``classify``'s reasons saying which damping it sized."""
    if config.method != "bp" or config.optimizer not in _DAMPING_FIELDS:
        return None
    named = damping_exponents(config)
    parts = []
    for field_name, prefix in _DAMPING_FIELDS[config.optimizer]:
        row = ", ".join(str(named[f"{prefix}_{g}"]) for g in GROUPS)
        source = "given" if getattr(config, field_name) is not None else "derived muP"
        parts.append(f"{prefix} ~ M^({row}) ({source})")
    if all(getattr(config, f) is None for f, _ in _DAMPING_FIELDS[config.optimizer]):
        head = "damping at the derived muP exponents"
    else:
        head = "damping at the given exponents"
    return f"{head} (first, hidden, last): {'; '.join(parts)}"


# the keys of K-FAC's and Shampoo's eigenvalue / damping ratios contain this
_DAMPING_RATIO = "_eigenvalue_over_damping["


def _damping_remark(key: str, exponent: Fraction) -> str:
    """Which term of K-FAC's or Shampoo's (eigenvalue + damping) dominates when
    the damping is off the eigenvalue's order (desideratum 4 fails; training is
    sized with the dominant term, so it is a remark, not an instability)."""
    if exponent < 0:
        what = "the damping dominates: that factor scales the step by 1/rho, as for SGD"
    else:
        what = "the eigenvalue dominates: the damping is negligible"
    return f"damping off its eigenvalue: {key} ~ M^({exponent}), {what}"


def _sized_for(config: MethodConfig, feedback: dict | None) -> Sized:
    """The sized step for given exponents: trained feedback at the b_fb that its
    init desideratum pins is sized with b_fb as numbers (much smaller sizes)."""
    if config.feedback != "trained" or config.method not in ("tp", "dtp"):
        return sized(config)
    from muptheory.symbolic.feedback import PINNED_B

    b = feedback.get("b") if isinstance(feedback, dict) else None
    if feedback is None:
        pinned = config.feedback_b == PINNED_B
    else:
        try:
            pinned = all(Fraction(v) == PINNED_B for v in b.values())
        except (AttributeError, TypeError, ValueError):
            pinned = False  # ``_knob_values`` says what is wrong
    return sized(config, derive=pinned)


def _values(
    config: MethodConfig, param: Parameterization, s: Sized, feedback: dict | None
) -> Point:
    values = {
        k: Fraction(int(v.p), int(v.q))
        for k, v in width_only_values(config, param, s.unknowns).items()
    }
    values.update(_knob_values(config, s, feedback))
    return Point(values)


def classify(
    config: MethodConfig,
    param: Parameterization,
    *,
    explain: bool = False,
    feedback: dict | None = None,
) -> Classification:
    """Stability, regime and failures of ``param`` under ``config``'s method.

    With ``explain`` the classification also lists every sized quantity. For TP/DTP
    with trained feedback the feedback exponents (fan-in) are the config's
    ``feedback_b`` for every map, ``feedback_c`` for the hidden maps and
    ``feedback_c_last`` for the top map, unless ``feedback`` gives them per
    feedback group: {"b": {"hidden": e, "last": e}, "c": {...}}.
    """
    _check_supported(config)
    s = _sized_for(config, feedback)
    values = _values(config, param, s, feedback)
    scenario = _scenario_at(s, values)
    exps = {
        key: generic(scenario, key).evaluate(values)
        for key in _reported_keys(scenario, s)
    }
    # the step is sized from a stable initialization; the given b decides it
    init, init_lines = initialization(config, param)
    if not stable_initialization(init):
        # Tensor Programs IV's r depends on c and b_L alone: still reported
        r = -max(exps["update[first]"], exps["update[hidden]"])
        return _unstable_initialization(config, param, init, init_lines, r, explain)
    failures, reasons, remarks = [], [], []
    for c in (*desiderata.STABILITY, *s.knobs):
        e = exps[c.key]
        if _DAMPING_RATIO in c.key and config.method == "bp":
            # K-FAC's and Shampoo's damping pins no stability: the sized step
            # already holds whichever of eigenvalue and damping dominates
            if e != 0:
                remarks.append(_damping_remark(c.key, e))
            continue
        if not c.strict:
            # a rule's own maximal update (the bounded twin reports a blow-up)
            if e < 0:
                remarks.append(
                    f"not maximal: {c.text} fails, {c.key} vanishes like M^({e})"
                )
            continue
        failure = _failure(c, e)
        if failure is not None:
            failures.append(failure[0])
            reasons.append(failure[1])
    stable = not failures
    # Tensor Programs IV's r sizes the first-order feature change, Delta h =
    # Theta(M^-r); where the run is stable it equals the full feature change.
    r = -max(exps["update[first]"], exps["update[hidden]"])
    features = exps["feature_change[hidden]"]
    readout_path = exps["readout_path"]
    readout_only = (
        stable and exps["output_change"] == 0 and features < 0 and readout_path < 0
    )
    if not stable:
        regime = "unstable"
    elif exps["output_change"] < 0:
        regime = "trivial"
        reasons.append(
            f"trivial: the output change vanishes like M^({exps['output_change']})"
        )
    elif features == 0:
        regime = "feature_learning"
        reasons.append("feature learning: hidden features move Theta(1) (r = 0)")
    elif readout_only:
        regime = "trivial"
        reasons.append(
            f"trivial training of the hidden layers: features move like M^({-r}) and "
            f"their effect on the output like M^({readout_path}); only the readout's own "
            "update moves the output (Tensor Programs IV would call this the NNGP kernel "
            "regime)"
        )
    else:
        regime = "kernel"
        reasons.append(
            f"kernel regime: features move like M^({-r}) (r = {r}) while the hidden "
            "layers still move the output by Theta(1)"
        )
    reasons += remarks
    damping = _damping_reason(config)
    if damping is not None:
        reasons.append(damping)
    classification = Classification(
        config, param, stable, regime, r, readout_only, failures, exps, reasons
    )
    if explain:
        classification.explanation = [
            *init_lines,
            "One training step, from that stable initialization (width-only "
            "exponents):",
            *("  " + step.render(values) for step in scenario.calculation.steps),
        ]
    return classification


# quantities of desideratum 1 that ``initialization`` sizes at the given b
INIT_KEYS = ("preactivation[first]", "preactivation[hidden]", "output[init]")


def _failure(c: desiderata.Condition, e: Fraction) -> tuple[Failure, str] | None:
    """The failure of condition ``c`` at size exponent ``e`` and its reason line,
    or None when it holds."""
    if c.kind == "theta" and e != 0:
        word = "vanishes" if e < 0 else "blows up"
    elif c.kind == "bounded" and e > 0:
        word = "grows"
    else:
        return None
    reason = f"unstable: {c.text} fails, {c.key} {word} like M^({e})"
    return Failure(c.text, c.key, e), reason


def _unstable_initialization(
    config: MethodConfig,
    param: Parameterization,
    init: dict[str, Fraction],
    init_lines: list[str],
    r: Fraction,
    explain: bool,
) -> Classification:
    """The classification of a parameterization whose initialization fails
    desideratum 1: the failures at init and nothing about the step, which the
    calculus sizes from a stable initialization only."""
    found = [
        failure
        for c in desiderata.STABILITY
        if c.key in INIT_KEYS and (failure := _failure(c, init[c.key])) is not None
    ]
    failures, reasons = [f for f, _ in found], [r for _, r in found]
    note = (
        "the training step is not sized: the calculus sizes it from a stable "
        "initialization (pre-activations Theta(1), output O(1))"
    )
    classification = Classification(
        config,
        param,
        False,
        "unstable",
        r,
        False,
        failures,
        {k: init[k] for k in INIT_KEYS},
        [*reasons, note],
    )
    if explain:
        classification.explanation = [*init_lines, note]
    return classification


def stable_initialization(init: dict[str, Fraction]) -> bool:
    """Desideratum 1 on ``initialization``'s sizes: pre-activations Theta(1),
    output O(1)."""
    return (
        init["preactivation[first]"] == 0
        and init["preactivation[hidden]"] == 0
        and init["output[init]"] <= 0
    )


def _group(layer: int) -> str:
    return "first" if layer == 1 else "hidden"


def _reported_keys(scenario: Scenario, s: Sized) -> list[str]:
    keys = [c.key for c in (*desiderata.STABILITY, *s.knobs)]
    keys += [
        "readout_path",
        "activation[first]",
        "activation[hidden]",
        "update[first]",
        "update[hidden]",
    ]
    return list(dict.fromkeys(keys))


# -- coord-check predictions --------------------------------------------------------


def coord_exponents(
    config: MethodConfig,
    param: Parameterization,
    *,
    depth: int,
    step: int | None = None,
    feedback: dict | None = None,
) -> dict[tuple[str, int], Fraction]:
    """Predicted width exponents of the coord-check quantities, per layer.

    Keys are (quantity, layer): ``h`` and ``delta_h`` for hidden layers 1..depth-1,
    ``update`` (Delta W_l h_(l-1)) for layers 1..depth, ``f`` and ``delta_f`` with
    layer = depth. A value e means the RMS coordinate size grows like width^e. With
    ``step=1`` the changes are those of the first step from initialization; otherwise
    those of a generic later step (the larger of the first and a later step).
    ``feedback`` is as for ``classify``. When the initialization itself fails
    desideratum 1 (``stable_initialization``), only h and f at init are predicted.

    Raises:
        UnsupportedError: for depth < 3 (the calculus sizes a hidden layer).
    """
    if not isinstance(depth, int) or depth < 3:
        raise UnsupportedError(
            f"coord-check predictions need depth >= 3 (got {depth!r}): the calculus "
            "sizes first, hidden and last layers"
        )
    if step is not None and step < 1:
        raise InvalidInputError(f"step must be >= 1, got {step}")
    s = _sized_for(config, feedback)
    values = _values(config, param, s, feedback)
    scenario = _scenario_at(s, values)

    def size(key: str) -> Fraction:
        if step == 1:
            return scenario.calculation.quantities[key].evaluate(values)
        return generic(scenario, key).evaluate(values)

    init, _ = initialization(config, param)
    if not stable_initialization(init):
        # the step is sized from a stable initialization: nothing to say after it
        out = {
            ("h", layer): init[f"activation[{_group(layer)}]"]
            for layer in range(1, depth)
        }
        out[("f", depth)] = init["output[init]"]
        return out
    out: dict[tuple[str, int], Fraction] = {}
    for layer in range(1, depth):
        group = "first" if layer == 1 else "hidden"
        out[("h", layer)] = init[f"activation[{group}]"]
        out[("delta_h", layer)] = size(f"feature_change[{group}]")
        out[("update", layer)] = size(f"update[{group}]")
    out[("update", depth)] = size("update[last]")
    out[("f", depth)] = init["output[init]"]
    out[("delta_f", depth)] = size("output_change")
    return out


def _feedback_notes(config: MethodConfig, feedback: dict) -> list[str]:
    """What the derived trained-feedback exponents mean, and why the top map's
    learning rate differs from the hidden maps'."""
    b, c = feedback["b"], feedback["c"]
    notes = [
        f"trained feedback (fan-in): b_fb = {b['hidden']} (hidden V_l), "
        f"{b['last']} (top V_L); c_fb = {c['hidden']} (hidden V_l), "
        f"{c['last']} (top V_L)"
    ]
    if c["hidden"] != c["last"]:
        notes.append(
            "the top map needs its own learning-rate exponent (--feedback-c-last; "
            "--feedback-c sets the hidden maps'): its reconstruction step is a sum "
            "over the C outputs, a hidden map's an aligned sum over M activations. "
            f"One shared c_fb = {c['last']} makes the hidden maps' step blow up like "
            f"M^({c['hidden'] - c['last']}); one shared c_fb = {c['hidden']} leaves "
            f"the top map's step vanishing like M^({c['last'] - c['hidden']}) "
            "(stable, the top feedback stays near its random init)"
        )
    if config.method == "dtp":
        notes.append(
            "DTP's hidden feedback learns from the image of the noise alone: its "
            "learned part meets the forward displacement and fresh noise only as a "
            "CLT sum, M^(-1/2) at muP, so in the limit V_l acts through V_l(0)"
        )
    return notes
