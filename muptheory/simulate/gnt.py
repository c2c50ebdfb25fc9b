"""Gauss-Newton targets (Meulemans et al. 2020) on pre-activations.

With e = f - y the output error and J_l = df/du_l (C x M, exact, per sample), the
target of hidden layer l and the output target are

    t_l = u_l - J_l^T (J_l J_l^T + lambda I)^{-1} e,     t_L = f - e,

with damping lambda = lambda0 M^{-lambda_bar}; ``lambda_bar=None`` means lambda = 0,
read as the pseudo-inverse J_l^T (J_l J_l^T)^+ e. Every layer descends its local loss
1/2 ||t_l - u_l||^2 with the target held fixed, so its signal is s_l = u_l - t_l.

THEORY.md section 4 writes the hidden target on h_l with J_l = df/dh_l; the two readings
coincide for linear networks and have the same width scaling. The simulator uses the
pre-activation form so that the local loss and the target live in the same space.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from muptheory.methods import MethodConfig
from muptheory.simulate.network import activation_fn, forward, output_jacobians
from muptheory.simulate.signals import LayerSignals

Array = jax.Array


def gnt_damping(config: MethodConfig, *, width: int) -> float | None:
    """lambda = lambda0 M^{-lambda_bar}, or None for the pseudo-inverse."""
    if config.lambda_bar is None:
        return None
    return config.lambda0 * float(width) ** float(-config.lambda_bar)


def gnt_signals(
    Ws: Sequence[Array],
    x: Array,
    y: Array,
    *,
    activation: str,
    damping: float | None,
) -> LayerSignals:
    """Signals s_l = J_l^T (J_l J_l^T + lambda I)^{-1} e (s_L = e) and inputs h_{l-1}.

    Args:
        Ws: effective weights W_1..W_L.
        x, y: a batch (B, d), (B, C).
        activation: name of phi.
        damping: lambda, or None for the pseudo-inverse.

    Returns:
        ``LayerSignals``; t_l = u_l - s_l are the targets.
    """
    phi = activation_fn(activation)
    ff = forward(Ws, x, phi)
    zeros = tuple(jnp.zeros_like(u) for u in ff.pre[:-1])
    _, jacs = output_jacobians(Ws, x, zeros, phi)
    e = ff.output - y
    signals = tuple(_damped_pullback(J, e, damping) for J in jacs)
    return LayerSignals(signals + (e,), ff.inputs)


def _damped_pullback(J: Array, e: Array, damping: float | None) -> Array:
    """J^T (J J^T + lambda I)^{-1} e per sample; J (B, C, M), e (B, C)."""
    gram = jnp.einsum("bcm,bdm->bcd", J, J)
    if damping is None:
        coef = jnp.einsum("bcd,bd->bc", jnp.linalg.pinv(gram, hermitian=True), e)
    else:
        eye = jnp.eye(gram.shape[-1], dtype=gram.dtype)
        coef = jnp.linalg.solve(gram + damping * eye, e[..., None])[..., 0]
    return jnp.einsum("bcm,bc->bm", J, coef)
