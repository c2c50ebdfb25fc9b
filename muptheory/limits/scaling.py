"""Which terms survive the limit: width exponents of every update the engine uses.

The exact engine stores hidden vectors with Theta(1) coordinates (forward vectors h,
v, targets) or rescaled to Theta(1) (backward vectors: g_hat = M g, the PC errors
eps_hat_l = M W_{L:l+1}^T eps_L). Written in those units, each layer's weight update
acts on a vector with one width factor M^kappa_l, and the limit keeps the term when
kappa_l = 0, drops it when kappa_l < 0, and cannot exist when kappa_l > 0.

Parameterizations are taken in the fan-in convention with multipliers removed by the
abc symmetry (a = 0). The engine needs b_first = b_hidden = 1/2 (Theta(1) features at
initialization); the last layer's b_L decides the output at initialization:
b_L = 1 (muP): W_L(0) u -> sigma <omega, u>, a deterministic readout along the C
directions omega of W_L's rows, and backward vectors M W_L^T r are Theta(1);
b_L = 1/2: W_L(0) u -> sigma Xi^T a_u, a Gaussian C-vector per direction (only for
rules that never multiply by W_L^T, i.e. TP/DTP); b_L > 1/2 without W_L^T: zero.

Update exponents kappa (first, hidden, last), derived in docs/limits.md:

    BP:      -1 - c_1,               -c_h,             1 - c_L
    PC:      -1 - c_1 - gbar_L,      -c_h - gbar_L,    1 - c_L - [llg] gbar_L
    TP/DTP:  -c_1,                   1 - c_h,          1 - c_L

with gbar_L = gamma_bar_last and [llg] = 1 when the last layer's update carries
gamma_L. PC's energy ratio gamma_L / gamma_l = gamma0 M^{-delta}, delta = gbar_L -
gbar_hidden, makes C_gamma = gamma0 M^{-1-delta} sum_l C_hat_l: the engine needs
delta >= -1 and keeps the activity shifts v - h only at delta = -1.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from muptheory.errors import UnsupportedError
from muptheory.methods import MethodConfig
from muptheory.parameterization import GROUPS, Parameterization

HALF = Fraction(1, 2)
ONE = Fraction(1)


@dataclass(frozen=True)
class LimitScales:
    """What the limit keeps, for one method under one parameterization.

    Attributes:
        method: the learning rule.
        kappa: update exponents (first, hidden, last), all <= 0.
        kept: whether each group's update survives (kappa == 0).
        output_init: ``"omega"`` (b_L = 1), ``"xi"`` (b_L = 1/2) or ``"zero"``.
        pc_delta: PC's gamma_bar_last - gamma_bar_hidden (None for other rules).
        pc_shifts: PC keeps the activity shifts v - h and C_gamma (delta == -1).
        ridge_out, ridge_hidden: TP/DTP ridge constants in the limit, in units of
            F^T F (output layer) and of the batch kernel K_l (hidden layers); 0.0
            means pseudo-inverse, ``inf`` means the feedback vanishes.
    """

    method: str
    kappa: tuple[Fraction, Fraction, Fraction]
    kept: tuple[bool, bool, bool]
    output_init: str
    pc_delta: Fraction | None = None
    pc_shifts: bool = False
    ridge_out: float | None = None
    ridge_hidden: float | None = None


def limit_scales(
    config: MethodConfig, parameterization: Parameterization, *, depth: int
) -> LimitScales:
    """Check that the exact engine covers this case and say what the limit keeps.

    Raises:
        UnsupportedError: for rules, options or parameterizations outside the
            engine (GNT, trained feedback, non-equilibrium PC inference, b other
            than 1/2 in the first or hidden layers, an update that grows with width,
            BP or PC without b_L = 1).
    """
    param = parameterization.without_multipliers().to_fan_in()
    b, c = param.b, param.c
    for group in ("first", "hidden"):
        if b[group] != HALF:
            raise UnsupportedError(
                f"the exact engine needs b_{group} = 1/2 (fan-in convention) so that "
                f"features are Theta(1) at initialization; got {b[group]}"
            )
    method = config.method
    b_last = b["last"]
    if method in ("bp", "pc"):
        if config.method == "bp" and config.optimizer != "sgd":
            raise UnsupportedError(
                f"the limit engine covers BP with SGD only, not {config.optimizer!r}"
            )
        if b_last == HALF:
            raise UnsupportedError(
                f"{method} with b_last = 1/2 has a random Theta(1) output at "
                "initialization and is in the kernel regime or unstable; use "
                "muptheory.limits.kernel_regime_limit (BP) for that case"
            )
        if b_last != ONE:
            raise UnsupportedError(
                f"the exact engine needs b_last = 1 for {method} (the muP output "
                f"layer); got {b_last}"
            )
        output_init = "omega"
    elif method in ("tp", "dtp"):
        if config.feedback != "ridge":
            raise UnsupportedError(
                "the limit engine covers TP/DTP with the ridge feedback only, not "
                "trained feedback weights"
            )
        if b_last < HALF:
            raise UnsupportedError(
                f"b_last = {b_last} < 1/2 makes the output diverge at initialization"
            )
        output_init = "xi" if b_last == HALF else "zero"
    else:
        raise UnsupportedError(
            f"the limit engine covers bp, pc, tp and dtp, not {method!r}"
        )

    kappa, extra = _update_exponents(config, c)
    names = dict(zip(GROUPS, kappa, strict=True))
    active = GROUPS if depth > 2 else ("first", "last")
    for group in active:
        if names[group] > 0:
            raise UnsupportedError(
                f"{method}: the {group} layer's update grows like M^{names[group]} "
                f"under c = {c.to_json()} (unstable as width grows); raise "
                f"c_{group} by at least {names[group]}"
            )
    kept = tuple(k == 0 for k in kappa)
    return LimitScales(
        method=method, kappa=kappa, kept=kept, output_init=output_init, **extra
    )


def _update_exponents(config: MethodConfig, c) -> tuple[tuple, dict]:
    method = config.method
    if method == "bp":
        return (-1 - c["first"], -c["hidden"], 1 - c["last"]), {}
    if method == "pc":
        if config.inference != "equilibrium" or config.fpa:
            raise UnsupportedError(
                "the limit engine covers PC at the inference equilibrium without "
                "FPA (FPA holds automatically in the limit when gamma_bar_last > "
                "gamma_bar_hidden - 1)"
            )
        g_last, g_hidden = config.gamma_bar_last, config.gamma_bar_hidden
        delta = g_last - g_hidden
        if delta < -1:
            raise UnsupportedError(
                f"PC with gamma_bar_last - gamma_bar_hidden = {delta} < -1: C_gamma "
                "grows with width and the output error vanishes; the update "
                "direction there equals the gamma0 -> infinity end at delta = -1"
            )
        llg = 1 if config.last_layer_gamma else 0
        kappa = (
            -1 - c["first"] - g_last,
            -c["hidden"] - g_last,
            1 - c["last"] - llg * g_last,
        )
        return kappa, {"pc_delta": delta, "pc_shifts": delta == -1}
    # tp / dtp
    mu_bar = config.mu_bar
    extra = {
        "ridge_out": _ridge(config.mu0, -mu_bar),
        "ridge_hidden": _ridge(config.mu0, -mu_bar - 1),
    }
    return (-c["first"], 1 - c["hidden"], 1 - c["last"]), extra


def _ridge(mu0: float, exponent: Fraction) -> float:
    """The ridge constant relative to a Theta(1) kernel when mu ~ mu0 M^exponent."""
    if exponent == 0:
        return float(mu0)
    return float("inf") if exponent > 0 else 0.0


def maximal_update(
    config: MethodConfig, *, b_last: Fraction | None = None
) -> Parameterization:
    """The learning-rate exponents c that make every kappa zero (the rule's muP).

    With b = (1/2, 1/2, b_last) in the fan-in convention; b_last defaults to 1 for
    BP and PC and 1/2 for TP/DTP (THEORY section 5). This is the engine's own
    reading of the maximal-update condition; ``muptheory.symbolic.derive_mup`` is
    the project's derivation, and the two must agree.
    """
    method = config.method
    if method == "bp":
        c = (-1, 0, 1)
        default_b = ONE
    elif method == "pc":
        g = config.gamma_bar_last
        llg = 1 if config.last_layer_gamma else 0
        c = (-1 - g, -g, 1 - llg * g)
        default_b = ONE
    elif method in ("tp", "dtp"):
        c = (0, 1, 1)
        default_b = HALF
    else:
        raise UnsupportedError(f"no limit-engine muP for {method!r}")
    b = (HALF, HALF, default_b if b_last is None else b_last)
    return Parameterization(b=b, c=c, convention="fan_in", name=f"{method}-mup")
