"""Coord checks: measured width exponents of a trained MLP next to predicted ones.

For each width M (default 64..2048, doubling) and seed, a network is trained for a few
steps on consecutive minibatches, and after every step t the per-coordinate RMS size
(``network.rms``) of these quantities is measured on a fixed probe batch (the first
training batch):

- ``h`` (layer l = 1..L-1): the activation h_l = phi(u_l) (reported at init, t = 0);
- ``delta_h``: h_l(t) - h_l(0);
- ``update`` (l = 1..L): the layer's own update contribution (W_l(t) - W_l(0)) h_{l-1}(t);
- ``f`` (layer L): the output at init; ``delta_f``: f(t) - f(0).

Each quantity's size at the widest ``fit_widths`` widths is fit against width on a
log-log scale, one least-squares slope per seed; the measured exponent is the mean
slope and its confidence interval is Student's t over seeds (one seed: the regression's
own standard error; with one seed and two widths there is none). THEORY.md section 3 warns that a sum of terms with different
exponents can fake a slope at moderate widths, hence the widest widths and the separate
``update`` terms. A prediction agrees when |measured - predicted| is within the
interval's half width, or within ``tolerance`` (0.15) when the interval is tighter or
undefined.

Runs that produce NaN or infinity are recorded as diverged (width, seed, step) and
that seed's later sizes are left out of every fit.

Each width is one cell of a ``muptheory.sweeps.run_sweep`` sweep (``coordcheck_cell``:
all seeds and steps of that width), so with a ``cache_dir`` a repeated coord check
reuses the widths it has measured and an interrupted one resumes; the fit settings
(``fit_widths``, ``confidence``, ``tolerance``) are not part of a cell and can change
without recomputing. Cells run in this process by default, in ``workers`` local
processes or on a Dask ``scheduler`` on request; those reload the data by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from muptheory.errors import InvalidInputError, MuptheoryError
from muptheory.methods import MethodConfig, config_from_options
from muptheory.parameterization import Parameterization, format_exponent
from muptheory.simulate.network import (
    Architecture,
    activation_fn,
    check_width,
    forward,
    rms,
)
from muptheory.simulate.precision import dtype_name, precision
from muptheory.simulate.step import SimOptions, Simulator, TrainState

logger = logging.getLogger(__name__)

QUANTITIES: tuple[str, ...] = ("h", "delta_h", "update", "f", "delta_f")
DEFAULT_WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
TOLERANCE = 0.15
DEFAULT_CACHE_DIR = os.path.join(".muptheory-cache", "coordcheck")
# Version of the cell's code; bump it when ``coordcheck_cell`` changes its results.
CELL_SALT = "coordcheck-cell-1"

Key = tuple[str, int]


@dataclass(frozen=True)
class CoordCheckSettings:
    """What to train and how to fit.

    Attributes:
        widths: hidden widths, at least two distinct.
        seeds: number of seeds (0..seeds-1); each seed draws its own init.
        steps: training steps after init (>= 1).
        depth, activation: the MLP.
        lr: base learning rate.
        batch_size: samples per step (and in the probe batch).
        dtype: ``float32`` or ``float64``.
        fit_widths: fit the widest this many widths (all when larger).
        confidence: level of the interval over seeds.
        tolerance: agreement slack when the interval is tighter than it.
        options: simulator-only knobs.
    """

    widths: tuple[int, ...] = DEFAULT_WIDTHS
    seeds: int = 3
    steps: int = 3
    depth: int = 3
    activation: str = "tanh"
    lr: float = 0.1
    batch_size: int = 32
    dtype: str = "float32"
    fit_widths: int = 4
    confidence: float = 0.95
    tolerance: float = TOLERANCE
    options: SimOptions = field(default_factory=SimOptions)

    def __post_init__(self) -> None:
        widths = tuple(self.widths)
        for w in widths:
            if isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 1:
                raise InvalidInputError(f"widths must be positive integers, got {w!r}")
            check_width(int(w))
        if len(set(widths)) < 2:
            raise InvalidInputError("a coord check needs at least two distinct widths")
        object.__setattr__(self, "widths", tuple(sorted({int(w) for w in widths})))
        for name in ("seeds", "steps", "depth", "batch_size", "fit_widths"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(
                    f"{name} must be a positive integer, got {value!r}"
                )
        if self.fit_widths < 2:
            raise InvalidInputError("fit_widths must be at least 2")
        if self.depth < 2:
            raise InvalidInputError(f"depth must be at least 2, got {self.depth}")
        if not (isinstance(self.lr, int | float) and 0 < self.lr < math.inf):
            raise InvalidInputError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 < self.confidence < 1:
            raise InvalidInputError(
                f"confidence must lie in (0, 1), got {self.confidence!r}"
            )
        object.__setattr__(self, "dtype", dtype_name(self.dtype))

    def to_json(self) -> dict:
        return {
            "seeds": self.seeds,
            "steps": self.steps,
            "depth": self.depth,
            "activation": self.activation,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "fit_widths": self.fit_widths,
            "confidence": self.confidence,
            "tolerance": self.tolerance,
        }


@dataclass
class QuantityFit:
    """One fitted exponent next to its prediction.

    Attributes:
        name, layer, step: which quantity, where and after how many steps.
        measured_exponent: mean log-log slope over seeds (None: nothing to fit).
        ci_low, ci_high: its confidence interval (None: undefined, as for one seed
            at two widths, or nothing fitted).
        predicted_exponent: the engine's exponent (None: no prediction).
        agrees: whether they match (None without a prediction; False with a
            prediction but no fitted exponent).
        widths: the widths the fit used.
        diverged: True when divergences left fewer than two widths to fit.
    """

    name: str
    layer: int
    step: int
    measured_exponent: float | None
    ci_low: float | None
    ci_high: float | None
    predicted_exponent: Fraction | None
    agrees: bool | None
    widths: list[int]
    diverged: bool = False

    @property
    def judged(self) -> bool:
        """Whether a fitted exponent was compared with a prediction."""
        return (
            self.predicted_exponent is not None and self.measured_exponent is not None
        )

    def to_json(self) -> dict:
        pred = self.predicted_exponent
        return {
            "name": self.name,
            "layer": self.layer,
            "step": self.step,
            "measured_exponent": self.measured_exponent,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "predicted_exponent": None if pred is None else format_exponent(pred),
            "agrees": bool(self.agrees) if self.agrees is not None else False,
            # whether "agrees" compares a fitted exponent with a prediction
            "judged": self.judged,
            "fit_widths": self.widths,
            "diverged": self.diverged,
        }


@dataclass
class CoordCheckResult:
    """Sizes, divergences and fits of one coord check.

    Attributes:
        config, param, settings: what ran.
        data_name: the dataset's name.
        widths: the widths, ascending.
        sizes: (quantity, layer) -> array (widths, seeds, steps + 1) of RMS sizes,
            NaN after a divergence (deltas are 0 at step 0).
        diverged: one dict (width, seed, step) per diverged run.
        fits: one ``QuantityFit`` per reported quantity.
        n_computed: widths measured by this run (the others came from the cache).
        notes: what the reader should know about the predictions.
    """

    config: MethodConfig
    param: Parameterization
    settings: CoordCheckSettings
    data_name: str
    widths: list[int]
    sizes: dict[Key, np.ndarray]
    diverged: list[dict]
    fits: list[QuantityFit]
    n_computed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def all_agree(self) -> bool:
        """True when every fit with a prediction agrees."""
        return all(f.agrees for f in self.fits if f.predicted_exponent is not None)

    def to_json(self) -> dict:
        return {
            "method": self.config.method,
            "options": self.config.options(),
            "parameterization": self.param.to_json(),
            "data": self.data_name,
            **self.settings.to_json(),
            "widths": list(self.widths),
            "quantities": [f.to_json() for f in self.fits],
            "all_agree": self.all_agree,
            "diverged": self.diverged,
            "notes": list(self.notes),
            "sizes": [
                {
                    "name": name,
                    "layer": layer,
                    "rms": seed_means(values),
                }
                for (name, layer), values in self.sizes.items()
            ],
        }

    def table(self) -> str:
        """A plain-text table: quantity, measured slope and interval, prediction."""
        head = (
            f"{'quantity':<10}{'layer':>6}{'step':>6}{'measured':>10}"
            f"{'95% CI':>18}{'predicted':>11}  verdict"
        )
        rows = [head, "-" * len(head)]
        for fit in self.fits:
            measured = (
                "-"
                if fit.measured_exponent is None
                else f"{fit.measured_exponent:+.3f}"
            )
            ci = (
                "-"
                if fit.ci_low is None
                else f"[{fit.ci_low:+.2f}, {fit.ci_high:+.2f}]"
            )
            pred = (
                "-"
                if fit.predicted_exponent is None
                else format_exponent(fit.predicted_exponent)
            )
            verdict = {True: "agree", False: "DISAGREE", None: "no prediction"}[
                fit.agrees
            ]
            if fit.diverged:
                verdict = "diverged"
            elif fit.measured_exponent is None and fit.predicted_exponent is not None:
                verdict = "not fitted"  # no exponent to compare, so no disagreement

            rows.append(
                f"{fit.name:<10}{fit.layer:>6}{fit.step:>6}{measured:>10}{ci:>18}"
                f"{pred:>11}  {verdict}"
            )
        for d in self.diverged:
            rows.append(
                f"diverged: width {d['width']}, seed {d['seed']}, step {d['step']}"
            )
        rows += [f"note: {note}" for note in self.notes]
        return "\n".join(rows)


def coord_check(
    config: MethodConfig,
    param: Parameterization,
    data,
    *,
    settings: CoordCheckSettings | None = None,
    predicted: Mapping[Key, Fraction] | None = None,
    notes: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = 1,
    scheduler: str | None = None,
) -> CoordCheckResult:
    """Measure sizes at every width and compare fitted exponents with predictions.

    Args:
        config: the learning rule.
        param: the parameterization.
        data: a ``Dataset`` (x_train, y_train; ``name``).
        settings: widths, seeds, steps, network and fit settings.
        predicted: (quantity, layer) -> exponent, or (quantity, layer, step) for
            one step; None asks the engine (``engine_predictions``, which also
            supplies the notes).
        notes: lines about the given predictions, kept in the result.
        progress: called with the number of steps of each width as it is measured
            (or found in the cache), for a progress bar over widths x steps.
        cache_dir: directory of measured widths (None: keep nothing).
        workers: local processes (1: this process; None: the usable CPUs).
        scheduler: address of a Dask scheduler to run the widths on instead.

    Returns:
        The ``CoordCheckResult``.

    Raises:
        InvalidInputError: for data that worker processes cannot reload by name, or
            what ``run_sweep`` rejects.
        MuptheoryError: when measuring a width failed.
    """
    settings = settings or CoordCheckSettings()
    notes = list(notes)
    if predicted is None:
        predicted, engine_notes = engine_predictions(
            config, param, depth=settings.depth, activation=settings.activation
        )
        notes += engine_notes
    sizes, diverged, n_computed = _measure_sweep(
        config,
        param,
        data,
        settings=settings,
        progress=progress,
        cache_dir=cache_dir,
        workers=workers,
        scheduler=scheduler,
    )
    fits = fit_all(sizes, settings, predicted)
    return CoordCheckResult(
        config=config,
        param=param,
        settings=settings,
        data_name=str(getattr(data, "name", "data")),
        widths=list(settings.widths),
        sizes=sizes,
        diverged=diverged,
        fits=fits,
        n_computed=n_computed,
        notes=notes,
    )


# -- measuring ------------------------------------------------------------------------


def measure_sizes(
    config: MethodConfig,
    param: Parameterization,
    data,
    *,
    settings: CoordCheckSettings,
    progress: Callable[[int], None] | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = 1,
    scheduler: str | None = None,
) -> tuple[dict[Key, np.ndarray], list[dict]]:
    """RMS sizes per (quantity, layer) as arrays (widths, seeds, steps + 1).

    All seeds of a width run together (vmapped); every seed sees the same batches.
    ``cache_dir``, ``workers`` and ``scheduler`` are as in ``coord_check``.
    """
    sizes, diverged, _ = _measure_sweep(
        config,
        param,
        data,
        settings=settings,
        progress=progress,
        cache_dir=cache_dir,
        workers=workers,
        scheduler=scheduler,
    )
    return sizes, diverged


def _measure_sweep(
    config, param, data, *, settings, progress, cache_dir, workers, scheduler
) -> tuple[dict[Key, np.ndarray], list[dict], int]:
    """``measure_sizes`` plus the number of widths computed (not cached)."""
    from muptheory.sweeps import run_sweep

    s = settings
    x_all = np.asarray(data.x_train)
    if x_all.shape[0] < s.batch_size:
        raise InvalidInputError(
            f"batch_size {s.batch_size} exceeds the {x_all.shape[0]} training samples"
        )
    # the network's shapes and activation, checked once before any width runs
    Architecture(
        width=max(s.widths),
        depth=s.depth,
        input_dim=int(x_all.shape[1]),
        n_outputs=int(np.asarray(data.y_train).shape[1]),
        activation=s.activation,
    )
    in_process = scheduler is None and workers == 1
    name, fingerprint = _data_identity(data, reloadable=not in_process)
    shared = {
        "method": config.method,
        "options": config.options(),
        "param": param.to_json(),
        "data": name,
        "data_fingerprint": fingerprint,
        "seeds": s.seeds,
        "steps": s.steps,
        "depth": s.depth,
        "activation": s.activation,
        "lr": float(s.lr),
        "batch_size": s.batch_size,
        "dtype": s.dtype,
        "sim_options": dataclasses.asdict(s.options),
    }
    # widest first: they take longest
    cells = [{**shared, "width": width} for width in reversed(s.widths)]
    _in_process_data[fingerprint] = data
    try:
        results = run_sweep(
            coordcheck_cell,
            cells,
            cache_dir=cache_dir,
            workers=workers,
            scheduler=scheduler,
            progress=None if progress is None else lambda _: progress(s.steps),
            salt=CELL_SALT,
            jax_cache=True,
        )
    finally:
        _in_process_data.pop(fingerprint, None)
    failed = [r for r in results if not r.ok]
    if failed:
        raise MuptheoryError(
            f"coord check at width {failed[0].params['width']} failed: "
            f"{failed[0].error}"
        )
    keys = _keys(s.depth)
    sizes = {k: np.full((len(s.widths), s.seeds, s.steps + 1), np.nan) for k in keys}
    diverged: list[dict] = []
    by_width = {r.params["width"]: r.value for r in results}
    for wi, width in enumerate(s.widths):
        value = by_width[width]
        for name_, layer in keys:
            sizes[(name_, layer)][wi] = np.array(
                value["sizes"][f"{name_}/{layer}"], dtype=float
            )
        diverged += [{"width": width, **event} for event in value["diverged"]]
    n_computed = sum(not r.cached for r in results)
    return sizes, diverged, n_computed


# -- one width, as a sweep cell ----------------------------------------------------------

# Data of sweeps running in this process, by fingerprint: in-process cells use the
# caller's object as it is, whatever its origin.
_in_process_data: dict[str, Any] = {}


def coordcheck_cell(
    *,
    method: str,
    options: Mapping[str, Any],
    param: Mapping[str, Any],
    width: int,
    data: str,
    data_fingerprint: str,
    seeds: int,
    steps: int,
    depth: int,
    activation: str,
    lr: float,
    batch_size: int,
    dtype: str,
    sim_options: Mapping[str, Any],
) -> dict[str, Any]:
    """Measure every size of every seed and step at one width (a sweep task).

    Args:
        method, options: the learning rule, as ``MethodConfig.options()`` writes it.
        param: the parameterization, as ``Parameterization.to_json()`` writes it.
        width: the hidden width.
        data, data_fingerprint: the data set's name or path, reloaded with split
            seed 0 unless this process holds data of that fingerprint.
        seeds, steps, depth, activation, lr, batch_size, dtype: as in
            ``CoordCheckSettings``; ``sim_options``: its ``SimOptions`` as a dict.

    Returns:
        ``{"sizes": {"name/layer": [[size per step 0..steps] per seed]},
        "diverged": [{"seed", "step"}, ...]}``, sizes None after a divergence.
    """
    dataset = _in_process_data.get(data_fingerprint)
    if dataset is None:
        from muptheory.data import load_dataset

        dataset = load_dataset(data, seed=0)
        if _fingerprint(dataset) != data_fingerprint:
            raise InvalidInputError(
                f"data {data!r} loaded in this worker differs from the caller's"
            )
    settings = CoordCheckSettings(  # its default widths are not used
        seeds=seeds,
        steps=steps,
        depth=depth,
        activation=activation,
        lr=lr,
        batch_size=batch_size,
        dtype=dtype,
        options=SimOptions(**sim_options),
    )
    sizes, diverged = _measure_width(
        config_from_options(method, options),
        Parameterization.from_json(dict(param)),
        dataset,
        width=width,
        settings=settings,
    )
    return {
        "sizes": {
            f"{name}/{layer}": [
                [None if np.isnan(v) else float(v) for v in per_seed]
                for per_seed in values
            ]
            for (name, layer), values in sizes.items()
        },
        "diverged": diverged,
    }


def _measure_width(
    config: MethodConfig,
    param: Parameterization,
    data,
    *,
    width: int,
    settings: CoordCheckSettings,
) -> tuple[dict[Key, np.ndarray], list[dict]]:
    """Sizes (seeds, steps + 1) at one width and the (seed, step) of divergences."""
    s = settings
    x_all, y_all = np.asarray(data.x_train), np.asarray(data.y_train)
    order = np.random.default_rng(0).permutation(x_all.shape[0])
    batches = [
        order[(t * s.batch_size + np.arange(s.batch_size)) % x_all.shape[0]]
        for t in range(s.steps)
    ]
    sizes = {k: np.full((s.seeds, s.steps + 1), np.nan) for k in _keys(s.depth)}
    diverged: list[dict] = []
    arch = Architecture(
        width=width,
        depth=s.depth,
        input_dim=x_all.shape[1],
        n_outputs=y_all.shape[1],
        activation=s.activation,
    )
    sim = Simulator(config, param, arch, lr=s.lr, dtype=s.dtype, options=s.options)
    with precision(sim.dtype) as jdtype:
        probe = jnp.asarray(x_all[batches[0]], jdtype)
        measure = jax.jit(jax.vmap(_measure(sim), in_axes=(0, 0, None)))
        state0 = sim.init_many(range(s.seeds))
        state = state0
        alive = np.ones(s.seeds, bool)
        _store(sizes, 0, measure(state, state0, probe), alive)
        for t in range(1, s.steps + 1):
            b = batches[t - 1]
            state, info = sim.step_many(state, x_all[b], y_all[b])
            values = measure(state, state0, probe)
            finite = np.isfinite(np.asarray(info.loss)) & np.asarray(_all_finite(state))
            finite &= np.all(
                [np.isfinite(np.asarray(v)) for v in values.values()], axis=0
            )
            for seed in np.flatnonzero(alive & ~finite):
                diverged.append({"seed": int(seed), "step": t})
                logger.info("width %d seed %d diverged at step %d", width, seed, t)
            alive &= finite
            _store(sizes, t, values, alive)
    return sizes, diverged


def _data_identity(data, *, reloadable: bool) -> tuple[str, str]:
    """The data's name (a path made absolute) and fingerprint.

    With ``reloadable``, checks that ``load_dataset(name, seed=0)`` gives the same
    training set, as worker processes will load it that way.
    """
    from muptheory.data import EMBEDDED, load_dataset

    name = str(getattr(data, "name", ""))
    if name not in EMBEDDED and Path(name).is_dir():
        name = str(Path(name).resolve())
    fingerprint = _fingerprint(data)
    if reloadable:
        try:
            same = _fingerprint(load_dataset(name, seed=0)) == fingerprint
        except MuptheoryError:
            same = False
        if not same:
            raise InvalidInputError(
                f"data {name!r} is not what load_dataset({name!r}, seed=0) gives, "
                "so worker processes cannot reload it; run with workers=1"
            )
    return name, fingerprint


def _fingerprint(data) -> str:
    """SHA-256 of the training inputs and targets (shape, dtype and bytes)."""
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype.str}".encode("ascii"))
        digest.update(array.tobytes())
    return digest.hexdigest()


def _keys(depth: int) -> list[Key]:
    keys: list[Key] = []
    keys += [("h", k) for k in range(1, depth)]
    keys += [("delta_h", k) for k in range(1, depth)]
    keys += [("update", k) for k in range(1, depth + 1)]
    keys += [("f", depth), ("delta_f", depth)]
    return keys


def _measure(sim: Simulator):
    """Per seed: (state, state0, probe x) -> {(quantity, layer): RMS size}."""
    phi = activation_fn(sim.arch.activation)
    depth = sim.arch.depth

    def measure(state: TrainState, state0: TrainState, x):
        Ws, W0s = sim.effective_traced(state), sim.effective_traced(state0)
        now, init = forward(Ws, x, phi), forward(W0s, x, phi)
        out = {}
        for k in range(1, depth):
            out[("h", k)] = rms(now.inputs[k])
            out[("delta_h", k)] = rms(now.inputs[k] - init.inputs[k])
        for k in range(1, depth + 1):
            out[("update", k)] = rms(now.inputs[k - 1] @ (Ws[k - 1] - W0s[k - 1]).T)
        out[("f", depth)] = rms(now.output)
        out[("delta_f", depth)] = rms(now.output - init.output)
        return out

    return measure


def _all_finite(state: TrainState):
    leaves = [
        jnp.isfinite(w).reshape(w.shape[0], -1).all(axis=1) for w in state.weights
    ]
    return jnp.stack(leaves).all(axis=0)


def _store(sizes, t: int, values, alive: np.ndarray) -> None:
    for key, value in values.items():
        sizes[key][:, t] = np.where(alive, np.asarray(value, dtype=float), np.nan)


# -- fitting ----------------------------------------------------------------------------


def fit_exponent(
    widths: Sequence[int], values: np.ndarray, *, confidence: float = 0.95
) -> tuple[float, float | None, float | None] | None:
    """Log-log slope of size against width with a confidence interval over seeds.

    Args:
        widths: the widths (n,).
        values: positive sizes (n, seeds); seeds with a non-finite or zero value are
            dropped.
        confidence: interval level.

    Returns:
        (slope, low, high), or None when fewer than two widths or no seed remain.
        With several seeds the slope is the mean of per-seed least-squares slopes and
        the interval is mean +- t_{(1+confidence)/2, k-1} sd / sqrt(k); with one seed
        it is the regression's standard error (t with n - 2 degrees of freedom).
        One seed at two widths leaves no degree of freedom: low and high are None.
    """
    values = np.asarray(values, dtype=float)
    good = np.all(np.isfinite(values) & (values > 0), axis=0)
    if len(widths) < 2 or not good.any():
        return None
    logw = np.log(np.asarray(widths, dtype=float))
    logv = np.log(values[:, good])
    slopes = np.array(
        [np.polyfit(logw, logv[:, k], 1)[0] for k in range(logv.shape[1])]
    )
    q = (1 + confidence) / 2
    if slopes.size >= 2:
        mean = float(np.mean(slopes))
        half = (
            stats.t.ppf(q, slopes.size - 1)
            * np.std(slopes, ddof=1)
            / np.sqrt(slopes.size)
        )
    else:
        mean = float(slopes[0])
        if len(widths) > 2:
            reg = stats.linregress(logw, logv[:, 0])
            half = stats.t.ppf(q, len(widths) - 2) * reg.stderr
        else:
            return mean, None, None
    if not math.isfinite(half):
        return mean, None, None
    return mean, float(mean - half), float(mean + half)


def agrees(
    measured: float,
    low: float | None,
    high: float | None,
    predicted: Fraction,
    *,
    tolerance: float,
) -> bool:
    """Within the interval, or within ``tolerance`` when the interval is tighter or
    undefined (``low``, ``high`` None)."""
    width = 0.0 if low is None or high is None else high - low
    half = max(width / 2, tolerance)
    return abs(measured - float(predicted)) <= half + 1e-12


def fit_all(
    sizes: Mapping[Key, np.ndarray],
    settings: CoordCheckSettings,
    predicted: Mapping[Key, Fraction] | None,
) -> list[QuantityFit]:
    """Fit each reported quantity: h and f at init, the changes at steps 1..T."""
    widths = np.asarray(settings.widths)
    fits = []
    for (name, layer), values in sizes.items():
        steps = [0] if name in ("h", "f") else range(1, settings.steps + 1)
        for t in steps:
            # a prediction for this very step (the first step differs from later
            # ones when the readout's first update changes the backward signal)
            pred = (
                None
                if predicted is None
                else predicted.get((name, layer, t), predicted.get((name, layer)))
            )
            at = values[:, :, t]
            # widths where every seed is still alive; then the widest of those
            usable = np.flatnonzero(np.all(np.isfinite(at), axis=1))
            chosen = usable[-settings.fit_widths :]
            fit = None
            if chosen.size >= 2:
                fit = fit_exponent(
                    widths[chosen], at[chosen], confidence=settings.confidence
                )
            if fit is None:
                if chosen.size < 2:
                    warnings.warn(
                        f"{name}_{layer} at step {t}: fewer than two widths without "
                        "divergence; no exponent fitted",
                        stacklevel=2,
                    )
                fits.append(
                    QuantityFit(
                        name,
                        layer,
                        t,
                        None,
                        None,
                        None,
                        pred,
                        False if pred is not None else None,
                        [int(w) for w in widths[chosen]],
                        diverged=chosen.size < 2,
                    )
                )
                continue
            slope, low, high = fit
            verdict = None
            if pred is not None:
                verdict = agrees(slope, low, high, pred, tolerance=settings.tolerance)
            fits.append(
                QuantityFit(
                    name,
                    layer,
                    t,
                    slope,
                    low,
                    high,
                    pred,
                    verdict,
                    [int(w) for w in widths[chosen]],
                )
            )
    return fits


def seed_means(values: np.ndarray) -> list[list[float | None]]:
    """Mean over seeds of (widths, seeds, steps) sizes, None where no seed is left."""
    out = []
    for per_width in np.asarray(values, dtype=float):
        row = []
        for column in per_width.T:
            finite = column[np.isfinite(column)]
            row.append(float(finite.mean()) if finite.size else None)
        out.append(row)
    return out


# activations under which "phi keeps the size" of a growing pre-activation
SIZE_KEEPING = ("linear", "relu")


def engine_predictions(
    config, param, *, depth: int, activation: str = "linear"
) -> tuple[dict, list[str]]:
    """The engine's exponents and the notes on what it leaves unpredicted.

    Exponents are keyed (quantity, layer, 1) for the first step and (quantity,
    layer) for every later step and for the values at init. The engine sizes a
    later step from the Theta(1) output error and bounded weight changes of a
    stable run, so:

    - a first step that already makes a change grow with the width (SP with
      c = 0: the output change grows like M) leaves the later steps unpredicted;
      their sizes compound step after step;
    - an initialization that fails desideratum 1 leaves every step unpredicted,
      and under a saturating ``activation`` the sizes at init too (tanh caps a
      blown-up pre-activation at Theta(1); the calculus lets it keep its size).
    """
    from muptheory.symbolic import coord_exponents
    from muptheory.symbolic.engine import initialization, stable_initialization

    if not stable_initialization(initialization(config, param)[0]):
        keeps = activation in SIZE_KEEPING
        which = (
            "only the sizes at initialization are predicted"
            if keeps
            else f"nothing is predicted ({activation} saturates where the calculus "
            "lets a blown-up pre-activation keep its size)"
        )
        note = (
            f"{which}: the given b fails desideratum 1 (pre-activations Theta(1), "
            "output O(1)), and the engine sizes training steps from a stable "
            "initialization"
        )
        if not keeps:
            return {}, [note]
    else:
        note = None
    first = coord_exponents(config, param, depth=depth, step=1)
    later = coord_exponents(config, param, depth=depth)
    blown = _blown_up(first)
    if blown:
        later = {key: e for key, e in later.items() if key[0] in ("h", "f")}
        (name, layer), e = max(blown.items(), key=lambda item: item[1])
        note = note or (
            f"steps after the first are measured, not predicted: {name} of layer "
            f"{layer} grows like M^({e}) in the first step, and the engine sizes "
            "later steps from the Theta(1) output error of a stable run"
        )
    predicted = {**later, **{(n, layer, 1): e for (n, layer), e in first.items()}}
    return predicted, [] if note is None else [note]


def _blown_up(first: Mapping[Key, Fraction]) -> dict[Key, Fraction]:
    """The first step's changes that grow with the width."""
    return {key: e for key, e in first.items() if key[0] not in ("h", "f") and e > 0}
