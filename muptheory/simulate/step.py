"""One training step of any method, as a pure jitted function of the state.

``Simulator`` binds a ``MethodConfig``, a ``Parameterization`` and an ``Architecture``
to concrete numbers at one width (init stds, multipliers, learning rates, gamma_l,
lambda, mu) and exposes

    state = sim.init(seed)
    state, info = sim.step(state, x, y)         # info.loss: batch loss before the step

``sim.step_fn`` is the underlying pure function ``(state, x, y) -> (state, info)``;
``sim.init_many`` and ``sim.step_many`` vmap both over a leading seed axis. Knobs that
only the simulator has (PC forward initialization, TP's beta, the feedback training
noise, Adam's constants, the equilibrium solver's stopping rule) live in ``SimOptions``.
BP's K-FAC and Shampoo steps are in ``second_order.py`` (their damping comes from the
config, by default at the exponents the engine derives).

The base learning rate is the only number a sweep changes between runs of one shape,
so it can also be passed traced: ``sim.update_fn(state, x, y, rates)`` takes the
step's ``Rates`` (from ``sim.rates(lr)``) as an argument, and one compilation of it
serves every learning rate of simulators with the same ``sim.static_key``.

Example:
    >>> sim = Simulator(MethodConfig.create("pc"), preset("mup"),
    ...                 Architecture(width=256, depth=3, input_dim=64, n_outputs=10),
    ...                 lr=0.1)
    >>> state = sim.init(0)
    >>> state, info = sim.step(state, x, y)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from muptheory.errors import UnsupportedError
from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization
from muptheory.simulate import bp, gnt, pc, second_order, tp
from muptheory.simulate.network import (
    Architecture,
    Forward,
    activation_fn,
    effective_weights,
    forward,
    init_weights,
    layer_scales,
)
from muptheory.simulate.precision import dtype_name, precision
from muptheory.simulate.signals import LayerSignals, weight_gradients

Array = jax.Array


@dataclass(frozen=True)
class SimOptions:
    """Simulator-only knobs (the method's own options live in ``MethodConfig``).

    Attributes:
        sigma: init scale; entries of w_l have std sigma sqrt(M^{1-2b_l}/fan_in).
        forward_init: PC activities start at the feed-forward values (else zero).
        tp_beta: TP/DTP output target t_L = f - beta (f - y).
        feedback_noise: std of the noise in the feedback reconstruction loss.
        feedback_lr: base learning rate of trained feedback (None: the forward lr).
        feedback_steps: reconstruction steps of the feedback per training step.
        adam_b1, adam_b2, adam_eps: Adam's constants.
        equilibrium_tol: relative stopping tolerance of PC's equilibrium solver
            (None: 1e-5 in float32, 1e-10 in float64).
        equilibrium_max_iter: iteration cap of that solver.
    """

    sigma: float = 1.0
    forward_init: bool = True
    tp_beta: float = 1.0
    feedback_noise: float = 0.1
    feedback_lr: float | None = None
    feedback_steps: int = 1
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    equilibrium_tol: float | None = None
    equilibrium_max_iter: int = 100


class TrainState(NamedTuple):
    """Everything a step changes.

    Attributes:
        weights: trainable w_1..w_L.
        opt_state: optimizer state (Adam moments) or ().
        feedback: trained feedback weights V_2..V_L or ().
        key: PRNG key for noise drawn during training.
        step: number of steps taken.
    """

    weights: tuple[Array, ...]
    opt_state: tuple
    feedback: tuple[Array, ...]
    key: Array
    step: Array


class Rates(NamedTuple):
    """The numbers of a step that depend on the base learning rate eta.

    Attributes:
        weights: per layer, the factor of the update w_l <- w_l - weights[l] g_l:
            eta_l = eta M^{-c_l} where g_l is BP's gradient in w_l (or Adam's
            direction), eta_l m_l where g_l is a local method's gradient in the
            effective weight W_l = m_l w_l.
        feedback: learning rates of the trained feedback maps V_2..V_L,
            eta_fb M^{-c_fb} for hidden maps and eta_fb M^{-c_fb_last} for the top
            map V_L (unused without trained feedback).
    """

    weights: tuple
    feedback: tuple


class StepInfo(NamedTuple):
    """Per-step diagnostics: the batch loss before the update."""

    loss: Array


class Simulator:
    """A method, a parameterization and an architecture at one width.

    Args:
        config: the learning rule and its options.
        param: the abc-parameterization.
        arch: widths, depth, activation.
        lr: base learning rate eta (layer l uses eta M^{-c_l}).
        dtype: ``"float32"`` (default) or ``"float64"``.
        options: simulator-only knobs.
    """

    def __init__(
        self,
        config: MethodConfig,
        param: Parameterization,
        arch: Architecture,
        *,
        lr: float,
        dtype: str = "float32",
        options: SimOptions | None = None,
    ) -> None:
        self.config = config
        self.param = param
        self.arch = arch
        self.options = options or SimOptions()
        self.dtype = dtype_name(dtype)
        self.scales = layer_scales(param, arch, lr=lr, sigma=self.options.sigma)
        _check_supported(config, param)
        width = arch.width
        self.second_order_damping = (
            second_order.layer_dampings(
                config, width=width, depth=arch.depth, dtype=self.dtype
            )
            if self._uses_second_order
            else ()
        )
        self.gammas = pc.pc_gammas(config, width=width, depth=arch.depth)
        self.damping = gnt.gnt_damping(config, width=width)
        self.mu = config.mu0 * float(width) ** float(-config.mu_bar)
        self.lr = lr
        self.feedback_lr = self.rates(lr).feedback
        tol = self.options.equilibrium_tol
        self.tol = (
            tol if tol is not None else (1e-10 if self.dtype == "float64" else 1e-5)
        )
        self.step_fn = self._step
        self.update_fn = self._update
        self._jit_step = jax.jit(self._step)
        self._jit_step_many = jax.jit(jax.vmap(self._step, in_axes=(0, None, None)))
        self._jit_signals = jax.jit(self._signals)

    # -- public API ----------------------------------------------------------------

    @property
    def static_key(self) -> tuple:
        """Everything ``update_fn`` compiles in: equal keys, interchangeable code.

        The base learning rate is left out; it enters through ``Rates``.
        """
        return (self.config, self.param, self.arch, self.dtype, self.options)

    def rates(self, lr: float | None = None) -> Rates:
        """The step's ``Rates`` at base learning rate ``lr`` (default: this one's).

        The products eta M^{-c_l} m_l are taken in Python floats, as the step with
        the rates built in takes them, so both give the same numbers.
        """
        lr = self.lr if lr is None else lr
        scales = layer_scales(self.param, self.arch, lr=lr, sigma=self.options.sigma)
        if self.config.method == "bp":
            weights = scales.lrs
        else:
            weights = tuple(
                eta * m for eta, m in zip(scales.lrs, scales.multipliers, strict=True)
            )
        # trained feedback's rates follow eta unless SimOptions fixes them:
        # eta_fb M^{-c_fb} for the hidden maps V_2..V_(L-1), M^{-c_fb_last} for V_L
        base = lr if self.options.feedback_lr is None else self.options.feedback_lr
        width = float(self.arch.width)
        hidden = base * width ** float(-self.config.feedback_c)
        top = base * width ** float(-self.config.feedback_c_last)
        feedback = (hidden,) * (self.arch.depth - 2) + (top,)
        return Rates(tuple(weights), feedback)

    def init(self, seed: int | Array) -> TrainState:
        """Fresh weights (and feedback, optimizer state) from an int seed or a key."""
        with precision(self.dtype) as dtype:
            key = jax.random.PRNGKey(seed) if _is_int(seed) else seed
            return self._init(key, dtype)

    def init_many(self, seeds) -> TrainState:
        """States for several seeds, stacked on a leading axis."""
        with precision(self.dtype) as dtype:
            keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
            return jax.vmap(lambda k: self._init(k, dtype))(keys)

    def step(self, state: TrainState, x, y) -> tuple[TrainState, StepInfo]:
        """One training step on the batch (x, y)."""
        with precision(self.dtype) as dtype:
            return self._jit_step(state, jnp.asarray(x, dtype), jnp.asarray(y, dtype))

    def step_many(self, state: TrainState, x, y) -> tuple[TrainState, StepInfo]:
        """One training step of every stacked seed on the same batch."""
        with precision(self.dtype) as dtype:
            return self._jit_step_many(
                state, jnp.asarray(x, dtype), jnp.asarray(y, dtype)
            )

    def effective(self, state: TrainState) -> tuple[Array, ...]:
        """Effective weights W_l = m_l w_l."""
        with precision(self.dtype):
            return self.effective_traced(state)

    def effective_traced(self, state: TrainState) -> tuple[Array, ...]:
        """``effective`` without entering the precision context (for jitted code)."""
        return effective_weights(state.weights, self.scales.multipliers)

    def forward(self, state: TrainState, x) -> Forward:
        """Pre-activations and layer inputs of a batch."""
        with precision(self.dtype) as dtype:
            phi = activation_fn(self.arch.activation)
            return forward(self.effective_traced(state), jnp.asarray(x, dtype), phi)

    def signals(self, state: TrainState, x, y) -> LayerSignals:
        """The method's per-layer signals s_l and inputs a_{l-1} (BP: s_l = delta_l)."""
        with precision(self.dtype) as dtype:
            return self._jit_signals(
                state, jnp.asarray(x, dtype), jnp.asarray(y, dtype)
            )

    def weight_update(self, state: TrainState, x, y) -> tuple[Array, ...]:
        """Delta W_l = m_l (w_l' - w_l) of one step on (x, y), effective weights."""
        new, _ = self.step(state, x, y)
        with precision(self.dtype):
            return tuple(
                m * (w1 - w0)
                for m, w0, w1 in zip(
                    self.scales.multipliers, state.weights, new.weights, strict=True
                )
            )

    # -- pure functions ------------------------------------------------------------

    def _init(self, key: Array, dtype) -> TrainState:
        k_w, k_fb, k_run = jax.random.split(key, 3)
        weights = init_weights(k_w, self.arch, self.scales, dtype=dtype)
        opt = bp.adam_init(weights) if self._uses_adam else ()
        feedback = self._init_feedback(k_fb, dtype) if self._uses_feedback else ()
        return TrainState(weights, opt, feedback, k_run, jnp.zeros((), jnp.int32))

    def _init_feedback(self, key: Array, dtype) -> tuple[Array, ...]:
        """V_l (n_{l-1} x n_l), l = 2..L, variance M^{1 - 2 b_fb} / n_l."""
        sizes, width = self.arch.sizes, self.arch.width
        b = float(self.config.feedback_b)
        keys = jax.random.split(key, self.arch.depth - 1)
        out = []
        for k in range(2, self.arch.depth + 1):
            std = self.options.sigma * np.sqrt(width ** (1 - 2 * b) / sizes[k])
            shape = (sizes[k - 1], sizes[k])
            out.append(std * jax.random.normal(keys[k - 2], shape, dtype))
        return tuple(out)

    @property
    def _uses_adam(self) -> bool:
        return self.config.method == "bp" and self.config.optimizer == "adam"

    @property
    def _uses_second_order(self) -> bool:
        return (
            self.config.method == "bp"
            and self.config.optimizer in second_order.OPTIMIZERS
        )

    @property
    def _uses_feedback(self) -> bool:
        return self.config.method in ("tp", "dtp") and self.config.feedback == "trained"

    def _signals(self, state: TrainState, x: Array, y: Array) -> LayerSignals:
        cfg, act = self.config, self.arch.activation
        Ws = self.effective_traced(state)
        if cfg.method == "bp":
            return _bp_signals(Ws, x, y, act)
        if cfg.method == "gnt":
            return gnt.gnt_signals(Ws, x, y, activation=act, damping=self.damping)
        if cfg.method == "pc":
            inference = pc.infer(
                Ws,
                x,
                y,
                gammas=self.gammas,
                activation=act,
                config=cfg,
                forward_init=self.options.forward_init,
                tol=self.tol,
                max_iter=self.options.equilibrium_max_iter,
            )
            return pc.pc_signals(
                inference, gammas=self.gammas, last_layer_gamma=cfg.last_layer_gamma
            )
        difference = cfg.method == "dtp"
        if cfg.feedback == "ridge":
            return tp.tp_signals(
                Ws,
                x,
                y,
                activation=act,
                difference=difference,
                mu=self.mu,
                beta=self.options.tp_beta,
            )
        return tp.tp_signals(
            Ws,
            x,
            y,
            activation=act,
            difference=difference,
            feedback=state.feedback,
            beta=self.options.tp_beta,
        )

    def _step(
        self, state: TrainState, x: Array, y: Array
    ) -> tuple[TrainState, StepInfo]:
        return self._update(state, x, y, self.rates())

    def _update(
        self, state: TrainState, x: Array, y: Array, rates: Rates
    ) -> tuple[TrainState, StepInfo]:
        scales = self.scales
        key, feedback = state.key, state.feedback
        if self._uses_feedback:
            Ws = self.effective_traced(state)
            for _ in range(self.options.feedback_steps):
                key, sub = jax.random.split(key)
                feedback = tp.feedback_update(
                    Ws,
                    feedback,
                    x,
                    sub,
                    activation=self.arch.activation,
                    difference=self.config.method == "dtp",
                    noise=self.options.feedback_noise,
                    lr=rates.feedback,
                )
            state = state._replace(feedback=feedback)

        opt = state.opt_state
        if self._uses_second_order:
            loss, weights = second_order.second_order_step(
                state.weights,
                x,
                y,
                rates.weights,
                self.second_order_damping,
                optimizer=self.config.optimizer,
                activation=self.arch.activation,
            )
        elif self.config.method == "bp":
            loss, grads = bp.bp_gradients(
                state.weights, scales.multipliers, x, y, activation=self.arch.activation
            )
            if self._uses_adam:
                o = self.options
                weights, opt = bp.adam_apply(
                    state.weights,
                    grads,
                    opt,
                    rates.weights,
                    b1=o.adam_b1,
                    b2=o.adam_b2,
                    eps=o.adam_eps,
                )
            else:
                weights = tuple(
                    w - eta * g
                    for w, g, eta in zip(
                        state.weights, grads, rates.weights, strict=True
                    )
                )
        else:
            update = self._signals(state, x, y)
            f = forward(
                self.effective_traced(state), x, activation_fn(self.arch.activation)
            ).output
            loss = bp.batch_loss(f, y)
            # w_l - (eta_l m_l) G_l: sgd_apply with the product m_l eta_l taken first
            weights = tuple(
                w - step * g
                for w, g, step in zip(
                    state.weights, weight_gradients(update), rates.weights, strict=True
                )
            )
        new = TrainState(weights, opt, feedback, key, state.step + 1)
        return new, StepInfo(loss)


def _bp_signals(Ws, x, y, activation: str) -> LayerSignals:
    """delta_l = dloss/du_l per sample (the batch mean's 1/B left out)."""
    phi = activation_fn(activation)
    ff = forward(Ws, x, phi)
    zeros = tuple(jnp.zeros_like(u) for u in ff.pre)

    def shifted_loss(shifts):
        pre, h = [], x
        for i, W in enumerate(Ws):
            u = h @ W.T + shifts[i]
            pre.append(u)
            h = phi(u)
        return 0.5 * jnp.sum(jnp.square(pre[-1] - y))

    deltas = jax.grad(shifted_loss)(zeros)
    return LayerSignals(tuple(deltas), ff.inputs)


def _check_supported(config: MethodConfig, param: Parameterization) -> None:
    if (
        config.method == "bp"
        and config.optimizer in second_order.OPTIMIZERS
        and any(v != 0 for v in param.a.as_tuple())
    ):
        raise UnsupportedError(
            f"multipliers (a != 0) are not supported with {config.optimizer}: "
            "use the equivalent parameterization with a = 0"
        )


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
