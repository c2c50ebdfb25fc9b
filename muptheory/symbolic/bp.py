"""Backpropagation: SGD and the normalized optimizer Adam.

BP's signal at layer l is delta_l = dloss/du_l: the output error e at the top, then
delta_(L-1) = phi' * W_L^T e (a sum over the C outputs) and, below it,
delta_l = phi' * W_(l+1)^T delta_(l+1) (a CLT sum through a fresh hidden matrix, plus
an aligned sum through the matrix's own update once it has one). SGD's update is
Delta W_l = -eta_l delta_l h_(l-1)^T; Adam normalizes each entry, so its update has
entries of size M^(-c_l) whatever the gradient's size, still aligned with h_(l-1).
Because delta_(L-1) is built from W_L^T, the change of the last hidden layer is
aligned with the readout.
"""

from __future__ import annotations

from muptheory.symbolic.calculus import Calculation, Size, max_of
from muptheory.symbolic.network import Rule, StepState, Unknowns


class Backprop(Rule):
    readout_aligned = True

    def __init__(self, optimizer: str = "sgd"):
        self.optimizer = optimizer

    def signals(
        self, calc: Calculation, u: Unknowns, state: StepState
    ) -> dict[str, Size]:
        tag = state.tag
        top = calc.sum_rule(
            "signal[hidden]" + tag,
            state.readout_entries * state.error,
            "fixed",
            "C outputs",
            "delta_(L-1) = W_L^T e",
        )
        through_fresh = Size.of(-u.b["hidden"]) * top
        terms = [through_fresh.times_width("1/2")]
        trained = state.previous.get("entries_hidden")
        if trained is not None:
            terms.append((trained * top).times_width(1))
        first = calc.record(
            "signal[first]" + tag,
            max_of(*terms),
            "clt",
            "fresh W^T: CLT; its own update: aligned (lln)",
            "delta_1 = W_2^T delta_2",
        )
        return {"first": first, "hidden": top, "last": state.error}

    def update_entries(self, group, signal, h_in, u, state) -> Size:
        if self.optimizer == "adam":
            # Adam divides by the gradient's own scale: entries ~ learning rate
            return Size.of(-u.c[group])
        return Size.of(-u.c[group]) * signal * h_in
