"""The common shape of every method's weight update: a signal times an input.

Each learning rule in this package produces, per layer l, a per-sample signal s_l
(B, n_l) and the input a_{l-1} (B, n_{l-1}) the layer saw, and moves the effective
weights along

    G_l = (1/B) sum_n s_{l,n} a_{l-1,n}^T,

the derivative of its (local) loss with respect to W_l, averaged over the batch.
For BP s_l = delta_l = dloss/du_l; for target methods s_l = u_l - t_l; for PC
s_l = -gamma_l eps_l. With W_l = m_l w_l, plain descent on w_l is
w_l <- w_l - eta_l m_l G_l.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax

Array = jax.Array


class LayerSignals(NamedTuple):
    """Per-layer signals s_1..s_L and inputs a_0..a_{L-1} (rows are samples)."""

    signals: tuple[Array, ...]
    inputs: tuple[Array, ...]


def weight_gradients(update: LayerSignals) -> tuple[Array, ...]:
    """G_l = s_l^T a_{l-1} / B for every layer."""
    return tuple(
        s.T @ a / s.shape[0] for s, a in zip(update.signals, update.inputs, strict=True)
    )


def sgd_apply(
    weights: Sequence[Array],
    grads: Sequence[Array],
    multipliers: Sequence[float],
    lrs: Sequence[float],
) -> tuple[Array, ...]:
    """w_l <- w_l - eta_l m_l G_l, with G_l the gradient in effective weights."""
    return tuple(
        w - eta * m * g
        for w, g, m, eta in zip(weights, grads, multipliers, lrs, strict=True)
    )
