"""A small numpy finite-width deep linear network with the limit engine's rules.

An independent cross-check of the JAX simulator, not the comparison the limit is
judged by (that is ``muptheory.limits.simulated``, the simulator researchers train
with). It implements the same learning rules (BP, PC at the exact inference
equilibrium, TP/DTP with ridge feedback), conventions and parameterization as
``limit_dynamics``, at one width M, in a few lines of numpy with PC's equilibrium in
closed form; tests start it from the simulator's sampled weights (``weights``) and
require the two to agree step by step to 1e-10. Without ``weights`` it samples
W_1 (M x d), W_l (M x M) and W_L (C x M) with ``Parameterization.init_std`` and uses
learning rates lr * lr_mult * ``Parameterization.lr_scale``. PC's equilibrium is solved
in closed form, (I + C_gamma) eps_L = -e with
C_gamma = sum_{l<L} (gamma_L / gamma_l) W_{L:l+1} W_{L:l+1}^T, then
eps_l = (gamma_L / gamma_l) W_{L:l+1}^T eps_L and v_l = W_l v_{l-1} + eps_l.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from muptheory.errors import DivergedError, InvalidInputError, UnsupportedError
from muptheory.limits.simulated import FiniteTrajectory
from muptheory.limits.tasks import Task
from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization


def finite_dynamics(
    config: MethodConfig,
    parameterization: Parameterization,
    task: Task,
    *,
    depth: int,
    width: int,
    steps: int,
    lr: float,
    sigma: float = 1.0,
    beta: float = 1.0,
    lr_mult: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    basis: np.ndarray | None = None,
    weights: Sequence[np.ndarray] | None = None,
) -> FiniteTrajectory:
    """Train one network of width ``width``; arguments as ``limit_dynamics``.

    ``basis`` (d x r, orthonormal) is only used to report ``output_map0``.
    ``weights`` (effective W_1..W_L, e.g. ``FiniteTrajectory.weights0`` of a
    simulated run) replaces the numpy sample drawn from ``seed``.
    """
    task = Task.of(task)
    if not isinstance(width, int) or width < 1:
        raise InvalidInputError(f"width must be a positive integer, got {width!r}")
    if config.method not in ("bp", "pc", "tp", "dtp"):
        raise UnsupportedError(
            f"finite_dynamics covers bp, pc, tp, dtp, not {config.method}"
        )
    param = parameterization.without_multipliers()
    rng = np.random.default_rng(seed)
    d, C, M, L = task.input_dim, task.n_outputs, width, depth
    dims = [d] + [M] * (L - 1) + [C]
    groups = ["first"] + ["hidden"] * (L - 2) + ["last"]
    if weights is None:
        Ws = [
            rng.normal(
                0.0,
                param.init_std(g, width=M, fan_in=dims[i], sigma=sigma),
                (dims[i + 1], dims[i]),
            )
            for i, g in enumerate(groups)
        ]
    else:
        Ws = [np.array(W, dtype=float) for W in weights]
        shapes = [(dims[i + 1], dims[i]) for i in range(L)]
        if [W.shape for W in Ws] != shapes:
            raise InvalidInputError(
                f"weights must have shapes {shapes}, got {[W.shape for W in Ws]}"
            )
    weights0 = [W.copy() for W in Ws]
    mult = {"first": lr_mult[0], "hidden": lr_mult[1], "last": lr_mult[2]}
    lrs = [lr * mult[g] * param.lr_scale(g, width=M) for g in groups]
    basis = np.eye(d) if basis is None else basis
    x, y = task.x_train.T, task.y_train.T
    P = x.shape[1]
    rule = {"bp": _bp, "pc": _pc, "tp": _tp, "dtp": _tp}[config.method]
    records = []
    output_map0 = _product(Ws) @ basis
    for t in range(steps + 1):
        hs = _forward(Ws, x)
        e = hs[-1] - y
        f_test = _product(Ws) @ task.x_test.T
        loss = 0.5 * float(np.sum(e**2)) / P
        n_test = max(task.x_test.shape[0], 1)
        test_loss = 0.5 * float(np.sum((f_test - task.y_test.T) ** 2)) / n_test
        if not np.isfinite(loss) or loss > 1e12:
            raise DivergedError(f"width {M} diverged at step {t}", width=M, step=t)
        record = {
            "loss": loss,
            "test_loss": test_loss,
            "f_train": hs[-1].T.copy(),
            "f_test": f_test.T,
            "kernels": np.stack([h.T @ h / M for h in hs[1:-1]]),
        }
        grads = rule(Ws, hs, e, y, config, M=M, lrs=lrs, beta=beta, record=record)
        records.append(record)
        if t < steps:
            for W, G in zip(Ws, grads, strict=True):
                W += G
    stack = lambda k: np.stack([r[k] for r in records])  # noqa: E731
    return FiniteTrajectory(
        width=M,
        loss=stack("loss"),
        test_loss=stack("test_loss"),
        f_train=stack("f_train"),
        f_test=stack("f_test"),
        kernels=stack("kernels"),
        output_map0=output_map0,
        weights0=weights0,
        **{
            name: stack(name) if config.method == "pc" else None
            for name in (
                "pc_cos_gd",
                "c_gamma_scaled",
                "pc_cos_gnt",
                "pc_update_norms",
                "pc_output_error",
            )
        },
    )


def _forward(Ws, x):
    hs = [x]
    for W in Ws:
        hs.append(W @ hs[-1])
    return hs


def _product(Ws):
    out = Ws[0]
    for W in Ws[1:]:
        out = W @ out
    return out


def _backward_maps(Ws):
    """B_l = W_{L:l+1}^T (M x C) for l = 0..L-1 (index l)."""
    L = len(Ws)
    maps = [None] * (L + 1)
    maps[L] = np.eye(Ws[-1].shape[0])
    for k in range(L, 0, -1):
        maps[k - 1] = Ws[k - 1].T @ maps[k]
    return maps


def _bp(Ws, hs, e, y, config, *, M, lrs, beta, record):
    P = e.shape[1]
    back = _backward_maps(Ws)
    return [-lrs[k] / P * (back[k + 1] @ e) @ hs[k].T for k in range(len(Ws))]


def _pc(Ws, hs, e, y, config, *, M, lrs, beta, record):
    L, P = len(Ws), e.shape[1]
    g_last = float(config.gamma0) * M ** float(-config.gamma_bar_last)
    g_hidden = M ** float(-config.gamma_bar_hidden)
    ratio = g_last / g_hidden
    back = _backward_maps(Ws)
    c_gamma = ratio * sum(back[k].T @ back[k] for k in range(1, L))
    delta = config.gamma_bar_last - config.gamma_bar_hidden
    record["c_gamma_scaled"] = c_gamma * M ** float(1 + delta)
    eps_out = -np.linalg.solve(np.eye(e.shape[0]) + c_gamma, e)
    eps = [None] + [ratio * back[k] @ eps_out for k in range(1, L)] + [eps_out]
    vs = [hs[0]]
    for k in range(1, L):
        vs.append(Ws[k - 1] @ vs[-1] + eps[k])
    grads = []
    for k in range(1, L + 1):
        gamma = g_hidden if k < L else (g_last if config.last_layer_gamma else 1.0)
        grads.append(lrs[k - 1] * gamma / P * eps[k] @ vs[k - 1].T)
    gd = [-(back[k] @ e) @ hs[k - 1].T for k in range(1, L + 1)]
    pc = [eps[k] @ vs[k - 1].T for k in range(1, L + 1)]
    # GNT with lambda = 0: hidden signal J^T (J J^T)^{-1} e, J = W_{L:l+1}; top e
    gnt = [
        -(back[k] @ np.linalg.solve(back[k].T @ back[k], e)) @ hs[k - 1].T
        for k in range(1, L)
    ] + [-e @ hs[L - 1].T]
    record["pc_cos_gd"] = np.array([_cos(a, b) for a, b in zip(pc, gd, strict=True)])
    record["pc_cos_gnt"] = np.array([_cos(a, b) for a, b in zip(pc, gnt, strict=True)])
    units = [M**-0.5] + [1.0] * (L - 2) + [M**0.5]
    record["pc_update_norms"] = np.array(
        [u * np.linalg.norm(g) for u, g in zip(units, grads, strict=True)]
    )
    record["pc_output_error"] = -eps_out.T
    return grads


def _tp(Ws, hs, e, y, config, *, M, lrs, beta, record):
    L, P = len(Ws), e.shape[1]
    mu = float(config.mu0) * M ** float(-config.mu_bar)
    difference = config.method == "dtp"
    targets = [None] * (L + 1)
    targets[L] = hs[L] - beta * e
    for k in range(L, 1, -1):
        H = hs[k]
        signal = targets[k] - H if difference else targets[k]
        coef = np.linalg.solve(H.T @ H + mu * np.eye(P), H.T @ signal)
        targets[k - 1] = hs[k - 1] @ coef + (hs[k - 1] if difference else 0.0)
    return [
        lrs[k - 1] / P * (targets[k] - hs[k]) @ hs[k - 1].T for k in range(1, L + 1)
    ]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))
