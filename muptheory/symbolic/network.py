"""Sizing one training step of an L-layer MLP, shared by every learning rule.

The network is sized per layer group: the first layer (fan-in d fixed), a hidden
layer (fan-in and fan-out M; every hidden layer has the same exponents once hidden
pre-activations are Theta(1)), and the last layer (fan-out C fixed). Exponents are
width-only and multipliers are removed (a = 0) before sizing; see
``muptheory.parameterization``.

A learning rule enters through a ``Rule``: the size of the vector that multiplies
h_{l-1}^T in each layer's update (BP's delta, PC's inferred error, a target's
displacement), the size of the update's entries, and whether the change of the last
hidden layer is aligned with the readout W_L (it is when it was built from W_L^T, as
in BP; it is not when it was built from batch activations, as in TP).

The step is sized twice. Pass 1 is the first step from initialization. Pass 2 is a
generic later step: the readout W_L now also holds its first update, and the output
holds its first change; the sizes a coord check sees after a few steps are the larger
of the two passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from muptheory.symbolic.calculus import Calculation, Size, max_of

GROUP_SYMBOLS = ("first", "hidden", "last")


@dataclass(frozen=True)
class Unknowns:
    """The exponents being sized (width-only, a = 0): sympy symbols or numbers."""

    b: dict
    c: dict
    extra: dict = field(default_factory=dict)

    @classmethod
    def symbols(cls, extra_names: tuple[str, ...] = ()) -> Unknowns:
        b = {g: sympy.Symbol(f"b_{g}", real=True) for g in GROUP_SYMBOLS}
        c = {g: sympy.Symbol(f"c_{g}", real=True) for g in GROUP_SYMBOLS}
        extra = {n: sympy.Symbol(n, real=True) for n in extra_names}
        return cls(b=b, c=c, extra=extra)

    @classmethod
    def training(cls, extra_names: tuple[str, ...] = ()) -> Unknowns:
        """Unknowns of the training stage: initialization already stable, so the
        first and hidden b are the numbers that stability pins (width-only 0, 1/2)."""
        u = cls.symbols(extra_names)
        u.b["first"] = Fraction(0)
        u.b["hidden"] = Fraction(1, 2)
        return u

    def value(self, symbol_or_number, solution: dict) -> Fraction:
        """The number an unknown takes in ``solution`` (numbers stand for themselves)."""
        if isinstance(symbol_or_number, sympy.Symbol):
            v = sympy.Rational(solution[symbol_or_number])
            return Fraction(int(v.p), int(v.q))
        return Fraction(symbol_or_number)


@dataclass
class StepState:
    """What one pass of the step hands to the rule and to the next pass."""

    pass_index: int
    h_first: Size
    h_hidden: Size
    output: Size  # the output's size at the start of this step
    error: Size  # e = f - y
    readout_entries: Size  # entries of W_L at the start of this step
    hidden_entries: Size  # entries of a hidden W at the start of this step
    previous: dict = field(default_factory=dict)  # sizes from the previous pass

    @property
    def tag(self) -> str:
        """The suffix of this pass's quantity keys."""
        return PASS_SUFFIX[self.pass_index]


class Rule:
    """A learning rule's contribution to the step; subclasses fill in the signals."""

    #: whether the last hidden layer's change is aligned with W_L (coherent readout)
    readout_aligned: bool = True
    #: whether feature changes lie in the span of the batch activations (h . dh is
    #: then an aligned sum)
    change_in_activation_span: bool = False

    def signals(
        self, calc: Calculation, u: Unknowns, state: StepState
    ) -> dict[str, Size]:
        """Sizes of the vectors multiplying h_{l-1}^T in the updates, per group."""
        raise NotImplementedError

    def update_entries(
        self, group: str, signal: Size, h_in: Size, u: Unknowns, state: StepState
    ) -> Size:
        """Entries of Delta W_l (default: a gradient-like outer product, SGD)."""
        return Size.of(-u.c[group]) * signal * h_in

    def extra_quantities(
        self, calc: Calculation, u: Unknowns, state: StepState
    ) -> None:
        """Rule-specific quantities (inference conditioning, activity shifts...)."""

    def knob_conditions(self) -> tuple[str, ...]:
        """Keys of the rule's own bounded quantities (desideratum 4)."""
        return ()

    def knob_theta(self) -> tuple[str, ...]:
        """Keys of the rule's own quantities that must be exactly Theta(1)."""
        return ()

    def knob_maximal(self) -> tuple[str, ...]:
        """Keys of the rule's own updates that muP makes Theta(1) (maximal) but
        whose vanishing leaves training stable (trained feedback)."""
        return ()


