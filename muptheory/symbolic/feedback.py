"""TP and DTP with feedback weights trained by a noisy reconstruction loss.

The simulator's rule (``muptheory.simulate.tp``), in pre-activation space: linear
feedback weights V_l (n_(l-1) x n_l, no nonlinearity) send targets down,

    TP:   t_(l-1) = V_l t_l,
    DTP:  t_(l-1) = u_(l-1) + V_l (t_l - u_l),

from t_L = f - beta e. Before each forward update every V_l takes one SGD step,
with learning rate eta M^(-c_fb), on a reconstruction loss whose noise xi has a
width-independent scale:

    TP:   1/2 ||V_l s_l - (u_(l-1) + xi)||^2,   source s_l = W_l phi(u_(l-1) + xi),
    DTP:  1/2 ||V_l s_l - xi||^2,               source s_l = W_l phi(u_(l-1) + xi) - u_l,

so Delta V_l = -eta M^(-c_fb) (1/B) sum over the batch of r_l s_l^T with the
residual r_l = V_l s_l - target. V_l starts with entries of variance
M^(1 - 2 b_fb) / n_l: b_fb is a fan-in exponent as for forward weights.

Two feedback groups are sized, as the forward layers are: the top map V_L (M x C,
fan-in C fixed, width-only init exponent b_fb - 1/2) and a hidden map V_l (M x M,
width-only exponent b_fb). Each has its own unknowns b_fb and c_fb (width-only
here; ``fan_in_feedback`` converts), because the desiderata pin different learning
rates for the two: a top map's reconstruction update is a sum over C outputs, a
hidden map's a sum over M activations.

Alignment of each product (first step: V_l(0) is independent of W and the batch):

- V_l(0) x: fixed sum over C for the top map, CLT over M for a hidden map;
- Delta V_l x = eta r (s . x): s . x is a sum over n_l. For the top map it is a
  fixed sum. For a hidden map it is LLN when x is the source it was built from (the
  reconstruction step itself) or, under TP, any vector carrying u_l (TP's source
  W_l phi(u_(l-1) + xi) and TP's targets both do); it is CLT when x is independent
  of s: DTP's source is the image of the noise alone, so its learned part meets the
  forward displacement, and fresh noise, only as a CLT sum.
"""

from __future__ import annotations

from fractions import Fraction

from muptheory.symbolic.calculus import Calculation, Size, max_of
from muptheory.symbolic.network import Rule, StepState, Unknowns

FEEDBACK_GROUPS = ("hidden", "last")

# width-only minus fan-in init exponent of each feedback group (fan-in C for V_L)
FAN_IN_SHIFT = {"hidden": Fraction(0), "last": Fraction(-1, 2)}


def feedback_unknown(kind: str, group: str) -> str:
    """The name of a feedback exponent unknown (``b`` width-only, or ``c``)."""
    return f"{kind}_fb_{group}"


# b_fb (fan-in) that the init desideratum pins for both feedback groups
PINNED_B = Fraction(1, 2)

FEEDBACK_UNKNOWNS = tuple(
    feedback_unknown(k, g) for k in ("b", "c") for g in FEEDBACK_GROUPS
)


def fan_in_feedback(values: dict[str, Fraction]) -> dict[str, dict[str, Fraction]]:
    """Feedback exponents from width-only unknowns to the fan-in convention."""
    return {
        "b": {
            g: values[feedback_unknown("b", g)] - FAN_IN_SHIFT[g]
            for g in FEEDBACK_GROUPS
        },
        "c": {g: values[feedback_unknown("c", g)] for g in FEEDBACK_GROUPS},
    }


def width_only_feedback(b: dict, c: dict) -> dict[str, Fraction]:
    """Fan-in feedback exponents (per group) as values of the width-only unknowns."""
    out = {}
    for g in FEEDBACK_GROUPS:
        out[feedback_unknown("b", g)] = Fraction(b[g]) + FAN_IN_SHIFT[g]
        out[feedback_unknown("c", g)] = Fraction(c[g])
    return out


def pinned_init() -> dict[str, Fraction]:
    """The width-only b_fb of each group that the init desideratum pins."""
    return {
        feedback_unknown("b", g): PINNED_B + FAN_IN_SHIFT[g] for g in FEEDBACK_GROUPS
    }


