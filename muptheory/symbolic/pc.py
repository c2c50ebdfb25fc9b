"""Predictive coding (PC) with energy coefficients gamma_l = gamma M^(-gamma_bar_l).

With forward initialization only the output error is nonzero at the start of
inference. At the inference equilibrium (THEORY section 6) the output error is
eps_L = (I + C_gamma)^(-1) e with C_gamma = sum_l (gamma_L / gamma_l) J_l J_l^T, and
the hidden errors are eps_l = (gamma_L / gamma_l) J_l^T eps_L. The inverse is sized
by whichever of I and C_gamma dominates (a scenario split). Single-shot sequential
inference sends eps_L = e down in one sweep, with no (I + C_gamma)^(-1); iterative
inference with a width-independent rate approaches the equilibrium and is sized
like it.

Weight updates descend the energy: Delta W_l = eta_l gamma_l eps_l phi(v_(l-1))^T for
the first and hidden layers. For the last layer the literature differs on whether
the factor gamma_L appears; ``last_layer_gamma`` chooses. Without it (the default),
gamma_bar_L = -1 reproduces the muP of Gauss-Newton targets, which is the reading
the paper's table caption implies.

Two knob conditions (desideratum 4) bound gamma_bar_L: the activities may move by at
most Theta(1) (the hidden errors eps_l are the activity shifts v_l - h_l), and, for
equilibrium inference, the energy's curvature along the output directions, C_gamma,
must stay O(1), or reaching the equilibrium would need a number of inference steps
that grows with the width.
"""

from __future__ import annotations

from muptheory.symbolic.calculus import Calculation, Size
from muptheory.symbolic.network import Rule, StepState, Unknowns, jacobian_gram


class PredictiveCoding(Rule):
    readout_aligned = True

    def __init__(
        self, gamma_bar_last, gamma_bar_hidden, *, inference, last_layer_gamma
    ):
        self.gamma_last = Size.of(-gamma_bar_last)
        self.gamma_hidden = Size.of(-gamma_bar_hidden)
        self.ratio = Size.of(gamma_bar_hidden - gamma_bar_last)  # gamma_L / gamma_l
        self.inference = inference
        self.last_layer_gamma = last_layer_gamma

    def signals(
        self, calc: Calculation, u: Unknowns, state: StepState
    ) -> dict[str, Size]:
        tag = state.tag
        jjt = jacobian_gram(calc, state)
        c_gamma = calc.record(
            "inference_conditioning" + tag,
            self.ratio * jjt,
            "",
            "(gamma_L / gamma_l) J J^T",
            "C_gamma",
        )
        if self.inference == "sequential":
            eps_top = calc.record(
                "error[last]" + tag, state.error, "", "one sweep: eps_L = e", "eps_L"
            )
        else:
            scale = calc.dominant(
                "(I + C_gamma)" + tag, {"I": Size.one(), "C_gamma": c_gamma}
            )
            eps_top = calc.record(
                "error[last]" + tag,
                scale.inverse_of_single() * state.error,
                "",
                "(I + C_gamma)^(-1) e",
                "eps_L",
            )
        eps_hidden = calc.sum_rule(
            "activity_shift" + tag,
            self.ratio * state.readout_entries * eps_top,
            "fixed",
            "C outputs",
            "eps_(L-1) = (gamma_L/gamma_l) W_L^T eps_L = v - h",
        )
        eps_first = calc.sum_rule(
            "error[first]" + tag,
            Size.of(-u.b["hidden"]) * eps_hidden,
            "clt",
            "through a fresh hidden W^T",
            "eps_1",
        )
        last = self.gamma_last * eps_top if self.last_layer_gamma else eps_top
        return {
            "first": self.gamma_hidden * eps_first,
            "hidden": self.gamma_hidden * eps_hidden,
            "last": last,
        }

    def knob_conditions(self) -> tuple[str, ...]:
        keys = ("activity_shift",)
        if self.inference != "sequential":
            keys += ("inference_conditioning",)
        return keys
