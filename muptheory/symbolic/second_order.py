"""Backpropagation with the second-order optimizers K-FAC and Shampoo.

Both precondition BP's gradient delta_l h_(l-1)^T (``bp.py``) from both sides, so
the update stays a rank-one matrix u_l v_l^T and the rule's signal is the
preconditioned vector u_l (scaled by the input side's scalar); the calculus then
applies it to h_(l-1) as an aligned (lln) sum, as for SGD.

K-FAC (Martens & Grosse 2015):
    Delta W_l = -eta_l (G_l + rho_G I)^(-1) delta_l h_(l-1)^T (A_l + rho_A I)^(-1),
    A_l = E[h h^T] (fan-in side), G_l = E[delta delta^T] (fan-out side).
h is an eigenvector of h h^T with eigenvalue |h|^2, so (A + rho_A)^(-1) h =
h / (|h|^2 + rho_A); likewise (G + rho_G)^(-1) delta = delta / (|delta|^2 + rho_G).
|v|^2 is an aligned sum of n squared coordinates: n v^2, with n = M or a fixed count.

Shampoo (Gupta et al. 2018), with L = g g^T and R = g^T g for the gradient g:
    Delta W_l = -eta_l (L + rho I)^(-1/4) g (R + rho I)^(-1/4).
For g = delta h^T both L and R have the single nonzero eigenvalue
|delta|^2 |h|^2, so Delta W = -eta g / (|delta|^2 |h|^2 + rho)^(1/2): without
damping, the unit-spectral-norm matrix delta h^T / (|delta| |h|). One damping per
layer serves L and R, since they share their nonzero eigenvalues (an assumption:
damping L and R separately would pin each damping to that same eigenvalue).

Damping is rho = M^(rho exponent); each exponent is an extra unknown, pinned by
desideratum 4: the damping is of the order of its factor's nonzero eigenvalue
(eigenvalue / damping = Theta(1)). Every max(eigenvalue, damping) in an inverse is
a scenario split (``Calculation.dominant``). Statistics are those of one step's
gradient (batch fixed). The preconditioner is computed once, from the first step's
statistics, and held for the later step (as K-FAC's and Shampoo's inverse-update
interval does): the later step's gradient passes through it. Splitting the later
step's inverses again would multiply the scenarios (each degenerate, damping and
eigenvalue being of one order; the first few of that fuller split gave these same
exponents).
Exponents are width-only (``network.py``).
"""

from __future__ import annotations

from fractions import Fraction

from muptheory.symbolic.bp import Backprop
from muptheory.symbolic.calculus import Calculation, Size
from muptheory.symbolic.network import GROUP_SYMBOLS, Rule, StepState, Unknowns

OPTIMIZERS = ("kfac", "shampoo")

# width exponents of each group's (fan-in, fan-out): M -> 1, a fixed count -> 0
FAN_EXPONENTS = {"first": (0, 1), "hidden": (1, 1), "last": (1, 0)}


def _squared_norm(coord: Size, count_exponent: int) -> Size:
    """|v|^2 for a vector of M^count_exponent coordinates of size ``coord``."""
    return coord.squared().times_width(count_exponent)


