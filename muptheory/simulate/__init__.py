"""Finite-width JAX simulator of BP, GNT, PC and TP/DTP, and coord checks.

Layout (one idea per module):

- ``network``: MLP shapes, abc initialization, forward passes, per-sample Jacobians;
- ``signals``: the common form of every weight update, G_l = mean_n s_l a_{l-1}^T;
- ``bp``, ``pc``, ``gnt``, ``tp``: each learning rule's signals (and BP's Adam);
- ``second_order``: BP's K-FAC and Shampoo steps, preconditioned from the batch;
- ``step``: ``Simulator``, binding a method and a parameterization at one width into a
  pure, jitted training step;
- ``train``: whole training runs for sweeps, with divergence reported, not raised;
- ``coordcheck`` and ``plot``: width exponents measured, fitted and drawn;
- ``precision``: float32 by default, float64 inside ``enable_x64``.

Example:
    >>> from muptheory.simulate import train
    >>> result = train(MethodConfig.create("pc"), preset("mup"), width=256, depth=3,
    ...                data=load_dataset("digits"), lr=0.1, epochs=1)
"""

from muptheory.simulate.coordcheck import (
    CoordCheckResult,
    CoordCheckSettings,
    QuantityFit,
    coord_check,
    fit_exponent,
)
from muptheory.simulate.network import ACTIVATIONS, Architecture
from muptheory.simulate.precision import precision
from muptheory.simulate.step import SimOptions, Simulator, StepInfo, TrainState
from muptheory.simulate.train import TrainResult, train

__all__ = [
    "ACTIVATIONS",
    "Architecture",
    "CoordCheckResult",
    "CoordCheckSettings",
    "QuantityFit",
    "SimOptions",
    "Simulator",
    "StepInfo",
    "TrainResult",
    "TrainState",
    "coord_check",
    "fit_exponent",
    "precision",
    "train",
]
