"""Gauss-Newton targets (GNT).

Each hidden layer's target is u_l - J_l^T (J_l J_l^T + lambda I)^(-1) e with
J_l = df/du_l, and the layer descends 1/2 ||target - u_l||^2, so its update is
Delta W_l = -eta_l J_l^T (J_l J_l^T + lambda I)^(-1) e h_(l-1)^T. The C x C matrix
J J^T is an aligned sum over M of squared readout entries; the inverse is sized by
whichever of J J^T and lambda = lambda0 M^(-lambda_bar) dominates (a scenario split).
The last layer's target is f - e, which gives SGD's update there. The displacement
is built from W_L^T, so the last hidden layer's change is aligned with the readout.
"""

from __future__ import annotations

from muptheory.symbolic.calculus import Calculation, Size
from muptheory.symbolic.network import Rule, StepState, Unknowns, jacobian_gram


class GaussNewtonTargets(Rule):
    readout_aligned = True

    def __init__(self, lambda_bar):
        self.lambda_bar = lambda_bar  # None: lambda = 0

    def signals(
        self, calc: Calculation, u: Unknowns, state: StepState
    ) -> dict[str, Size]:
        tag = state.tag
        jjt = jacobian_gram(calc, state)
        candidates = {"J J^T": jjt}
        if self.lambda_bar is not None:
            candidates["lambda"] = Size.of(-self.lambda_bar)
        scale = calc.dominant("(J J^T + lambda I)" + tag, candidates)
        hidden = calc.sum_rule(
            "signal[hidden]" + tag,
            state.readout_entries * scale.inverse_of_single() * state.error,
            "fixed",
            "C outputs",
            "J^T (J J^T + lambda)^(-1) e",
        )
        first = calc.sum_rule(
            "signal[first]" + tag,
            Size.of(-u.b["hidden"]) * hidden,
            "clt",
            "J_1^T passes a fresh hidden W^T",
            "displacement at layer 1",
        )
        return {"first": first, "hidden": hidden, "last": state.error}