PASS_SUFFIX = {1: "", 2: "@2"}


def jacobian_gram(calc: Calculation, state: StepState) -> Size:
    """J J^T (C x C) for J = df/dh_(L-1): an aligned sum over M of squared readout
    entries; deeper Jacobians pass fresh hidden matrices and keep its size."""
    return calc.sum_rule(
        "jacobian_gram" + state.tag,
        state.readout_entries.squared(),
        "lln",
        "sum over M of squared readout entries",
        "J J^T (C x C)",
    )


def size_initialization(calc: Calculation, b: dict) -> dict[str, Size]:
    """Size the forward pass at initialization (desideratum 1)."""
    calc.record("input", Size.one(), "", "data, Theta(1)", "input x")
    pre_first = calc.sum_rule(
        "preactivation[first]",
        Size.of(-b["first"]),
        "fixed",
        "d inputs",
        "pre-activation u_1 = W_1 x",
    )
    h_first = calc.record(
        "activation[first]", pre_first, "", "phi keeps the size", "h_1"
    )
    pre_hidden = calc.sum_rule(
        "preactivation[hidden]",
        Size.of(-b["hidden"]) * h_first,
        "clt",
        "fresh W",
        "pre-activation u_l = W_l h_(l-1)",
    )
    h_hidden = calc.record(
        "activation[hidden]", pre_hidden, "", "phi keeps the size", "h_l (hidden)"
    )
    output = calc.sum_rule(
        "output[init]",
        Size.of(-b["last"]) * h_hidden,
        "clt",
        "fresh W_L",
        "output f = W_L h_(L-1) at init",
    )
    return {"h_first": h_first, "h_hidden": h_hidden, "output": output}


def size_step(calc: Calculation, u: Unknowns, rule: Rule) -> None:
    """Size initialization and two passes of a step; record everything in ``calc``.

    The step is sized once initialization is stable (pre-activations Theta(1), output
    O(1)): ``u.b["first"]`` and ``u.b["hidden"]`` are numbers by then, and the output
    error e = f - y is Theta(1).
    """
    init = size_initialization(calc, u.b)
    h_first, h_hidden, output = init["h_first"], init["h_hidden"], init["output"]

    previous: dict = {}
    readout = Size.of(-u.b["last"])
    hidden_entries = Size.of(-u.b["hidden"])
    out_now = output
    for pass_index in (1, 2):
        tag = PASS_SUFFIX[pass_index]
        error = calc.record(
            "error" + tag,
            Size.one(),
            "",
            "assumed: a stable run keeps f O(1), and y is Theta(1)",
            f"output error e = f - y (pass {pass_index})",
        )
        state = StepState(
            pass_index,
            h_first,
            h_hidden,
            out_now,
            error,
            readout,
            hidden_entries,
            previous,
        )
        signals = rule.signals(calc, u, state)
        rule.extra_quantities(calc, u, state)
        sizes = _updates_and_changes(calc, u, rule, state, signals, tag)
        previous = {**sizes, "signals": signals}

        # the next pass starts from the weights and output after this step
        readout = calc.record(
            "readout_entries" + tag,
            max_of(Size.of(-u.b["last"]), sizes["entries_last"]),
            "",
            "init plus first update",
            "entries of W_L after the step",
        )
        hidden_entries = max_of(Size.of(-u.b["hidden"]), sizes["entries_hidden"])
        # second-order terms (dW_L dh) are below dW_L h wherever features are
        # stable, so the output that later inverses see keeps first-order terms only
        out_now = calc.record(
            "output" + tag,
            max_of(output, sizes["update_last"], sizes["readout_path"]),
            "",
            "init plus first-order change",
            "output f after the step",
        )


