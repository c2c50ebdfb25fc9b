"""Target propagation (TP) and difference target propagation (DTP), ridge feedback.

The output target is f - beta e. Targets are sent down by the linear feedback fitted
on the batch, Q_l = U_(l-1) (U_l^T U_l + mu I)^(-1) U_l^T (columns of U are the
batch's pre-activations; mu = mu0 M^(-mu_bar)): TP sets t_(l-1) = Q_l t_l, DTP
t_(l-1) = u_(l-1) + Q_l (t_l - u_l). Each layer descends 1/2 ||t_l - u_l||^2.

Sizes: the top map Q_L works on the P x P Gram matrix of outputs (a sum over the C
outputs); hidden maps on U_l^T U_l, an aligned sum over M. Each inverse is sized by
whichever of the Gram matrix and mu dominates (a scenario split). TP also carries a
reconstruction bias, Q_l u_l - u_(l-1) = -mu U_(l-1) (U_l^T U_l + mu)^(-1), that DTP
removes. The displacement is a combination of batch activations, independent of the
readout W_L at initialization, so W_L Delta h_(L-1) is a CLT sum: the reason TP keeps
the standard last-layer scaling b_L = 1/2.
"""

from __future__ import annotations

from muptheory.symbolic.calculus import Calculation, Size, max_of
from muptheory.symbolic.network import Rule, StepState, Unknowns


class TargetPropagation(Rule):
    readout_aligned = False
    change_in_activation_span = True

    def __init__(self, mu_bar, *, difference: bool):
        self.mu = Size.of(-mu_bar)
        self.difference = difference

    def signals(
        self, calc: Calculation, u: Unknowns, state: StepState
    ) -> dict[str, Size]:
        tag = state.tag
        gram_top = calc.sum_rule(
            "output_gram" + tag, state.output.squared(), "fixed", "C outputs", "F^T F"
        )
        top = calc.dominant("(F^T F + mu)" + tag, {"F^T F": gram_top, "mu": self.mu})
        coefficients = top.inverse_of_single() * state.output * state.error
        hidden_terms = [state.h_hidden * coefficients]
        if not self.difference:
            hidden_terms.append(state.h_hidden * self.mu * top.inverse_of_single())
        hidden = calc.sum_rule(
            "signal[hidden]" + tag,
            max_of(*hidden_terms),
            "fixed",
            "combination of the P batch activations",
            "t_(L-1) - u_(L-1)" + ("" if self.difference else " (with TP's bias)"),
        )

        gram = calc.sum_rule(
            "hidden_gram" + tag,
            state.h_hidden.squared(),
            "lln",
            "sum over M of squared activations",
            "U_l^T U_l",
        )
        inner = calc.dominant("(U^T U + mu)" + tag, {"U^T U": gram, "mu": self.mu})
        projected = calc.sum_rule(
            "projected_displacement" + tag,
            state.h_hidden * hidden,
            "lln",
            "displacement lies in the span of the activations",
            "U_l^T (t_l - u_l)",
        )
        first_terms = [state.h_first * inner.inverse_of_single() * projected]
        if not self.difference:
            first_terms.append(state.h_first * self.mu * inner.inverse_of_single())
        first = calc.record(
            "signal[first]" + tag,
            max_of(*first_terms),
            "fixed",
            "combination of the P batch activations",
            "t_1 - u_1",
        )
        return {"first": first, "hidden": hidden, "last": state.error}

    def knob_conditions(self) -> tuple[str, ...]:
        return ()
