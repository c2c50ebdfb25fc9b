"""PC's limiting update between the first-order and the Gauss-Newton direction.

In a deep linear network at PC's inference equilibrium, the output error is
eps_L = -(I + C_gamma)^{-1} e with C_gamma = sum_{l<L} (gamma_L / gamma_l) W_{L:l+1}
W_{L:l+1}^T. With gamma_L = gamma0 M (gamma_bar_L = -1), M C_gamma stays finite as
M -> infinity and gamma0 moves the limit from the first-order (GD) end, gamma0 -> 0,
to the Gauss-Newton (GN) end, gamma0 -> infinity; with gamma_bar_L = 0, C_gamma -> 0
and PC is the first-order gradient for every gamma0. At initialization under muP
every direction coincides (M C_gamma is a multiple of the identity), so the curves
are taken at a state trained for 20 limit BP steps on a 10-output linear teacher
(the defaults of ``muptheory interpolation``).

The GN end here is PC's own gamma0 -> infinity limit, which preconditions every layer
with the same output-space matrix S = sum_l M W_{L:l+1} W_{L:l+1}^T. The
Gauss-Newton-target (GNT) update, lambda -> 0, uses each layer's own Jacobian; the
two coincide for one hidden layer and differ at this depth, so cos(PC, GNT) is drawn
as well but not held to the end-point checks.

Writes ``interpolation.png`` and ``interpolation.json``.

    python derivations/interpolation.py --out regenerated
"""

from __future__ import annotations

import sys

import numpy as np

from muptheory.derivations.common import (
    Context,
    Finding,
    new_figure,
    save_figure,
    standalone,
    write_json,
)

DEPTH = 3
TRAIN_STEPS = 20
LR = 0.05
SIGMA = 0.5
GAMMA0 = tuple(float(g) for g in np.logspace(-3, 3, 25))


def run(ctx: Context) -> list[Finding]:
    from muptheory.limits.pc import pc_interpolation
    from muptheory.limits.tasks import linear_teacher_task

    task = linear_teacher_task(n_outputs=10)
    curve = pc_interpolation(
        task, depth=DEPTH, gamma0=GAMMA0, train_steps=TRAIN_STEPS, lr=LR, sigma=SIGMA
    )
    first_order = _gamma_bar_zero_cosines(task, curve.state)
    cos_gd, cos_gn = curve.cos_gd[:, 0], curve.cos_gn[:, 0]
    cos_gnt = curve.cos_gnt[:, 0]

    # Theory: cos(PC, GD) falls and cos(PC, GN) rises with gamma0, from the GD end
    # (cos_gd -> 1) to the GN end (cos_gn -> 1); gamma_bar_L = 0 is GD exactly.
    checks = {
        "gamma_bar_L = 0 is first order": bool(np.all(first_order > 1 - 1e-12)),
        "cos(PC,GD) -> 1 as gamma0 -> 0": bool(cos_gd[0] > 0.999),
        "cos(PC,GN) -> 1 as gamma0 -> inf": bool(cos_gn[-1] > 0.999),
        "cos(PC,GD) non-increasing": bool(np.all(np.diff(cos_gd) <= 1e-12)),
        "cos(PC,GN) non-decreasing": bool(np.all(np.diff(cos_gn) >= -1e-12)),
        "the ends differ": bool(cos_gd[-1] < 0.99),
    }
    numbers = {
        **curve.to_json(),
        "cos_pc_gd_gamma_bar_zero": first_order.tolist(),
        "checks": checks,
    }
    write_json(ctx.path("interpolation.json"), numbers)
    _plot(ctx, curve, first_order)

    ok = all(checks.values())
    summary = (
        "In the infinite-width limit of a depth-3 linear network, PC with "
        "gamma_L = gamma0 M moves from the first-order gradient "
        f"(cos(PC,GD) = {cos_gd[0]:.4f} at gamma0 = {GAMMA0[0]:g}) to the "
        f"Gauss-Newton direction (cos(PC,GN) = {cos_gn[-1]:.4f} at gamma0 = "
        f"{GAMMA0[-1]:g}), while gamma_bar_L = 0 stays first order "
        f"(cos = {first_order.min():.12f}); its cosine with the per-layer "
        f"Gauss-Newton-target update goes from {cos_gnt[0]:.3f} to {cos_gnt[-1]:.3f}. "
        + (
            "Both curves are monotone in gamma0 and the ends are distinct "
            f"(cos(PC,GD) = {cos_gd[-1]:.3f} at the GN end), as theory says."
            if ok
            else f"Checks that fail: {', '.join(k for k, v in checks.items() if not v)}."
        )
    )
    return [
        Finding(
            piece="interpolation",
            title="PC interpolates between first-order and Gauss-Newton",
            summary=summary,
            agrees=ok,
            figure="interpolation.png",
            files=["interpolation.json"],
            numbers={"checks": checks},
        )
    ]


def _gamma_bar_zero_cosines(task, state) -> np.ndarray:
    """cos(PC, GD) of the first layer with gamma_bar_L = 0, at the same state."""
    from muptheory.limits.dynamics import input_basis
    from muptheory.limits.pc import pc_equilibrium
    from muptheory.methods import MethodConfig

    config = MethodConfig.create("pc", gamma_bar_last=0)
    z = task.x_train @ input_basis(task)
    return np.array(
        [
            pc_equilibrium(state, config, z, task.y_train, gamma0=g).cos_gd[0]
            for g in (GAMMA0[0], 1.0, GAMMA0[-1])
        ]
    )


def _plot(ctx: Context, curve, first_order: np.ndarray) -> None:
    fig, (left, right) = new_figure(2)
    left.semilogx(curve.gamma0, curve.cos_gd[:, 0], "o-", ms=3, label="cos(PC, GD)")
    left.semilogx(curve.gamma0, curve.cos_gn[:, 0], "s-", ms=3, label="cos(PC, GN end)")
    left.semilogx(curve.gamma0, curve.cos_gnt[:, 0], "^-", ms=3, label="cos(PC, GNT)")
    left.axhline(
        first_order.min(), color="grey", ls="--", label="cos(PC, GD), gamma_bar_L = 0"
    )
    left.set_xlabel("gamma0   (gamma_L = gamma0 M)")
    left.set_ylabel("limiting cosine, first layer")
    left.set_title(f"PC, gamma_bar_L = -1, depth {DEPTH}")
    left.legend(fontsize="small")
    for layer in range(curve.cos_gd.shape[1]):
        right.semilogx(curve.gamma0, curve.cos_gd[:, layer], label=f"layer {layer + 1}")
    right.set_xlabel("gamma0")
    right.set_ylabel("cos(PC, GD)")
    right.set_title("per layer")
    right.legend(fontsize="small")
    save_figure(fig, ctx.path("interpolation.png"))


if __name__ == "__main__":
    sys.exit(standalone("interpolation"))