class SecondOrder(Rule):
    """BP preconditioned by K-FAC or Shampoo, sized per layer group."""

    readout_aligned = True  # delta_(L-1) is still built from W_L^T

    def __init__(self, optimizer: str = "kfac"):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown second-order optimizer {optimizer!r}")
        self.optimizer = optimizer
        if optimizer == "kfac":
            self.extra_unknowns = tuple(
                f"rho_{side}_{g}" for side in ("A", "G") for g in GROUP_SYMBOLS
            )
        else:
            self.extra_unknowns = tuple(f"rho_{g}" for g in GROUP_SYMBOLS)
        self._gradient = Backprop("sgd")

    def signals(
        self, calc: Calculation, u: Unknowns, state: StepState
    ) -> dict[str, Size]:
        tag = state.tag
        delta = self._gradient.signals(calc, u, state)
        h_in = {"first": Size.one(), "hidden": state.h_first, "last": state.h_hidden}
        precondition = self._kfac if self.optimizer == "kfac" else self._shampoo
        return {
            g: precondition(calc, u, g, delta[g], h_in[g], tag) for g in GROUP_SYMBOLS
        }

    # -- K-FAC ---------------------------------------------------------------------

    def _kfac(
        self, calc: Calculation, u: Unknowns, group: str, delta: Size, h: Size, tag: str
    ) -> Size:
        fan_in, fan_out = FAN_EXPONENTS[group]

        # input side: (A + rho_A)^(-1) h = h / (|h|^2 + rho_A); fan-out side:
        # (G + rho_G)^(-1) delta = delta / (|delta|^2 + rho_G). Each split is made
        # once: the preconditioner is held from the first step.
        a_scale = _damped_factor(
            calc, u, "A", group, _squared_norm(h, fan_in), fan_in, "h", "inputs"
        )
        g_scale = _damped_factor(
            calc,
            u,
            "G",
            group,
            _squared_norm(delta, fan_out),
            fan_out,
            "delta",
            "signals",
        )
        input_scale = a_scale.inverse_of_single()
        return calc.record(
            f"preconditioned_signal[{group}]{tag}",
            delta * g_scale.inverse_of_single() * input_scale,
            "",
            "",
            f"(G + rho_G)^(-1) delta / (|h|^2 + rho_A) ({group})",
        )

    # -- Shampoo -------------------------------------------------------------------

    def _shampoo(
        self, calc: Calculation, u: Unknowns, group: str, delta: Size, h: Size, tag: str
    ) -> Size:
        fan_in, fan_out = FAN_EXPONENTS[group]

        # L = g g^T and R = g^T g share the nonzero eigenvalue |delta|^2 |h|^2
        key = f"shampoo_L_R[{group}]"
        if key not in calc.quantities:
            eigen = calc.record(
                f"shampoo_eigenvalue[{group}]",
                _squared_norm(delta, fan_out) * _squared_norm(h, fan_in),
                "",
                "aligned sums over fan-out and fan-in",
                f"|delta|^2 |h|^2, the eigenvalue of L and R ({group})",
            )
            damping = Size.of(u.extra[f"rho_{group}"])
            calc.record(
                f"shampoo_eigenvalue_over_damping[{group}]",
                eigen * damping.inverse_of_single(),
                "",
                "desideratum 4: damping of the eigenvalue's order",
                f"|delta|^2 |h|^2 / rho ({group})",
            )
            calc.dominant(key, {"|delta|^2 |h|^2": eigen, "rho": damping})
        scale = calc.quantities[key]

        # (L + rho)^(-1/4) on the left and (R + rho)^(-1/4) on the right
        return calc.record(
            f"preconditioned_signal[{group}]{tag}",
            delta * scale.to_power(Fraction(-1, 2)),
            "",
            "",
            f"delta / (|delta|^2 |h|^2 + rho)^(1/2) ({group})",
        )

    # -- desideratum 4 ---------------------------------------------------------------

    def knob_theta(self) -> tuple[str, ...]:
        if self.optimizer == "kfac":
            return tuple(
                f"{side}_eigenvalue_over_damping[{g}]"
                for side in ("A", "G")
                for g in GROUP_SYMBOLS
            )
        return tuple(f"shampoo_eigenvalue_over_damping[{g}]" for g in GROUP_SYMBOLS)


def _damped_factor(
    calc: Calculation,
    u: Unknowns,
    factor: str,
    group: str,
    squared_norm: Size,
    wide: bool,
    vector: str,
    what: str,
) -> Size:
    """The size of (|v|^2 + rho) for a K-FAC factor, split once per group.

    Records the factor's eigenvalue |v|^2 (an aligned sum when the side is M wide),
    the ratio eigenvalue / damping that desideratum 4 pins to Theta(1), and which
    of the two dominates.
    """
    key = f"kfac_{factor}[{group}]"
    if key not in calc.quantities:
        eigen = calc.record(
            f"kfac_{factor}_eigenvalue[{group}]",
            squared_norm,
            "lln" if wide else "fixed",
            f"aligned sum of squared {what}",
            f"|{vector}|^2, {factor}'s eigenvalue ({group})",
        )
        damping = Size.of(u.extra[f"rho_{factor}_{group}"])
        calc.record(
            f"{factor}_eigenvalue_over_damping[{group}]",
            eigen * damping.inverse_of_single(),
            "",
            "desideratum 4: damping of the eigenvalue's order",
            f"|{vector}|^2 / rho_{factor} ({group})",
        )
        calc.dominant(key, {f"|{vector}|^2": eigen, f"rho_{factor}": damping})
    return calc.quantities[key]
