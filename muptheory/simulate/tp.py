"""Target propagation (TP) and difference target propagation (DTP).

Targets live in pre-activation space. The output target is t_L = f - beta e with
e = f - y (beta = 1 by default). A linear feedback map Q_l sends targets from layer l
down to layer l-1:

    TP:   t_{l-1} = Q_l t_l,
    DTP:  t_{l-1} = u_{l-1} + Q_l (t_l - u_l),

and each layer descends 1/2 ||t_l - u_l||^2 with its target held fixed
(signal s_l = u_l - t_l, input h_{l-1}).

Feedback maps (``MethodConfig.feedback``):

- ``ridge``: the ridge-regression solution over the batch (THEORY.md section 4),
  Q_l = H_{l-1} (H_l^T H_l + mu I)^{-1} H_l^T with H_l = [u_l of each sample] as
  columns (H_L holds the outputs f) and mu = mu0 M^{-mu_bar}. With rows as samples
  (U_l = H_l^T, B x n_l) a batch of targets maps as T_{l-1} = T_l U_l^T K^{-1} U_{l-1},
  K = U_l U_l^T + mu I, a B x B solve; Q_l is never formed.
- ``trained``: feedback weights V_l (n_{l-1} x n_l), t_{l-1} = V_l t_l (TP), trained
  before each forward update by descending a noisy reconstruction loss (mean over the
  batch), with noise xi ~ N(0, sigma^2) on u_{l-1} and u~_l = phi(u_{l-1} + xi) W_l^T:

      TP:   1/2 ||V_l u~_l - (u_{l-1} + xi)||^2,
      DTP:  1/2 ||V_l (u~_l - u_l) - xi||^2   (the difference reconstruction loss).

  V_l is initialized with entries of variance M^{1 - 2 b_fb} / n_l and trained with
  learning rate eta_fb M^{-c_fb} (``feedback_b``, ``feedback_c``, fan-in convention;
  the top map V_L takes ``feedback_c_last`` instead of ``feedback_c``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from muptheory.simulate.network import Forward, activation_fn, forward
from muptheory.simulate.signals import LayerSignals

Array = jax.Array


def ridge_targets(
    ff: Forward, y: Array, *, mu: float, beta: float = 1.0, difference: bool
) -> tuple[Array, ...]:
    """Targets t_1..t_L sent down by the batch ridge feedback.

    Args:
        ff: the forward pass of the batch (pre-activations u_1..u_L).
        y: targets (B, C).
        mu: ridge constant.
        beta: output target step, t_L = f - beta (f - y).
        difference: DTP's difference correction instead of TP's plain map.

    Returns:
        t_1..t_L, each (B, n_l).
    """
    U = ff.pre
    targets = [U[-1] - beta * (U[-1] - y)]
    for i in reversed(range(1, len(U))):
        gram = U[i] @ U[i].T + mu * jnp.eye(U[i].shape[0], dtype=U[i].dtype)
        sent = targets[0] - U[i] if difference else targets[0]
        # coefficients (T U^T) K^{-1}; K is symmetric, so solve K C^T = U T^T
        coef = jnp.linalg.solve(gram, U[i] @ sent.T).T
        down = coef @ U[i - 1]
        targets.insert(0, U[i - 1] + down if difference else down)
    return tuple(targets)


def feedback_targets(
    ff: Forward, y: Array, Vs: Sequence[Array], *, beta: float = 1.0, difference: bool
) -> tuple[Array, ...]:
    """Targets t_1..t_L sent down by trained feedback weights V_2..V_L."""
    U = ff.pre
    targets = [U[-1] - beta * (U[-1] - y)]
    for i in reversed(range(1, len(U))):
        V = Vs[i - 1]
        if difference:
            targets.insert(0, U[i - 1] + (targets[0] - U[i]) @ V.T)
        else:
            targets.insert(0, targets[0] @ V.T)
    return tuple(targets)


def target_signals(ff: Forward, targets: Sequence[Array]) -> LayerSignals:
    """s_l = u_l - t_l with inputs h_{l-1}."""
    signals = tuple(u - t for u, t in zip(ff.pre, targets, strict=True))
    return LayerSignals(signals, ff.inputs)


def tp_signals(
    Ws: Sequence[Array],
    x: Array,
    y: Array,
    *,
    activation: str,
    difference: bool,
    mu: float | None = None,
    feedback: Sequence[Array] | None = None,
    beta: float = 1.0,
) -> LayerSignals:
    """TP/DTP signals with the ridge feedback (``mu``) or trained ``feedback``."""
    ff = forward(Ws, x, activation_fn(activation))
    if feedback is None:
        targets = ridge_targets(ff, y, mu=mu, beta=beta, difference=difference)
    else:
        targets = feedback_targets(ff, y, feedback, beta=beta, difference=difference)
    return target_signals(ff, targets)


def feedback_update(
    Ws: Sequence[Array],
    Vs: Sequence[Array],
    x: Array,
    key: Array,
    *,
    activation: str,
    difference: bool,
    noise: float,
    lr: float | Sequence[float],
) -> tuple[Array, ...]:
    """One descent step of every V_l on its noisy reconstruction loss.

    ``lr`` is one learning rate for every map or one per map V_2..V_L.

    Returns:
        The updated V_2..V_L.
    """
    phi = activation_fn(activation)
    ff = forward(Ws, x, phi)
    keys = jax.random.split(key, len(Vs))
    rates = tuple(lr) if isinstance(lr, tuple | list) else (lr,) * len(Vs)
    new = []
    for i, V in enumerate(Vs, start=1):
        below = ff.pre[i - 1]
        xi = noise * jax.random.normal(keys[i - 1], below.shape, below.dtype)
        lifted = phi(below + xi) @ Ws[i].T
        if difference:
            source, target = lifted - ff.pre[i], xi
        else:
            source, target = lifted, below + xi
        residual = source @ V.T - target
        new.append(V - rates[i - 1] * residual.T @ source / source.shape[0])
    return tuple(new)
