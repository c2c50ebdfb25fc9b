"""Finite widths against the limit: errors per width and their log-log slope.

For each width M and seed, the JAX simulator (``muptheory.simulate.Simulator``, run
by ``muptheory.limits.simulated``: linear activation, float64, full batch) trains a
network with the limit's rule, parameterization, init scale and learning rates, and
the error of a quantity is its largest absolute deviation over training steps and
entries, max_t |q_M(t) - q_inf(t)|. Errors are averaged over seeds (they are
fluctuations of size M^{-1/2} with a random sign, so the mean of their magnitude
keeps that size) and fitted as log err = a + slope log M.

The seed mean is a sample mean, so the slope has a standard error that the seed
spread gives (delta method): Var log(mean) ~ (sd / mean)^2 / K at each width with K
seeds, and the least-squares slope's variance is
sum_i (x_i - x_bar)^2 Var_i / (sum_i (x_i - x_bar)^2)^2 with x = log M. A quantity
with few entries per step, the training loss above all, has a per-seed error close
to |Gaussian| (sd / mean about 0.75), so it needs many seeds: 128 seeds over six
widths a factor 2 apart give a standard error of 0.02 to 0.03.

When the limit's output at initialization is random (b_L = 1/2, TP/DTP), each seed's
limit is conditioned on that network's own output map at initialization, so the
comparison measures the width dependence and not the randomness of f_0.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from muptheory.errors import InvalidInputError
from muptheory.limits.dynamics import input_basis, limit_dynamics
from muptheory.limits.scaling import limit_scales
from muptheory.limits.simulated import simulated_dynamics
from muptheory.limits.tasks import Task

logger = logging.getLogger(__name__)

QUANTITIES: tuple[str, ...] = (
    "f_train",
    "f_test",
    "loss",
    "kernels",
    "pc_cos_gd",
    "pc_cos_gnt",
    "c_gamma_scaled",
    "pc_output_error",
    "pc_update_norms",
)
# Quantities only PC records.
PC_QUANTITIES: tuple[str, ...] = tuple(q for q in QUANTITIES if q.startswith("pc_")) + (
    "c_gamma_scaled",
)
_LIMIT_NAME = {"c_gamma_scaled": "pc_c_gamma"}
# Errors below this at every width mean the finite-width value is exact.
EXACT = 1e-10


@dataclass
class Convergence:
    """Errors of finite widths against the limit.

    Attributes:
        widths: the widths M.
        errors: quantity -> mean over seeds of max_t |q_M(t) - q_inf(t)|, per width.
        slopes: quantity -> fitted slope of log error against log width, or None
            when the error is below ``EXACT`` at every width (exact at finite width).
        seeds: number of seeds per width.
        slope_errors: quantity -> standard error of the slope from the seed spread
            (None where the slope is None or there is one seed).
    """

    widths: list[int]
    errors: dict[str, list[float]]
    slopes: dict[str, float | None]
    seeds: int
    slope_errors: dict[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The attributes as JSON values; a number that is not finite (none should
        be) becomes null, never a NaN or Infinity token."""
        return {
            "widths": self.widths,
            "seeds": self.seeds,
            "errors": {k: [_finite(v) for v in vs] for k, vs in self.errors.items()},
            "slopes": {k: _finite(v) for k, v in self.slopes.items()},
            "slope_errors": {k: _finite(v) for k, v in self.slope_errors.items()},
        }


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def check_widths(widths: Sequence[int]) -> list[int]:
    """The widths as a list of ints: two or more, positive and distinct (a slope
    against log width needs at least two different widths, and a repeated width
    adds no information but biases the fit)."""
    out = []
    for width in widths:
        if isinstance(width, bool) or int(width) != width or width < 1:
            raise InvalidInputError(f"widths must be positive integers, got {width!r}")
        out.append(int(width))
    repeated = sorted({w for w in out if out.count(w) > 1})
    if repeated:
        raise InvalidInputError(
            f"widths must be distinct, got {', '.join(map(str, repeated))} twice"
        )
    if len(out) < 2:
        raise InvalidInputError(
            f"a slope needs at least two distinct widths, got {len(out)}"
        )
    return out


