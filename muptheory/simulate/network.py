"""Finite-width MLPs under an abc-parameterization: shapes, initialization, forward.

An L-layer MLP of hidden width M maps a batch x (B, d) through

    u_l = h_{l-1} W_l^T,   h_l = phi(u_l),   h_0 = x,   f = u_L,

with W_l = m_l w_l, multiplier m_l = M^{-a_l}, and trainable w_l of shape
(fan_out, fan_in) initialized with i.i.d. N(0, s_l^2) entries. Rows of every array are
samples. Layer 1 is the group ``first``, layers 2..L-1 ``hidden`` and layer L ``last``;
s_l, m_l and the per-layer learning rate eta_l = lr M^{-c_l} come from
``Parameterization.init_std``, ``multiplier`` and ``lr_scale`` (fan-in reading of b).

The local methods move pre-activations, so this module also exposes the forward pass
with a perturbation z_l added to each hidden pre-activation,

    v_l = phi(v_{l-1}) W_l^T + z_l  (l < L),   F(z) = phi(v_{L-1}) W_L^T,

and per-sample Jacobians dF/dz_l, which equal df/du_l at z = 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from muptheory.errors import InvalidInputError
from muptheory.parameterization import Parameterization

Array = jax.Array
ACTIVATIONS: tuple[str, ...] = ("linear", "tanh", "relu")
# The widest hidden layer accepted: a hidden weight matrix of width 2^20 already
# holds 2^40 entries (4 TiB in float32), beyond any machine this runs on, so a wider
# request is a typing slip, not a network to allocate.
MAX_WIDTH = 2**20


def activation_fn(name: str) -> Callable[[Array], Array]:
    """The elementwise nonlinearity phi called ``name``."""
    if name == "linear":
        return lambda u: u
    if name == "tanh":
        return jnp.tanh
    if name == "relu":
        return jax.nn.relu
    raise InvalidInputError(
        f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}"
    )


def activation_derivative(name: str) -> Callable[[Array], Array]:
    """phi' of the nonlinearity ``name`` (relu' is the indicator of u > 0)."""
    if name == "linear":
        return jnp.ones_like
    if name == "tanh":
        return lambda u: 1.0 - jnp.tanh(u) ** 2
    if name == "relu":
        return lambda u: (u > 0).astype(u.dtype)
    raise InvalidInputError(
        f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}"
    )


def check_width(width: int) -> None:
    """Raise ``InvalidInputError`` for a width above ``MAX_WIDTH``."""
    if width > MAX_WIDTH:
        raise InvalidInputError(
            f"width {width} is too large; widths must be at most {MAX_WIDTH} "
            f"(2^20), since a hidden layer holds width^2 weights"
        )


@dataclass(frozen=True)
class Architecture:
    """Shapes of an MLP.

    Attributes:
        width: hidden width M (layers 1..L-1).
        depth: number of weight layers L >= 2.
        input_dim: d.
        n_outputs: C.
        activation: ``linear``, ``tanh`` or ``relu``.
    """

    width: int
    depth: int
    input_dim: int
    n_outputs: int
    activation: str = "tanh"

    def __post_init__(self) -> None:
        for name in ("width", "depth", "input_dim", "n_outputs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(
                    f"{name} must be a positive integer, got {value!r}"
                )
        if self.depth < 2:
            raise InvalidInputError(f"depth must be at least 2, got {self.depth}")
        check_width(self.width)
        activation_fn(self.activation)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer sizes n_0 = d, n_1 .. n_{L-1} = M, n_L = C."""
        return (self.input_dim,) + (self.width,) * (self.depth - 1) + (self.n_outputs,)

    def shape(self, layer: int) -> tuple[int, int]:
        """(fan_out, fan_in) of W_layer, layers counted from 1."""
        return self.sizes[layer], self.sizes[layer - 1]

    def group(self, layer: int) -> str:
        """The parameterization group of a layer: first, hidden or last."""
        if layer == 1:
            return "first"
        if layer == self.depth:
            return "last"
        return "hidden"


class LayerScales(NamedTuple):
    """Concrete per-layer numbers at one width: init std s_l, multiplier m_l, lr eta_l."""

    stds: tuple[float, ...]
    multipliers: tuple[float, ...]
    lrs: tuple[float, ...]