def _updates_and_changes(
    calc: Calculation, u: Unknowns, rule: Rule, state: StepState, signals, tag: str
) -> dict[str, Size]:
    x = Size.one()
    h1, hh = state.h_first, state.h_hidden
    entries = {
        "first": rule.update_entries("first", signals["first"], x, u, state),
        "hidden": rule.update_entries("hidden", signals["hidden"], h1, u, state),
        "last": rule.update_entries("last", signals["last"], hh, u, state),
    }
    for group, size in entries.items():
        calc.record(f"entries[{group}]{tag}", size, "", "", f"entries of dW ({group})")

    # -- each layer's own update applied to its input ------------------------------
    upd_first = calc.sum_rule(
        f"update[first]{tag}", entries["first"] * x, "fixed", "d inputs", "dW_1 x"
    )
    upd_hidden = calc.sum_rule(
        f"update[hidden]{tag}",
        entries["hidden"] * h1,
        "lln",
        "dW built from h",
        "dW_l h",
    )
    upd_last = calc.sum_rule(
        f"update[last]{tag}", entries["last"] * hh, "lln", "dW built from h", "dW_L h"
    )

    # -- feature changes, carried upward -------------------------------------------
    dh_first = calc.record(
        f"feature_change[first]{tag}", upd_first, "", "", "feature change dh_1"
    )
    carried = calc.sum_rule(
        f"carried_change{tag}",
        Size.of(-u.b["hidden"]) * dh_first,
        "clt",
        "square random W: same order aligned or not",
        "W_l dh_(l-1)",
    )
    # dW = (signal) h^T applied to dh sums h . dh: aligned only when the change
    # lies in the span of the activations (TP's batch-built targets)
    overlap, overlap_why = (
        ("lln", "dh lies in the span of the activations")
        if rule.change_in_activation_span
        else ("clt", "dh built from W^T signals, independent of h")
    )
    second_order = calc.sum_rule(
        f"second_order_change{tag}",
        entries["hidden"] * dh_first,
        overlap,
        overlap_why,
        "dW_l dh_(l-1)",
    )
    dh_hidden = calc.record(
        f"feature_change[hidden]{tag}",
        max_of(upd_hidden, carried, second_order),
        "",
        "",
        "feature change dh_l (hidden)",
    )

    # -- the output change ---------------------------------------------------------
    if rule.readout_aligned:
        rule_name, why = "lln", "dh was built from W_L^T: aligned with W_L"
    else:
        rule_name, why = "clt", "dh built from batch activations: independent of W_L"
    readout = calc.sum_rule(
        f"readout_path{tag}",
        Size.of(-u.b["last"]) * dh_hidden,
        rule_name,
        why,
        "W_L(0) dh_(L-1)",
    )
    readout_update = calc.sum_rule(
        f"readout_update_path{tag}",
        entries["last"] * dh_hidden,
        overlap,
        overlap_why,
        "dW_L dh_(L-1)",
    )
    output_change = calc.record(
        f"output_change{tag}",
        max_of(upd_last, readout, readout_update),
        "",
        "",
        "output change df",
    )
    return {
        "update_first": upd_first,
        "update_hidden": upd_hidden,
        "update_last": upd_last,
        "feature_change_first": dh_first,
        "feature_change_hidden": dh_hidden,
        "output_change": output_change,
        "readout_path": readout,
        "entries_first": entries["first"],
        "entries_hidden": entries["hidden"],
        "entries_last": entries["last"],
    }
