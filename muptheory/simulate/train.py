"""Train an MLP with any method for some epochs; report loss, accuracy, divergence.

This is the entry point for sweeps (learning-rate transfer across widths): one call,
one run, never an exception for a run that blows up. A step whose loss or weights are
NaN or infinite marks the run as diverged at that (width, step); training stops there
(the rest of that epoch's scan skips its steps) and the histories keep what came
before.

The jitted epoch (a ``lax.scan`` of ``Simulator.update_fn``) takes the learning rates
as arguments and is kept per process, keyed by ``Simulator.static_key``; JAX's own
cache adds the batch shapes. So runs that differ only in learning rate or seed, as
the cells of a transfer sweep at one width do, compile once per process.

Example:
    >>> data = load_dataset("digits", seed=0)
    >>> result = train(MethodConfig.create("bp"), preset("mup"), width=256, depth=3,
    ...                activation="tanh", data=data, lr=0.1, epochs=2,
    ...                batch_size=64, seed=0)
    >>> result.test_accuracy[-1], result.diverged
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from muptheory.errors import InvalidInputError
from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization
from muptheory.simulate.network import Architecture
from muptheory.simulate.precision import precision
from muptheory.simulate.step import Rates, SimOptions, Simulator, TrainState

logger = logging.getLogger(__name__)

# Compiled epochs kept per process; each holds its executables, so only a few.
EPOCH_CACHE_SIZE = 16
_epoch_runners: OrderedDict[tuple, Callable] = OrderedDict()


@dataclass
class TrainResult:
    """Histories of one training run.

    Attributes:
        width: hidden width M.
        train_loss: mean batch loss of each epoch (before each step's update).
        test_loss: test loss 1/2 ||f - y||^2 (mean) after each epoch.
        test_accuracy: test accuracy (argmax of f vs argmax of y) after each epoch.
        steps: number of steps completed without divergence.
        diverged: whether a NaN or infinity appeared.
        diverged_step: the 1-based step whose loss or new weights were not finite.
        step_losses: every step's batch loss, in order.
    """

    width: int
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    steps: int = 0
    diverged: bool = False
    diverged_step: int | None = None
    step_losses: list[float] = field(default_factory=list)

    @property
    def diverged_at(self) -> tuple[int, int] | None:
        """(width, step) of the divergence, or None."""
        return (self.width, self.diverged_step) if self.diverged else None

    def to_json(self) -> dict:
        return {
            "width": self.width,
            "train_loss": self.train_loss,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "steps": self.steps,
            "diverged": self.diverged,
            "diverged_step": self.diverged_step,
        }


def train(
    config: MethodConfig,
    param: Parameterization,
    *,
    width: int,
    depth: int,
    activation: str = "tanh",
    data,
    lr: float,
    epochs: int = 1,
    batch_size: int = 64,
    seed: int = 0,
    dtype: str = "float32",
    options: SimOptions | None = None,
) -> TrainResult:
    """Train with minibatch steps over shuffled epochs of ``data``.

    Args:
        config: the learning rule.
        param: the abc-parameterization.
        width, depth, activation: the MLP.
        data: a ``muptheory.data.Dataset`` (x_train, y_train, x_test, y_test).
        lr: base learning rate (layer l uses lr M^{-c_l}).
        epochs: passes over the training set; the last partial batch is dropped.
        batch_size: samples per step.
        seed: weight init and batch order.
        dtype: ``float32`` or ``float64``.
        options: simulator-only knobs.

    Returns:
        A ``TrainResult``; a diverged run is reported, not raised.
    """
    _check_positive("epochs", epochs)
    _check_positive("batch_size", batch_size)
    x_train, y_train = np.asarray(data.x_train), np.asarray(data.y_train)
    n = x_train.shape[0]
    if batch_size > n:
        raise InvalidInputError(
            f"batch_size {batch_size} exceeds the {n} training samples"
        )
    arch = Architecture(
        width=width,
        depth=depth,
        input_dim=x_train.shape[1],
        n_outputs=y_train.shape[1],
        activation=activation,
    )
    sim = Simulator(config, param, arch, lr=lr, dtype=dtype, options=options)
    result = TrainResult(width=width)
    rng = np.random.default_rng(seed)
    n_batches = n // batch_size
    with precision(sim.dtype) as jdtype:
        state = sim.init(seed)
        run_epoch = epoch_runner(sim)
        rates = jax.tree.map(lambda v: jnp.asarray(v, jdtype), sim.rates())
        x_test = jnp.asarray(data.x_test, jdtype)
        y_test = jnp.asarray(data.y_test, jdtype)
        for _ in range(epochs):
            order = rng.permutation(n)[: n_batches * batch_size]
            xs = jnp.asarray(x_train[order], jdtype).reshape(n_batches, batch_size, -1)
            ys = jnp.asarray(y_train[order], jdtype).reshape(n_batches, batch_size, -1)
            new_state, (losses, finite) = run_epoch(state, xs, ys, rates)
            losses, finite = np.asarray(losses), np.asarray(finite)
            ok = np.isfinite(losses) & finite
            if not ok.all():
                first = int(np.argmin(ok))
                result.step_losses.extend(float(v) for v in losses[:first])
                result.steps += first
                result.diverged, result.diverged_step = True, result.steps + 1
                logger.info(
                    "run at width %d diverged at step %d", width, result.steps + 1
                )
                break
            state = new_state
            result.step_losses.extend(float(v) for v in losses)
            result.steps += n_batches
            result.train_loss.append(float(np.mean(losses)))
            test_loss, accuracy = _evaluate(sim, state, x_test, y_test)
            if not np.isfinite(test_loss):
                result.diverged, result.diverged_step = True, result.steps
                break
            result.test_loss.append(test_loss)
            result.test_accuracy.append(accuracy)
    return result


def epoch_runner(sim: Simulator) -> Callable:
    """The jitted ``(state, xs, ys, rates) -> (state, (losses, finite))`` of ``sim``.

    One epoch scans ``sim.update_fn`` over the batches ``xs`` (steps, B, d) and ``ys``;
    ``finite`` says per step whether the new weights are all finite. Once a step's
    loss or new weights are not finite, the remaining steps compute nothing: they
    keep the state and report a NaN loss and ``finite`` False, so a diverged run
    costs little (the first bad step is reported as before). The function is
    shared by every simulator with the same ``static_key`` in this process (the
    ``EPOCH_CACHE_SIZE`` most recently used are kept).
    """
    key = sim.static_key
    runner = _epoch_runners.pop(key, None)
    if runner is None:

        def run(state, xs, ys, rates):
            (state, _), out = jax.lax.scan(
                _scan_step(sim, rates), (state, jnp.asarray(False)), (xs, ys)
            )
            return state, out

        runner = jax.jit(run)
    _epoch_runners[key] = runner  # now the most recently used
    while len(_epoch_runners) > EPOCH_CACHE_SIZE:
        _epoch_runners.popitem(last=False)
    return runner


def _scan_step(sim: Simulator, rates: Rates):
    """A scan body over ``(state, dead)``: one step, emitting the loss and whether
    the new weights are finite; a dead run (an earlier step was not finite) skips
    the step."""

    def step(state: TrainState, batch):
        new, info = sim.update_fn(state, *batch, rates)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(w)) for w in new.weights]))
        return new, info.loss, finite

    def body(carry, batch):
        state, dead = carry
        loss_shape = jax.eval_shape(step, state, batch)[1]

        def skip(state: TrainState):
            return state, jnp.full((), jnp.nan, loss_shape.dtype), jnp.asarray(False)

        new, loss, finite = jax.lax.cond(dead, skip, lambda s: step(s, batch), state)
        dead = dead | ~(finite & jnp.isfinite(loss))
        return (new, dead), (loss, finite)

    return body


def _evaluate(sim: Simulator, state: TrainState, x, y) -> tuple[float, float]:
    f = sim.forward(state, x).output
    loss = float(0.5 * jnp.sum(jnp.square(f - y)) / f.shape[0])
    accuracy = float(jnp.mean(jnp.argmax(f, axis=1) == jnp.argmax(y, axis=1)))
    return loss, accuracy


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