def layer_scales(
    param: Parameterization, arch: Architecture, *, lr: float, sigma: float = 1.0
) -> LayerScales:
    """Evaluate the parameterization at the architecture's width.

    Args:
        param: the abc exponents.
        arch: the MLP's shapes.
        lr: base learning rate eta; layer l trains with eta M^{-c_l}.
        sigma: init scale; s_l = sigma sqrt(M^{1 - 2 b_l} / fan_in_l).

    Returns:
        ``LayerScales`` with one entry per layer 1..L.
    """
    if not (isinstance(lr, int | float) and 0 < lr < float("inf")):
        raise InvalidInputError(f"learning rate must be a positive number, got {lr!r}")
    stds, mults, lrs = [], [], []
    for layer in range(1, arch.depth + 1):
        group = arch.group(layer)
        fan_in = arch.shape(layer)[1]
        stds.append(param.init_std(group, width=arch.width, fan_in=fan_in, sigma=sigma))
        mults.append(param.multiplier(group, width=arch.width))
        lrs.append(lr * param.lr_scale(group, width=arch.width))
    return LayerScales(tuple(stds), tuple(mults), tuple(lrs))


def init_weights(
    key: Array, arch: Architecture, scales: LayerScales, *, dtype=jnp.float32
) -> tuple[Array, ...]:
    """Draw the trainable weights w_1..w_L, each (fan_out, fan_in), N(0, s_l^2)."""
    keys = jax.random.split(key, arch.depth)
    return tuple(
        scales.stds[i] * jax.random.normal(keys[i], arch.shape(i + 1), dtype=dtype)
        for i in range(arch.depth)
    )


def effective_weights(
    weights: Sequence[Array], multipliers: Sequence[float]
) -> tuple[Array, ...]:
    """W_l = m_l w_l."""
    return tuple(m * w for m, w in zip(multipliers, weights, strict=True))


class Forward(NamedTuple):
    """A forward pass: pre-activations u_1..u_L (u_L = f) and inputs h_0..h_{L-1}."""

    pre: tuple[Array, ...]
    inputs: tuple[Array, ...]

    @property
    def output(self) -> Array:
        return self.pre[-1]


def forward(Ws: Sequence[Array], x: Array, phi: Callable[[Array], Array]) -> Forward:
    """u_l = h_{l-1} W_l^T, h_l = phi(u_l), h_0 = x, for effective weights ``Ws``."""
    pre, inputs = [], [x]
    for i, W in enumerate(Ws):
        u = inputs[-1] @ W.T
        pre.append(u)
        if i < len(Ws) - 1:
            inputs.append(phi(u))
    return Forward(tuple(pre), tuple(inputs))


def perturbed_forward(
    Ws: Sequence[Array],
    x: Array,
    z: Sequence[Array],
    phi: Callable[[Array], Array],
) -> Forward:
    """The forward pass with z_l added to each hidden pre-activation (l = 1..L-1).

    v_l = phi(v_{l-1}) W_l^T + z_l with phi(v_0) read as x; the output gets no shift.
    Works on one sample (vectors) or a batch (rows).
    """
    pre, inputs = [], [x]
    for i, W in enumerate(Ws):
        v = inputs[-1] @ W.T
        if i < len(Ws) - 1:
            v = v + z[i]
            inputs.append(phi(v))
        pre.append(v)
    return Forward(tuple(pre), tuple(inputs))


def output_jacobians(
    Ws: Sequence[Array],
    x: Array,
    z: Sequence[Array],
    phi: Callable[[Array], Array],
) -> tuple[Array, tuple[Array, ...]]:
    """Per-sample output and Jacobians J_l = dF/dz_l of ``perturbed_forward``.

    Args:
        Ws: effective weights W_1..W_L.
        x: inputs (B, d).
        z: hidden shifts z_1..z_{L-1}, each (B, M).
        phi: the nonlinearity.

    Returns:
        F(z) of shape (B, C) and the tuple of J_l, each (B, C, M); at z = 0 these are
        df/du_l. Computed with C reverse passes per sample (``jax.jacrev``), vmapped.
    """

    def one(xn, zn):
        return perturbed_forward(Ws, xn, zn, phi).output

    def with_jac(xn, zn):
        return one(xn, zn), jax.jacrev(one, argnums=1)(xn, zn)

    out, jacs = jax.vmap(with_jac)(x, tuple(z))
    return out, tuple(jacs)


def rms(a: Array) -> Array:
    """Root mean square over all coordinates and samples: the coord size."""
    return jnp.sqrt(jnp.mean(jnp.square(a)))
