"""Backpropagation with SGD or Adam on the batch loss.

Loss: L(w) = (1/B) sum_n 1/2 ||f(x_n) - y_n||^2, with W_l = m_l w_l. Its gradient in
w_l is m_l G_l, G_l = (1/B) sum_n delta_l a_{l-1}^T and delta_l = dloss/du_l, the
BP signal of ``signals.py``.

- SGD: w_l <- w_l - eta_l m_l G_l.
- Adam (Kingma & Ba 2015) on g_l = m_l G_l, per-layer learning rate eta_l,
  bias-corrected moments with (beta1, beta2, eps) = (0.9, 0.999, 1e-8) by default:
  w_l <- w_l - eta_l mhat_l / (sqrt(vhat_l) + eps).

K-FAC and Shampoo precondition the same gradient; they are in ``second_order.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from muptheory.simulate.network import (
    activation_fn,
    effective_weights,
    forward,
)

Array = jax.Array


def batch_loss(f: Array, y: Array) -> Array:
    """(1/B) sum_n 1/2 ||f_n - y_n||^2."""
    return 0.5 * jnp.sum(jnp.square(f - y)) / f.shape[0]


def bp_gradients(
    weights: Sequence[Array],
    multipliers: Sequence[float],
    x: Array,
    y: Array,
    *,
    activation: str,
) -> tuple[Array, tuple[Array, ...]]:
    """The batch loss and its gradient in the trainable weights, dL/dw_l = m_l G_l."""
    phi = activation_fn(activation)

    def loss(ws):
        return batch_loss(forward(effective_weights(ws, multipliers), x, phi).output, y)

    value, grads = jax.value_and_grad(loss)(tuple(weights))
    return value, tuple(grads)


class AdamState(NamedTuple):
    """First and second moment estimates per layer and the step count."""

    mu: tuple[Array, ...]
    nu: tuple[Array, ...]
    count: Array


def adam_init(weights: Sequence[Array]) -> AdamState:
    zeros = tuple(jnp.zeros_like(w) for w in weights)
    return AdamState(zeros, zeros, jnp.zeros((), jnp.int32))


def adam_apply(
    weights: Sequence[Array],
    grads: Sequence[Array],
    state: AdamState,
    lrs: Sequence[float],
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[tuple[Array, ...], AdamState]:
    """One bias-corrected Adam step with per-layer learning rates."""
    count = state.count + 1
    mu = tuple(b1 * m + (1 - b1) * g for m, g in zip(state.mu, grads, strict=True))
    nu = tuple(
        b2 * n + (1 - b2) * jnp.square(g) for n, g in zip(state.nu, grads, strict=True)
    )
    c1 = 1 - b1 ** count.astype(grads[0].dtype)
    c2 = 1 - b2 ** count.astype(grads[0].dtype)
    new = tuple(
        w - eta * (m / c1) / (jnp.sqrt(n / c2) + eps)
        for w, m, n, eta in zip(weights, mu, nu, lrs, strict=True)
    )
    return new, AdamState(mu, nu, count)