def init_stage_lines() -> list[str]:
    """The feedback's initialization stage, for ``--explain``."""
    lines = [
        "Feedback initialization (desideratum 4: V_l(0) x Theta(1) for Theta(1) x):"
    ]
    for g, count, rule in (("last", "C", "fixed"), ("hidden", "M", "clt")):
        sym = feedback_unknown("b", g)
        term = f"-{sym}" if rule == "fixed" else f"1/2 - {sym}"
        lines.append(
            f"  V(0) x ({g} feedback, sum over {count})".ljust(42)
            + f" ~ M^({term}) [{rule}]  pins {sym} = {pinned_init()[sym]} "
            f"(width-only; fan-in b_fb = {PINNED_B})"
        )
    return lines


class TrainedFeedback(Rule):
    """TP (``difference=False``) or DTP with trained linear feedback weights."""

    readout_aligned = False  # targets come from V and the batch, not from W_L^T
    extra_unknowns = FEEDBACK_UNKNOWNS

    def __init__(self, *, difference: bool, init_pinned: bool = False):
        self.difference = difference
        # a derivation pins b_fb first, by the init desideratum alone (V_l(0) x
        # Theta(1) for Theta(1) x): b_fb = 1/2 fan-in, width-only 0 (top), 1/2
        self.init_pinned = init_pinned
        if init_pinned:
            self.extra_unknowns = tuple(
                feedback_unknown("c", g) for g in FEEDBACK_GROUPS
            )
        # TP's hidden displacement u_l - V t contains u_l itself, so the feature
        # change meets h_l as an aligned sum; DTP's is V applied to the output error
        self.change_in_activation_span = not difference

    # -- the feedback maps -------------------------------------------------------

    def _init_entries(self, u: Unknowns, group: str) -> Size:
        if self.init_pinned:
            return Size.of(-(PINNED_B + FAN_IN_SHIFT[group]))
        return Size.of(-u.extra[feedback_unknown("b", group)])

    def _rate(self, u: Unknowns, group: str) -> Size:
        return Size.of(-u.extra[feedback_unknown("c", group)])

    def _learned(self, calc: Calculation, group: str, tag: str) -> list[tuple]:
        """(eta r size, source size) of every reconstruction step so far."""
        steps = []
        for t in ("", "@2"):
            key = f"feedback_coefficient[{group}]{t}"
            if key in calc.quantities:
                steps.append(
                    (
                        calc.quantities[key],
                        calc.quantities[f"feedback_source[{group}]{t}"],
                    )
                )
            if t == tag:
                break
        return steps

    def _apply(
        self,
        calc: Calculation,
        u: Unknowns,
        group: str,
        x: Size,
        tag: str,
        *,
        aligned: Size | None,
    ) -> Size:
        """V_group x with V = V(0) + the learned steps so far.

        ``aligned`` is the size of the part of x that carries u_l (LLN against a
        TP source); None when x is independent of every source (CLT).
        """
        if group == "last":
            pieces = [self._init_entries(u, group) * x]  # fixed sum over C
            pieces += [
                coef * source * x for coef, source in self._learned(calc, group, tag)
            ]
            return max_of(*pieces)
        pieces = [self._init_entries(u, group) * x.times_width(Fraction(1, 2))]
        for coef, source in self._learned(calc, group, tag):
            pieces.append(coef * source * x.times_width(Fraction(1, 2)))
            if aligned is not None:
                pieces.append(coef * source * aligned.times_width(1))
        return max_of(*pieces)

    def _reconstruction(
        self, calc: Calculation, u: Unknowns, group: str, source: Size, tag: str
    ) -> None:
        """Size one SGD step of V_group on its reconstruction loss."""
        if not tag:
            width_rule = "fixed" if group == "last" else "clt"
            calc.sum_rule(
                f"feedback_init[{group}]",
                self._init_entries(u, group),
                width_rule,
                "V(0) is independent of what it is applied to",
                f"V(0) x for a Theta(1) input x ({group} feedback)",
            )
        calc.record(
            f"feedback_source[{group}]{tag}",
            source,
            "",
            "W_l (phi(u + xi) - phi(u)): noise image, CLT"
            if self.difference
            else "W_l phi(u + xi) ~ u_l",
            f"reconstruction source s ({group} feedback)",
        )
        # the source of an earlier step meets this one as the reconstruction sees it
        own = None if self.difference else source
        predicted = self._apply(calc, u, group, source, tag, aligned=own)
        residual = calc.record(
            f"reconstruction_residual[{group}]{tag}",
            max_of(predicted, Size.one()),
            "",
            "V s against the Theta(1) target (u + xi, or xi for DTP)",
            f"residual r = V s - target ({group} feedback)",
        )
        coefficient = calc.record(
            f"feedback_coefficient[{group}]{tag}",
            self._rate(u, group) * residual,
            "",
            "",
            f"eta_fb r ({group} feedback)",
        )
        entries = coefficient * source
        calc.record(
            f"feedback_entries[{group}]{tag}",
            entries,
            "fixed",
            "batch sum",
            f"entries of dV ({group} feedback)",
        )
        if group == "last":
            calc.sum_rule(
                f"reconstruction_step[{group}]{tag}",
                entries * source,
                "fixed",
                "sum over the C outputs",
                "dV_L s",
            )
            return
        calc.sum_rule(
            f"reconstruction_step[{group}]{tag}",
            entries * source,
            "lln",
            "dV built from s, applied to s",
            "dV_l s (same batch)",
        )
        if self.difference:
            calc.sum_rule(
                f"reconstruction_fresh[{group}]{tag}",
                entries * source,
                "clt",
                "fresh noise: its image is independent of s",
                "dV_l s' (fresh noise)",
            )

    # -- the rule ---------------------------------------------------------------

    def signals(
        self, calc: Calculation, u: Unknowns, state: StepState
    ) -> dict[str, Size]:
        tag = state.tag

        # The output after a step is sized as max(f(0), 1): it is O(1) wherever
        # the step is stable (the network takes e = f - y as Theta(1) on the same
        # grounds), and keeping the output change's many pieces here would multiply
        # the pieces of every feedback product (a bound, tight unless the step is
        # trivial).
        output = calc.quantities["output[init]"] + Size.one()

        # feedback trains first (as in the simulator), on this step's sources
        if self.difference:
            # the noise image: W_L (or its update) against independent noise, CLT;
            # a hidden W_l(0) gives Theta(1), and its update dW_l meets the noise as
            # a CLT sum, below dW_l h (O(1) wherever the step is stable)
            top_source = state.readout_entries.times_width(Fraction(1, 2))
            hidden_source = Size.one()
        else:
            top_source = calc.quantities["output[init]"] if not tag else output
            hidden_source = state.h_hidden
        self._reconstruction(calc, u, "last", top_source, tag)
        self._reconstruction(calc, u, "hidden", hidden_source, tag)

        # -- the top map: targets of the last hidden layer -----------------------
        if self.difference:
            sent = state.error  # t_L - u_L = -beta e
        else:
            sent = max_of(output, state.error)  # t_L = f - beta e
        top = self._apply(calc, u, "last", sent, tag, aligned=None)
        hidden = calc.record(
            f"target_displacement[hidden]{tag}",
            top if self.difference else max_of(state.h_hidden, top),
            "",
            "V_L (t_L - u_L)" if self.difference else "u_(L-1) - V_L t_L",
            "t_(L-1) - u_(L-1)",
        )

        # -- a hidden map: targets of the layer below ----------------------------
        if self.difference:
            below = self._apply(calc, u, "hidden", hidden, tag, aligned=None)
        else:
            # t_(L-1)'s learned part points along the top residual, which holds
            # u_(L-1) + xi: that part meets a TP source as an aligned sum
            aligned = max_of(
                *(
                    self._rate(u, "last") * source * sent
                    for _, source in self._learned(calc, "last", tag)
                )
            )
            below = self._apply(calc, u, "hidden", top, tag, aligned=aligned)
            below = max_of(state.h_first, below)
        first = calc.record(
            f"target_displacement[first]{tag}",
            below,
            "",
            "V_l (t_l - u_l)" if self.difference else "u_(l-1) - V_l t_l",
            "t_(l-1) - u_(l-1)",
        )
        return {"first": first, "hidden": hidden, "last": state.error}

    # -- desideratum 4 -------------------------------------------------------------

    def knob_conditions(self) -> tuple[str, ...]:
        keys = [f"feedback_init[{g}]" for g in FEEDBACK_GROUPS]
        keys += [f"reconstruction_step[{g}]" for g in FEEDBACK_GROUPS]
        keys += ["target_displacement[hidden]", "target_displacement[first]"]
        return tuple(keys)

    def knob_maximal(self) -> tuple[str, ...]:
        keys = [f"feedback_init[{g}]" for g in FEEDBACK_GROUPS]
        keys += [f"reconstruction_step[{g}]" for g in FEEDBACK_GROUPS]
        return tuple(keys)
