"""Exact infinite-width training dynamics of deep linear networks (BP, PC, TP, DTP).

``limit_dynamics`` runs T full-batch steps of a learning rule in the M -> infinity
limit of an L-layer linear network f(x) = W_L ... W_1 x, without sampling a width:
hidden vectors are coefficient vectors over Gaussian directions
(``muptheory.limits.program``) and weights are the initial Gaussian operators plus
finitely many outer products (``muptheory.limits.state``). Conventions shared with
the simulator: loss (1/2P) sum_p ||f_p - y_p||^2, output error e = f - y, per-group
learning rates eta_l = lr * lr_mult_l * M^{-c_l} and initial scales from the
parameterization (fan-in convention, a = 0). Per step, with H_l = [h_l^p] the batch:

    BP:  g_hat_l = B_l e,  B_l = M W_{L:l+1}^T,  Delta W_l = -(eta_l / P) sum g h^T
    PC:  eps_L = -(I + C_gamma)^{-1} e,  C_gamma = gamma0 [delta = -1] sum_l B_l^T B_l,
         eps_hat_l = B_l eps_L,  v_l = h_l + gamma0 [delta = -1] T_l eps_L,
         T_1 = B_1, T_l = W_l T_{l-1} + B_l;  Delta W_l ~ eps_hat_l v_{l-1}^T
    TP:  t_L = f - beta e,  t_{l-1} = H_{l-1} (K_l + mu I)^+ <H_l, t_l>
    DTP: t_{l-1} = h_{l-1} + H_{l-1} (K_l + mu I)^+ <H_l, t_l - h_l>,
         Delta W_l = (eta_l / P) sum (t_l - h_l) h_{l-1}^T

(the full derivation, with the width factors, is in docs/limits.md).

Example:
    >>> from muptheory.methods import MethodConfig
    >>> from muptheory.parameterization import preset
    >>> from muptheory.limits import linear_teacher_task, limit_dynamics
    >>> run = limit_dynamics(MethodConfig.create("bp"), preset("mup"),
    ...                      linear_teacher_task(), depth=3, steps=5, lr=0.1)
    >>> run.loss.shape
    (6,)
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from muptheory.errors import DivergedError, InvalidInputError, UnsupportedError
from muptheory.limits.program import add
from muptheory.limits.scaling import LimitScales, limit_scales
from muptheory.limits.state import LimitState
from muptheory.limits.tasks import Task
from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization

logger = logging.getLogger(__name__)

# A loss above this (or a non-finite value) counts as divergence.
DIVERGENCE_LOSS = 1e12


@dataclass
class LimitTrajectory:
    """What the limit computes over training, t = 0..T (index t: before step t+1).

    Attributes:
        method: the learning rule.
        loss: training loss (1/2P) sum ||f - y||^2, shape (T+1,).
        test_loss: the same on the test set, shape (T+1,).
        f_train: outputs on the training inputs, (T+1, P, C).
        f_test: outputs on the test inputs, (T+1, P_test, C).
        kernels: feature kernels K_l(x, x') = lim <h_l(x), h_l(x')> on the
            training inputs, (T+1, L-1, P, P), layers 1..L-1.
        pc_cos_gd: PC only: per-layer cosine between PC's update and BP's
            gradient at each state, (T+1, L); None for other rules.
        pc_cos_gnt: PC only: per-layer cosine between PC's update and the
            Gauss-Newton-target update with lambda -> 0, (T+1, L).
        pc_c_gamma: PC only: lim M^{1+delta} C_gamma at each state, (T+1, C, C).
        pc_output_error: PC only: the output error at the equilibrium,
            (I + C_gamma)^{-1} e per training point, (T+1, P, C).
        pc_update_norms: PC only: per-layer Frobenius norm of the weight update
            PC makes from each state, in Theta(1) units: |Delta W_1|_F / sqrt(M),
            |Delta W_l|_F for hidden l, sqrt(M) |Delta W_L|_F; (T+1, L).
        basis_sizes: directions per hidden layer at the end (cost indicator).
        state: the final ``LimitState`` (for ``pc_equilibrium``).
    """

    method: str
    loss: np.ndarray
    test_loss: np.ndarray
    f_train: np.ndarray
    f_test: np.ndarray
    kernels: np.ndarray
    pc_cos_gd: np.ndarray | None = None
    pc_c_gamma: np.ndarray | None = None
    pc_cos_gnt: np.ndarray | None = None
    pc_output_error: np.ndarray | None = None
    pc_update_norms: np.ndarray | None = None
    basis_sizes: list[int] = field(default_factory=list)
    state: LimitState | None = None

    def to_json(self) -> dict:
        out = {
            "method": self.method,
            "loss": self.loss.tolist(),
            "test_loss": self.test_loss.tolist(),
            "f_train_final": self.f_train[-1].tolist(),
            "f_test_final": self.f_test[-1].tolist(),
            "kernel_change": [
                float(np.linalg.norm(self.kernels[-1, i] - self.kernels[0, i]))
                for i in range(self.kernels.shape[1])
            ],
            "basis_sizes": self.basis_sizes,
        }
        if self.pc_cos_gd is not None:
            out["pc_cos_gd_by_layer"] = self.pc_cos_gd.tolist()
            out["pc_cos_gnt_by_layer"] = self.pc_cos_gnt.tolist()
            out["pc_update_norms_by_layer"] = self.pc_update_norms.tolist()
        return out


def input_basis(task: Task) -> np.ndarray:
    """An orthonormal basis U (d x r) of the span of all train and test inputs."""
    x = np.vstack([task.x_train, task.x_test])
    d = x.shape[1]
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    if s.size == 0 or s[0] == 0.0:
        raise InvalidInputError("all inputs are zero")
    r = int(np.sum(s > 1e-10 * s[0]))
    if r == d:
        return np.eye(d)
    return vt[:r].T


def limit_dynamics(
    config: MethodConfig,
    parameterization: Parameterization,
    task: Task,
    *,
    depth: int,
    steps: int,
    lr: float,
    sigma: float = 1.0,
    beta: float = 1.0,
    lr_mult: Sequence[float] = (1.0, 1.0, 1.0),
    activation: str = "linear",
    seed: int = 0,
    output_map0: np.ndarray | None = None,
) -> LimitTrajectory:
    """Train a deep linear network in the infinite-width limit.

    Args:
        config: the learning rule (bp, pc, tp, dtp) and its options.
        parameterization: the abc-parameterization (any convention; multipliers
            are removed by the abc symmetry).
        task: training and test data (``Task`` or a ``muptheory.data.Dataset``).
        depth: number of weight layers L >= 2.
        steps: number of full-batch training steps T.
        lr: base learning rate eta; layer l uses eta * lr_mult_l * M^{-c_l}.
        sigma: initialization scale of every layer.
        beta: TP/DTP output-target step, t_L = f - beta e.
        lr_mult: per-group prefactors (first, hidden, last) of the learning rate.
        activation: must be ``"linear"``; the exact engine is for linear networks.
        seed: a non-negative integer; draws the Gaussian readout of a b_L = 1/2 output layer (TP/DTP).
        output_map0: for b_L = 1/2, the C x r output map at initialization in the
            input basis ``input_basis(task)`` (couples the limit to one network).

    Returns:
        A ``LimitTrajectory``.

    Raises:
        UnsupportedError: nonlinear activations and cases outside the engine.
        InvalidInputError: malformed arguments (an unknown activation, a sigma
            whose kernels leave float64: ``check_sigma``) or singular feedback
            systems.
        DivergedError: the loss overflowed or became non-finite.
    """
    check_activation(activation)
    task = Task.of(task)
    _check_run(depth=depth, steps=steps, lr=lr, sigma=sigma, beta=beta, lr_mult=lr_mult)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    scales = limit_scales(config, parameterization, depth=depth)
    basis = input_basis(task)
    state = LimitState(
        depth=depth,
        input_dim=task.input_dim,
        n_outputs=task.n_outputs,
        basis=basis,
        scales=scales,
        sigma=sigma,
        rng=np.random.default_rng(seed),
        output_map0=output_map0,
    )
    rule = _RULES[config.method]
    runner = _Runner(state, config, scales, task, lr=lr, beta=beta, lr_mult=lr_mult)
    records = []
    # overflow shows up as a non-finite loss, reported as DivergedError below
    with small_blas(), np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            records.append(runner.snapshot(t))
            if t < steps:
                rule(runner)
    return _collect(config.method, records, state)


@contextlib.contextmanager
def small_blas():
    """Run BLAS single-threaded: the engine's matrices are a few hundred wide, where
    thread start-up costs more than it saves (40x on a loaded two-core machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def check_activation(activation: str) -> None:
    """Refuse every activation but ``linear``: an unknown name as bad input, a known
    nonlinear one (``muptheory.simulate.ACTIVATIONS``) as outside the engine."""
    if activation == "linear":
        return
    from muptheory.simulate.network import ACTIVATIONS  # imports JAX: error path only

    if activation not in ACTIVATIONS:
        raise InvalidInputError(
            f"unknown activation {activation!r}; the limit engine takes linear "
            f"(the simulator knows {', '.join(ACTIVATIONS)})"
        )
    raise UnsupportedError(
        f"activation {activation!r} is not supported by the exact limit engine: "
        "its Gaussian-direction algebra is exact for linear networks only"
    )


# The engine multiplies pairs of kernels, which grow like sigma^(2L); keeping
# sigma^(2L) within 10^(+-SIGMA_DECADES) keeps their products inside float64.
SIGMA_DECADES = 150


def check_sigma(sigma: float, depth: int) -> None:
    """Refuse an init scale whose kernels (about sigma^(2L)) overflow float64 or
    whose updates underflow to zero.

    Raises:
        InvalidInputError: 2 L |log10 sigma| > SIGMA_DECADES.
    """
    decades = 2 * depth * math.log10(sigma)
    if decades > SIGMA_DECADES:
        raise InvalidInputError(
            f"sigma {sigma:g} overflows the limit's kernels at depth {depth}: they "
            f"grow like sigma^(2L) = 1e{decades:.0f}, and the engine needs "
            f"sigma^(2L) <= 1e{SIGMA_DECADES}"
        )
    if decades < -SIGMA_DECADES:
        raise InvalidInputError(
            f"sigma {sigma:g} is too small at depth {depth}: the kernels and the "
            f"layer updates shrink like sigma^(2L) = 1e{decades:.0f} and vanish in "
            f"float64; the engine needs sigma^(2L) >= 1e-{SIGMA_DECADES}"
        )


def _check_run(*, depth, steps, lr, sigma, beta, lr_mult) -> None:
    if not isinstance(depth, int) or depth < 2:
        raise InvalidInputError(f"depth must be an integer >= 2, got {depth!r}")
    if not isinstance(steps, int) or steps < 0:
        raise InvalidInputError(f"steps must be a non-negative integer, got {steps!r}")
    for name, value in (("lr", lr), ("sigma", sigma), ("beta", beta)):
        if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
            raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    check_sigma(sigma, depth)
    if len(lr_mult) != 3 or not all(np.isfinite(m) and m >= 0 for m in lr_mult):
        raise InvalidInputError("lr_mult needs three non-negative numbers")


class _Runner:
    """One training run: the state, the data in the input basis, the step sizes."""

    def __init__(self, state, config, scales: LimitScales, task, *, lr, beta, lr_mult):
        self.state = state
        self.config = config
        self.scales = scales
        self.beta = float(beta)
        basis = state.basis
        self.z_train = task.x_train @ basis  # (P, r)
        self.z_test = task.x_test @ basis
        self.y_train = task.y_train
        self.y_test = task.y_test
        self.P = self.z_train.shape[0]
        self.lr = [float(lr) * float(m) for m in lr_mult]
        self.maps = None
        self.output = None

    def lr_of(self, layer: int) -> float:
        """eta * lr_mult for the layer's group, times 0 if the limit drops it."""
        group = 0 if layer == 1 else (2 if layer == self.state.depth else 1)
        return self.lr[group] if self.scales.kept[group] else 0.0

    def forward(self):
        self.maps, self.output = self.state.forward_maps()
        z = self.z_train.T  # (r, P)
        f = self.output @ z  # (C, P)
        e = f - self.y_train.T
        return z, f, e

    def snapshot(self, t: int) -> dict:
        z, f, e = self.forward()
        f_test = (self.output @ self.z_test.T).T
        n_test = max(self.y_test.shape[0], 1)
        with np.errstate(over="ignore", invalid="ignore"):  # reported just below
            loss = 0.5 * float(np.sum(e**2)) / self.P
            test_loss = 0.5 * float(np.sum((f_test - self.y_test) ** 2)) / n_test
        if not (
            np.isfinite(loss) and loss < DIVERGENCE_LOSS and np.isfinite(test_loss)
        ):
            if t == 0:  # no step taken: the init scale, not the learning rate
                raise DivergedError(
                    f"the limit's loss at initialization is {loss:.3g}, beyond "
                    f"{DIVERGENCE_LOSS:.0e}; lower sigma",
                    step=0,
                )
            raise DivergedError(
                f"the limit diverged at step {t} (loss {loss:.3g}); lower the "
                "learning rate",
                step=t,
            )
        state = self.state
        kernels = np.stack(
            [
                z.T @ state.inner(layer, self.maps[layer], self.maps[layer]) @ z
                for layer in range(1, state.depth)
            ]
        )
        record = {
            "loss": loss,
            "test_loss": test_loss,
            "f_train": f.T.copy(),
            "f_test": f_test,
            "kernels": kernels,
        }
        if self.config.method == "pc":
            from muptheory.limits.pc import pc_equilibrium

            eq = pc_equilibrium(
                state, self.config, self.z_train, self.y_train, with_gnt=True
            )
            record["pc_cos_gd"] = eq.cos_gd
            record["pc_cos_gnt"] = eq.cos_gnt
            record["pc_c_gamma"] = eq.c_gamma_scaled
            record["pc_output_error"] = eq.output_error.T.copy()
            record["pc_update_norms"] = np.array(
                [
                    _update_norm(state, layer, left, right)
                    for layer, left, right in _pc_updates(self, eq)
                ]
            )
        return record


def _update_norm(state: LimitState, layer: int, left, right) -> float:
    """|sum_k left_k right_k^T| in limit units: sum_kk' <l_k, l_k'> <r_k, r_k'>."""
    inner = state.inner(layer, left, left) * state.inner(layer - 1, right, right)
    return float(np.sqrt(max(np.sum(inner), 0.0)))


def _bp_step(run: _Runner) -> None:
    z, f, e = run.forward()
    state, L, P = run.state, run.state.depth, run.P
    back = state.backward_maps()
    right_x = z @ e.T  # (r, C): sum_p z_p e_p^T
    updates = []
    for layer in range(1, L + 1):
        step = -run.lr_of(layer) / P
        if step == 0.0:
            continue
        left = back[layer] * step
        updates.append((layer, left, run.maps[layer - 1] @ right_x))
    for layer, left, right in updates:
        state.add_update(layer, left, right)


def _pc_step(run: _Runner) -> None:
    from muptheory.limits.pc import pc_equilibrium

    run.forward()
    eq = pc_equilibrium(run.state, run.config, run.z_train, run.y_train)
    for layer, left, right in _pc_updates(run, eq):
        if np.any(left):  # a dropped layer (zero step) adds nothing
            run.state.add_update(layer, left, right)


def _pc_updates(run: _Runner, eq) -> list[tuple]:
    """PC's update of every layer as (layer, left, right), Delta W += left right^T;
    a layer whose update the limit drops gets zero factors."""
    L, P = run.state.depth, run.P
    gamma0 = run.config.gamma0
    updates = []
    for layer in range(1, L + 1):
        scale = gamma0 if (layer < L or run.config.last_layer_gamma) else 1.0
        step = run.lr_of(layer) * scale / P
        right = eq.activities[layer - 1] @ eq.eps_out.T  # sum_p v_{l-1}^p eps_L^p^T
        updates.append((layer, eq.back[layer] * step, right))
    return updates


def _tp_step(run: _Runner) -> None:
    z, f, e = run.forward()
    state, L, P = run.state, run.state.depth, run.P
    difference = run.config.method == "dtp"
    scales = run.scales
    hidden = [run.maps[layer] @ z for layer in range(L)]  # H_l, (n_l, P); H_0 = Z
    target = f - run.beta * e
    targets = [None] * (L + 1)
    targets[L] = target
    for layer in range(L, 1, -1):
        current = f if layer == L else hidden[layer]
        signal = target - current if difference else target
        gram = (
            current.T @ current if layer == L else state.inner(layer, current, current)
        )
        rhs = current.T @ signal if layer == L else state.inner(layer, current, signal)
        ridge = scales.ridge_out if layer == L else scales.ridge_hidden
        coef = _ridge_solve(gram, ridge, rhs, layer=layer)
        below = hidden[layer - 1]
        target = add(below @ coef, below) if difference else below @ coef
        targets[layer - 1] = target
    updates = []
    for layer in range(1, L + 1):
        step = run.lr_of(layer) / P
        if step == 0.0:
            continue
        current = f if layer == L else hidden[layer]
        left = add(targets[layer], -current) @ z.T * step
        updates.append((layer, left, run.maps[layer - 1]))
    for layer, left, right in updates:
        state.add_update(layer, left, right)


def _ridge_solve(gram: np.ndarray, ridge: float, rhs: np.ndarray, *, layer: int):
    """(gram + ridge I)^{-1} rhs, with ridge = 0 read as the ridge -> 0 limit.

    The ridge -> 0 limit of (G + mu I)^{-1} G c is the projection of c on G's range;
    it exists because rhs = H^T s always lies in range(G = H^T H). A right-hand side
    with a component outside the range means the feedback system is singular.
    """
    if ridge == float("inf"):
        return np.zeros_like(rhs)
    if ridge > 0.0:
        system = gram + ridge * np.eye(gram.shape[0])
        try:
            out = np.linalg.solve(system, rhs)
        except np.linalg.LinAlgError:
            out = None
        if out is None or not np.all(np.isfinite(out)):
            raise InvalidInputError(
                f"the ridge feedback into layer {layer - 1} is numerically singular "
                f"(ridge {ridge:.3g} against a batch kernel of rank "
                f"{np.linalg.matrix_rank(gram)}); use a larger mu0"
            )
        return out
    values, vectors = np.linalg.eigh(gram)
    top = max(float(values[-1]), 0.0)
    keep = values > 1e-10 * top if top > 0 else np.zeros_like(values, dtype=bool)
    proj = vectors.T @ rhs
    lost = np.linalg.norm(proj[~keep]) if np.any(~keep) else 0.0
    if not np.any(keep) or lost > 1e-8 * max(np.linalg.norm(rhs), 1e-300):
        raise InvalidInputError(
            f"the ridge feedback into layer {layer - 1} is singular in the limit (the "
            f"batch kernel of layer {layer} has rank {int(np.sum(keep))}); use "
            "mu_bar = 0 at the output, mu_bar = -1 for hidden layers, or fewer "
            "training points than input dimensions"
        )
    return vectors[:, keep] @ (proj[keep] / values[keep, None])


_RULES = {"bp": _bp_step, "pc": _pc_step, "tp": _tp_step, "dtp": _tp_step}


def _collect(method: str, records: list[dict], state: LimitState) -> LimitTrajectory:
    def stack(key):
        return np.stack([np.asarray(r[key]) for r in records])

    out = LimitTrajectory(
        method=method,
        loss=stack("loss"),
        test_loss=stack("test_loss"),
        f_train=stack("f_train"),
        f_test=stack("f_test"),
        kernels=stack("kernels"),
        basis_sizes=state.basis_sizes(),
        state=state,
    )
    if method == "pc":
        out.pc_cos_gd = stack("pc_cos_gd")
        out.pc_cos_gnt = stack("pc_cos_gnt")
        out.pc_c_gamma = stack("pc_c_gamma")
        out.pc_output_error = stack("pc_output_error")
        out.pc_update_norms = stack("pc_update_norms")
    for name in (
        "f_train",
        "f_test",
        "kernels",
        "pc_cos_gd",
        "pc_cos_gnt",
        "pc_c_gamma",
        "pc_output_error",
        "pc_update_norms",
    ):
        value = getattr(out, name)
        if value is not None and not np.all(np.isfinite(value)):
            bad = ~np.isfinite(value).reshape(len(value), -1).all(axis=1)
            step = int(np.argmax(bad))
            raise DivergedError(
                f"the limit's {name} is not finite (first at step {step}); lower "
                "the learning rate",
                step=step,
            )
    return out
