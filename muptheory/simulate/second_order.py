"""BP with the second-order optimizers K-FAC and Shampoo, per layer, from one batch.

For a batch of B samples, layer l has the per-sample backprop deltas D (B x n_l,
delta = dloss/du_l of the sample's 1/2 ||f - y||^2, as in ``signals.py``), its inputs
H (B x n_(l-1)) and BP's gradient in W_l, g = (1/B) D^T H. With damping
rho = damping0 M^(exponent) per layer group (``MethodConfig.damping_a``,
``damping_g``, ``damping``; by default the exponents the engine derives):

- K-FAC (Martens & Grosse 2015):
  Delta W_l = -eta_l (G + rho_G I)^(-1) g (A + rho_A I)^(-1),
  A = (1/B) H^T H, G = (1/B) D^T D.
- Shampoo (Gupta et al. 2018), one damping for both sides:
  Delta W_l = -eta_l (L + rho I)^(-1/4) g (R + rho I)^(-1/4),  L = g g^T, R = g^T g.

These are the statistics whose eigenvalues ``muptheory.symbolic.second_order`` sizes:
with B = 1, A has the eigenvalue |h|^2, G has |delta|^2 and L, R have
|delta|^2 |h|^2. They are recomputed from the current batch at every step (no
running averages, no inverse-update interval); the engine instead holds the first
step's preconditioner for its later step, so the two agree on the first step and
may differ after it.

Every factor has rank at most B, so nothing of size n x n is inverted: with the
reduced QR factorizations H^T = Q_h R_h and D^T = Q_d R_d, g = Q_d C Q_h^T with
C = R_d R_h^T / B, A = Q_h K_h Q_h^T with K_h = R_h R_h^T / B, and likewise G. Since
g lies in the span of Q_d on the left and of Q_h on the right, the damped inverse
(and inverse root) of each factor acts on g through the k x k core alone
(k = min(n, B)):

  K-FAC:    Delta W = -eta Q_d (K_d + rho_G)^(-1) C (K_h + rho_A)^(-1) Q_h^T,
  Shampoo:  Delta W = -eta Q_d (C C^T + rho)^(-1/4) C (C^T C + rho)^(-1/4) Q_h^T,

exactly; the k x k inverses and inverse fourth roots come from ``eigh``. Multipliers
(a != 0) are not supported, as in the engine: W_l = w_l.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from muptheory.errors import InvalidInputError
from muptheory.methods import MethodConfig
from muptheory.simulate.network import activation_fn

Array = jax.Array

OPTIMIZERS = ("kfac", "shampoo")


# -- damping --------------------------------------------------------------------------


def layer_dampings(
    config: MethodConfig, *, width: int, depth: int, dtype: str = "float64"
) -> tuple[tuple[float, ...], ...]:
    """Per layer 1..L, the dampings rho = damping0 M^(exponent) of the optimizer.

    Returns:
        K-FAC: one (rho_A, rho_G) pair per layer; Shampoo: one (rho,) per layer.
        Exponents are the config's, or where it gives none the ones
        ``muptheory.symbolic.engine.damping_exponents`` derives.

    Raises:
        InvalidInputError: when a damping is not a positive normal number of
            ``dtype`` at this width (it would overflow to inf, freezing the layer, or
            vanish to 0).
    """
    from muptheory.symbolic.engine import damping_exponents

    named = damping_exponents(config)
    prefixes = ("rho_A", "rho_G") if config.optimizer == "kfac" else ("rho",)
    limits = np.finfo(dtype)
    out = []
    for layer in range(1, depth + 1):
        group = "first" if layer == 1 else "last" if layer == depth else "hidden"
        rhos = []
        for p in prefixes:
            exponent = named[f"{p}_{group}"]
            try:
                rho = config.damping0 * float(width) ** float(exponent)
            except OverflowError:
                rho = math.inf
            if not float(limits.tiny) <= rho <= float(limits.max):
                raise InvalidInputError(
                    f"damping {p} of layer {layer} = {config.damping0:g} * "
                    f"{width}^({exponent}) = {rho:g} is not a usable {dtype} number "
                    "(it would freeze or blow up the update); lower --damping0 or "
                    "the damping exponent"
                )
            rhos.append(rho)
        out.append(tuple(rhos))
    return tuple(out)


# -- the batch's statistics -----------------------------------------------------------


def deltas_and_inputs(
    Ws: Sequence[Array], x: Array, y: Array, *, activation: str
) -> tuple[Array, tuple[Array, ...], tuple[Array, ...]]:
    """The batch loss, the per-sample deltas D_l and the layer inputs H_(l-1).

    delta_l = dloss_n/du_l with loss_n = 1/2 ||f_n - y_n||^2 (no 1/B); the loss
    returned is the batch mean (1/B) sum_n loss_n.
    """
    phi = activation_fn(activation)
    batch = x.shape[0]

    def shifted_loss(shifts):
        h, inputs = x, []
        for W, shift in zip(Ws, shifts, strict=True):
            inputs.append(h)
            u = h @ W.T + shift
            h = phi(u)
        return 0.5 * jnp.sum(jnp.square(u - y)), tuple(inputs)

    zeros = tuple(jnp.zeros((batch, W.shape[0]), x.dtype) for W in Ws)
    (total, inputs), deltas = jax.value_and_grad(shifted_loss, has_aux=True)(zeros)
    return total / batch, tuple(deltas), inputs


def _reduce(rows: Array) -> tuple[Array, Array]:
    """Q (n x k) and R (k x B) with rows^T = Q R, k = min(n, B)."""
    return jnp.linalg.qr(rows.T, mode="reduced")


# -- the preconditioned directions ----------------------------------------------------


def kfac_direction(D: Array, H: Array, rho_a: float, rho_g: float) -> Array:
    """(G + rho_G I)^(-1) g (A + rho_A I)^(-1), with g = D^T H / B, A = H^T H / B,
    G = D^T D / B (D: B x n_out deltas, H: B x n_in inputs)."""
    batch = D.shape[0]
    q_h, r_h = _reduce(H)
    q_d, r_d = _reduce(D)
    core = r_d @ r_h.T / batch
    left = _damped_power(r_d @ r_d.T / batch, rho_g, -1.0)
    right = _damped_power(r_h @ r_h.T / batch, rho_a, -1.0)
    return q_d @ (left @ core @ right) @ q_h.T


def shampoo_direction(D: Array, H: Array, rho: float) -> Array:
    """(L + rho I)^(-1/4) g (R + rho I)^(-1/4), with g = D^T H / B, L = g g^T,
    R = g^T g."""
    batch = D.shape[0]
    q_h, r_h = _reduce(H)
    q_d, r_d = _reduce(D)
    core = r_d @ r_h.T / batch
    left = _damped_power(core @ core.T, rho, -0.25)
    right = _damped_power(core.T @ core, rho, -0.25)
    return q_d @ (left @ core @ right) @ q_h.T


def _damped_power(gram: Array, rho: float, power: float) -> Array:
    """(gram + rho I)^power of a symmetric positive semi-definite k x k matrix,
    through its eigendecomposition (``eigh``)."""
    eigenvalues, vectors = jnp.linalg.eigh(0.5 * (gram + gram.T))
    # round-off can leave a zero eigenvalue slightly negative
    scaled = (jnp.maximum(eigenvalues, 0) + rho) ** power
    return (vectors * scaled) @ vectors.T


# -- the step -------------------------------------------------------------------------


def second_order_step(
    weights: Sequence[Array],
    x: Array,
    y: Array,
    lrs: Sequence,
    dampings: Sequence[tuple[float, ...]],
    *,
    optimizer: str,
    activation: str,
) -> tuple[Array, tuple[Array, ...]]:
    """One K-FAC or Shampoo step on (x, y): the batch loss before it, new weights.

    Args:
        weights: W_1..W_L (a = 0, so trainable and effective weights coincide).
        lrs: eta_l = eta M^(-c_l) per layer.
        dampings: per layer, (rho_A, rho_G) for K-FAC or (rho,) for Shampoo
            (``layer_dampings``).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown second-order optimizer {optimizer!r}")
    loss, deltas, inputs = deltas_and_inputs(weights, x, y, activation=activation)
    new = []
    for W, D, H, eta, rho in zip(weights, deltas, inputs, lrs, dampings, strict=True):
        if optimizer == "kfac":
            direction = kfac_direction(D, H, rho_a=rho[0], rho_g=rho[1])
        else:
            direction = shampoo_direction(D, H, rho=rho[0])
        new.append(W - eta * direction)
    return loss, tuple(new)
