"""Predictive coding: inference of the activities, then a local weight update.

Energy (per sample; the batch energy is the sum over samples):

    E(v) = sum_{l=1}^{L} (gamma_l / 2) ||eps_l||^2,
    eps_l = v_l - phi(v_{l-1}) W_l^T,   phi(v_0) := x,   v_L := y (clamped).

gamma_l = M^{-gamma_bar_hidden} for l < L and gamma_L = gamma0 M^{-gamma_bar_last}.
The activity gradient is

    dE/dv_l = gamma_l eps_l - gamma_{l+1} phi'(v_l) * (eps_{l+1} W_{l+1}).

Inference steps are preconditioned by 1/gamma_l, v_l <- v_l - (r / gamma_l) dE/dv_l,
so the rate r is in units of each layer's own stiffness (plain gradient descent when
gamma_l = 1). Variants (``MethodConfig.inference``):

- ``iterative``: T simultaneous steps at rate r;
- ``sequential``: one top-down sweep l = L-1, ..., 1 of such steps (Z-IL of Song et
  al. 2020 when r = 1, forward init and FPA);
- ``equilibrium``: the stationary point. With FPA it is the top-down recursion
  gamma_l eps_l = gamma_{l+1} phi'(u_l) * (eps_{l+1} W_{l+1}); without FPA it is found
  by Gauss-Newton iterations in error coordinates (exact in one iteration for linear
  networks, where it is THEORY.md section 6's closed form).

The fixed prediction assumption (FPA) freezes predictions, phi' and the layer inputs at
their feed-forward values: eps_l = v_l - u_l, eps_L = y - f. Weight update, with
s_l the signal of ``signals.py``:

    Delta W_l = eta_l gamma_l mean_n eps_l a_{l-1}^T       (l < L),
    Delta W_L = eta_L gamma_L^[k] mean_n eps_L a_{L-1}^T,  k = config.last_layer_gamma,

where a_{l-1} = phi(v_{l-1}) (or h_{l-1} under FPA).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from muptheory.methods import MethodConfig
from muptheory.simulate.network import (
    activation_derivative,
    activation_fn,
    forward,
    output_jacobians,
    perturbed_forward,
)
from muptheory.simulate.signals import LayerSignals

Array = jax.Array


# Levenberg-Marquardt damping beyond which a sample's Gauss-Newton step is taken as
# stalled (about ten rejections in a row from lam = 0).
STALLED_DAMPING = 1e6


def pc_gammas(config: MethodConfig, *, width: int, depth: int) -> tuple[float, ...]:
    """Energy coefficients gamma_1..gamma_L at a width."""
    hidden = float(width) ** float(-config.gamma_bar_hidden)
    last = config.gamma0 * float(width) ** float(-config.gamma_bar_last)
    return (hidden,) * (depth - 1) + (last,)


class PCInference(NamedTuple):
    """Result of inference.

    Attributes:
        activities: v_1..v_{L-1}, each (B, M).
        errors: eps_1..eps_L (eps_L = y - prediction of the top).
        inputs: a_0..a_{L-1}, the inputs the weight update multiplies.
        iterations: solver iterations (equilibrium) or inference steps taken.
    """

    activities: tuple[Array, ...]
    errors: tuple[Array, ...]
    inputs: tuple[Array, ...]
    iterations: Array


def infer(
    Ws: Sequence[Array],
    x: Array,
    y: Array,
    *,
    gammas: Sequence[float],
    activation: str,
    config: MethodConfig,
    forward_init: bool = True,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> PCInference:
    """Run the inference variant that ``config`` names.

    Args:
        Ws: effective weights W_1..W_L.
        x, y: a batch of inputs (B, d) and targets (B, C).
        gammas: gamma_1..gamma_L.
        activation: name of phi.
        config: the PC options (inference, steps, rate, fpa).
        forward_init: start the activities at the feed-forward pre-activations
            (otherwise at zero). The equilibrium does not depend on it.
        tol, max_iter: stopping rule of the Gauss-Newton equilibrium solver: relative
            change of the errors below ``tol`` or ``max_iter`` iterations.

    Returns:
        The ``PCInference``.
    """
    ff = forward(Ws, x, activation_fn(activation))
    model = _Energy(Ws, x, y, gammas, activation, ff, config.fpa)
    if config.inference == "equilibrium":
        if config.fpa:
            return model.fpa_equilibrium()
        return model.gauss_newton_equilibrium(tol=tol, max_iter=max_iter)
    n_hidden = len(Ws) - 1
    v0 = tuple(
        ff.pre[i] if forward_init else jnp.zeros_like(ff.pre[i])
        for i in range(n_hidden)
    )
    rate = config.inference_rate
    if config.inference == "sequential":
        v = v0
        for i in reversed(range(n_hidden)):
            moved = v[i] - rate / gammas[i] * model.activity_gradient(v, i)
            v = v[:i] + (moved,) + v[i + 1 :]
        return model.result(v, jnp.asarray(1))

    def body(_, v):
        errors = [model.error(v, j) for j in range(n_hidden + 1)]
        grads = [model.activity_gradient(v, i, errors) for i in range(n_hidden)]
        return tuple(v[i] - rate / gammas[i] * grads[i] for i in range(n_hidden))

    v = jax.lax.fori_loop(0, config.inference_steps, body, v0)
    return model.result(v, jnp.asarray(config.inference_steps))


def pc_signals(
    inference: PCInference, *, gammas: Sequence[float], last_layer_gamma: bool
) -> LayerSignals:
    """Signals s_l = -gamma_l eps_l (s_L = -gamma_L^[k] eps_L) and their inputs."""
    *hidden, top = inference.errors
    signals = tuple(-g * e for g, e in zip(gammas[:-1], hidden, strict=True))
    top_gamma = gammas[-1] if last_layer_gamma else 1.0
    return LayerSignals(signals + (-top_gamma * top,), inference.inputs)


def energy(
    Ws: Sequence[Array],
    x: Array,
    y: Array,
    v: Sequence[Array],
    *,
    gammas: Sequence[float],
    activation: str,
) -> Array:
    """E(v) summed over the batch (no FPA)."""
    phi = activation_fn(activation)
    inputs = (x,) + tuple(phi(vi) for vi in v)
    tops = tuple(v) + (y,)
    return sum(
        0.5 * g * jnp.sum(jnp.square(t - a @ W.T))
        for g, t, a, W in zip(gammas, tops, inputs, Ws, strict=True)
    )


class _Energy:
    """The energy of one batch, with or without the fixed prediction assumption."""

    def __init__(self, Ws, x, y, gammas, activation, ff, fpa):
        self.Ws, self.x, self.y, self.gammas = Ws, x, y, gammas
        self.phi = activation_fn(activation)
        self.dphi = activation_derivative(activation)
        self.ff, self.fpa = ff, fpa
        self.linear = activation == "linear"

    # -- errors and activity gradients ------------------------------------------

    def error(self, v: Sequence[Array], j: int) -> Array:
        """eps_{j+1} (0-based index j over layers 1..L)."""
        top = j == len(self.Ws) - 1
        if self.fpa:
            return self.y - self.ff.output if top else v[j] - self.ff.pre[j]
        below = self.x if j == 0 else self.phi(v[j - 1])
        target = self.y if top else v[j]
        return target - below @ self.Ws[j].T

    def activity_gradient(
        self, v: Sequence[Array], i: int, errors: Sequence[Array] | None = None
    ) -> Array:
        """dE/dv_{i+1} = gamma eps - gamma_next phi'(v) * (eps_next W_next).

        ``errors`` (all eps_1..eps_L at ``v``) saves recomputing them.
        """
        slope = self.dphi(self.ff.pre[i] if self.fpa else v[i])
        here = self.error(v, i) if errors is None else errors[i]
        above = self.error(v, i + 1) if errors is None else errors[i + 1]
        upper = above @ self.Ws[i + 1]
        return self.gammas[i] * here - self.gammas[i + 1] * slope * upper

    def result(self, v: Sequence[Array], iterations: Array) -> PCInference:
        errors = tuple(self.error(v, j) for j in range(len(self.Ws)))
        if self.fpa:
            inputs = self.ff.inputs
        else:
            inputs = (self.x,) + tuple(self.phi(vi) for vi in v)
        return PCInference(tuple(v), errors, inputs, iterations)

    # -- equilibria --------------------------------------------------------------

    def fpa_equilibrium(self) -> PCInference:
        """Top-down recursion eps_l = (gamma_{l+1}/gamma_l) phi'(u_l) * eps_{l+1} W."""
        errors = [self.y - self.ff.output]
        for i in reversed(range(len(self.Ws) - 1)):
            ratio = self.gammas[i + 1] / self.gammas[i]
            errors.insert(
                0, ratio * self.dphi(self.ff.pre[i]) * (errors[0] @ self.Ws[i + 1])
            )
        v = tuple(u + e for u, e in zip(self.ff.pre[:-1], errors[:-1], strict=True))
        return PCInference(v, tuple(errors), self.ff.inputs, jnp.asarray(0))

    def gauss_newton_equilibrium(self, *, tol: float, max_iter: int) -> PCInference:
        """Stationary point of E in the error coordinates z_l = eps_l (l < L).

        With F(z) the output of the forward pass shifted by z, r = y - F(z) and
        J_l = dF/dz_l per sample, E = sum_l gamma_l/2 ||z_l||^2 + gamma_L/2 ||r||^2 and
        stationarity reads gamma_l z_l = gamma_L J_l^T r. Each iteration linearizes F
        at z and minimizes the model plus a Levenberg-Marquardt term
        (lambda/2) sum_l gamma_l ||z_l' - z_l||^2, exactly, through a C x C system per
        sample (Woodbury):

            (I + gamma_L S / (1 + lambda)) a = gamma_L (r + J z / (1 + lambda)),
            S = sum_l J_l J_l^T / gamma_l,
            z_l' = (lambda z_l + J_l^T a / gamma_l) / (1 + lambda).

        A sample accepts z' when its energy does not rise beyond rounding (then
        lambda /= 3), else
        lambda <- 10 lambda + 0.01. It stops when max |gamma_l z_l - gamma_L J_l^T r|
        falls below ``tol`` times the larger of the two terms, or after ``max_iter``.
        For linear networks F is affine and one undamped step (lambda = 0) lands on
        THEORY.md section 6: (I + C_gamma) eps_L = y - W_{L:1} x, C_gamma = gamma_L S.
        """
        gammas, top = self.gammas, self.gammas[-1]
        n_hidden = len(self.Ws) - 1
        sample_axes = lambda a: tuple(range(1, a.ndim))  # noqa: E731

        def linearize(z):
            out, jacs = output_jacobians(self.Ws, self.x, z, self.phi)
            return self.y - out, jacs

        def proposal(z, r, jacs, lam):
            s = sum(
                jnp.einsum("bcm,bdm->bcd", J, J) / g
                for J, g in zip(jacs, gammas, strict=False)
            )
            jz = sum(
                jnp.einsum("bcm,bm->bc", J, zi) for J, zi in zip(jacs, z, strict=True)
            )
            shrink = (1.0 / (1.0 + lam))[:, None]
            eye = jnp.eye(r.shape[1], dtype=r.dtype)
            lhs = eye + top * shrink[..., None] * s
            a = top * jnp.linalg.solve(lhs, (r + shrink * jz)[..., None])[..., 0]
            return tuple(
                shrink * (lam[:, None] * zi + jnp.einsum("bcm,bc->bm", J, a) / g)
                for J, zi, g in zip(jacs, z, gammas, strict=False)
            )

        def sample_energy(z, r):
            hidden = sum(
                0.5 * g * jnp.sum(jnp.square(zi), axis=sample_axes(zi))
                for zi, g in zip(z, gammas, strict=False)
            )
            return hidden + 0.5 * top * jnp.sum(jnp.square(r), axis=1)

        def residual(z):
            return self.y - perturbed_forward(self.Ws, self.x, z, self.phi).output

        def stationarity(z, r, jacs):
            pull = [top * jnp.einsum("bcm,bc->bm", J, r) for J in jacs]
            gap = jnp.stack(
                [
                    jnp.max(jnp.abs(g * zi - p))
                    for zi, p, g in zip(z, pull, gammas, strict=False)
                ]
            )
            size = jnp.stack(
                [jnp.max(jnp.abs(p)) for p in pull]
                + [jnp.max(jnp.abs(g * zi)) for zi, g in zip(z, gammas, strict=False)]
            )
            return jnp.max(gap), jnp.max(size)

        z0 = tuple(jnp.zeros_like(u) for u in self.ff.pre[:n_hidden])
        if self.linear:
            r, jacs = linearize(z0)
            lam = jnp.zeros(r.shape[0], r.dtype)
            z, iterations = proposal(z0, r, jacs, lam), jnp.asarray(1)
        else:

            def cond(carry):
                it, _, lam, _, gap, size = carry
                # stop at the tolerance, at max_iter, or when every sample's damping
                # has grown past STALLED_DAMPING: its steps keep being rejected, so
                # rounding (float32 at large widths) has stopped the progress
                stalled = jnp.all(lam > STALLED_DAMPING)
                return (it < max_iter) & (gap > tol * size) & ~stalled

            def body(carry):
                it, z, lam, energy, _, _ = carry
                r, jacs = linearize(z)
                candidate = proposal(z, r, jacs, lam)
                new_energy = sample_energy(candidate, residual(candidate))
                # ties within rounding count as progress, so the end game is not stuck
                slack = 8 * jnp.finfo(energy.dtype).eps * jnp.abs(energy)
                accept = new_energy <= energy + slack
                z = tuple(
                    jnp.where(accept[:, None], c, zi)
                    for c, zi in zip(candidate, z, strict=True)
                )
                energy = jnp.where(accept, new_energy, energy)
                lam = jnp.where(accept, lam / 3.0, 10.0 * lam + 0.01)
                gap, size = stationarity(z, *linearize(z))
                return it + 1, z, lam, energy, gap, size

            r0 = residual(z0)
            lam0 = jnp.zeros(r0.shape[0], r0.dtype)
            one = jnp.ones((), r0.dtype)
            carry = (jnp.asarray(0), z0, lam0, sample_energy(z0, r0), one, 0 * one)
            iterations, z, _, _, _, _ = jax.lax.while_loop(cond, body, carry)
        shifted = perturbed_forward(self.Ws, self.x, z, self.phi)
        errors = tuple(z) + (self.y - shifted.output,)
        return PCInference(shifted.pre[:-1], errors, shifted.inputs, iterations)