def fit_slope(widths: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope of log(error) against log(width).

    Warns when fewer than five widths are given (the acceptance rule asks for five).
    """
    widths = np.asarray(widths, dtype=float)
    errors = np.asarray(errors, dtype=float)
    if widths.shape != errors.shape or widths.ndim != 1:
        raise InvalidInputError("fit_slope needs one error per width")
    if np.unique(widths).size < 2 or np.any(errors <= 0) or np.any(widths <= 0):
        raise InvalidInputError(
            "fit_slope needs two or more distinct positive widths and positive errors"
        )
    if not np.all(np.isfinite(errors)):
        raise InvalidInputError("fit_slope needs finite errors")
    if widths.size < 5:
        warnings.warn(f"slope fitted over only {widths.size} widths", stacklevel=2)
    return float(np.polyfit(np.log(widths), np.log(errors), 1)[0])


def slope_error(widths: Sequence[float], per_seed: Sequence[Sequence[float]]) -> float:
    """Standard error of ``fit_slope`` on seed means, from the seed spread.

    Args:
        widths: the widths.
        per_seed: per width, the errors of the individual seeds (two or more).

    Returns:
        sqrt(sum_i (x_i - x_bar)^2 v_i) / sum_i (x_i - x_bar)^2 with x = log M and
        v_i = (sd_i / mean_i)^2 / K_i, the variance of log(mean) by the delta method.
    """
    x = np.log(np.asarray(widths, dtype=float))
    dev = x - x.mean()
    if len(per_seed) != x.size or not np.any(dev != 0):
        raise InvalidInputError(
            "slope_error needs the errors of each of two or more distinct widths"
        )
    var = []
    for errs in per_seed:
        errs = np.asarray(errs, dtype=float)
        if errs.size < 2 or errs.mean() <= 0:
            raise InvalidInputError("slope_error needs two or more positive errors")
        var.append((errs.std(ddof=1) / errs.mean()) ** 2 / errs.size)
    return float(np.sqrt(np.sum(dev**2 * np.array(var))) / np.sum(dev**2))


def convergence(
    config,
    parameterization,
    task: Task,
    *,
    depth: int,
    steps: int,
    lr: float,
    widths: Sequence[int],
    seeds: int = 4,
    quantities: Sequence[str] = ("f_train", "loss", "kernels"),
    sigma: float = 1.0,
    beta: float = 1.0,
    lr_mult: Sequence[float] = (1.0, 1.0, 1.0),
    first_seed: int = 0,
) -> Convergence:
    """Train the limit and ``seeds`` simulated networks per width; fit the slopes.

    Args:
        config, parameterization, task, depth, steps, lr, sigma, beta, lr_mult: as
            ``limit_dynamics``; the simulator uses the same values.
        widths: two or more distinct widths M (five or more for a slope the
            acceptance rule accepts).
        seeds: networks per width; network s at width M uses seed
            1000 (first_seed + s) + M.
        quantities: names from ``QUANTITIES`` (``PC_QUANTITIES``: PC only).
        first_seed: shifts the seeds, to check that a slope is not one draw's luck.

    Returns:
        A ``Convergence`` with per-width errors and fitted slopes.
    """
    task = Task.of(task)
    for name in quantities:
        if name not in QUANTITIES:
            raise InvalidInputError(f"unknown quantity {name!r}; use {QUANTITIES}")
    widths = check_widths(widths)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInputError(f"seeds must be a positive integer, got {seeds!r}")
    if (
        isinstance(first_seed, bool)
        or not isinstance(first_seed, int)
        or first_seed < 0
    ):
        raise InvalidInputError(
            f"first_seed must be a non-negative integer, got {first_seed!r}"
        )
    scales = limit_scales(config, parameterization, depth=depth)
    random_output = scales.output_init == "xi"
    basis = input_basis(task)
    common = dict(
        depth=depth, steps=steps, lr=lr, sigma=sigma, beta=beta, lr_mult=lr_mult
    )
    shared = (
        None
        if random_output
        else limit_dynamics(config, parameterization, task, **common)
    )
    errors = {name: [] for name in quantities}
    spread = {name: [] for name in quantities}
    for width in widths:
        per_seed = {name: [] for name in quantities}
        runs = simulated_dynamics(
            config,
            parameterization,
            task,
            width=int(width),
            seeds=[1000 * (first_seed + seed) + int(width) for seed in range(seeds)],
            basis=basis,
            **common,
        )
        for fin in runs:
            lim = shared
            if random_output:
                lim = limit_dynamics(
                    config,
                    parameterization,
                    task,
                    output_map0=fin.output_map0,
                    **common,
                )
            for name in quantities:
                a = getattr(fin, name)
                b = getattr(lim, _LIMIT_NAME.get(name, name))
                if a is None or b is None:
                    raise InvalidInputError(
                        f"{name} is not recorded for {config.method}"
                    )
                per_seed[name].append(float(np.max(np.abs(a - b))))
        for name in quantities:
            errors[name].append(float(np.mean(per_seed[name])))
            spread[name].append(per_seed[name])
        logger.info("width %d: %s", width, {k: v[-1] for k, v in errors.items()})
    slopes = {
        name: None if max(errors[name]) < EXACT else fit_slope(widths, errors[name])
        for name in quantities
    }
    slope_errors = {
        name: None
        if slopes[name] is None or seeds < 2
        else slope_error(widths, spread[name])
        for name in quantities
    }
    return Convergence(widths, errors, slopes, seeds, slope_errors)
