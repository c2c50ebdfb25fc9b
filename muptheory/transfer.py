"""Learning-rate transfer: train a grid of (width, learning rate, seed) and compare.

The practical claim of muP is that the best base learning rate eta* of a narrow
network is also (close to) the best of a wide one: under muP, layer l trains with
eta M^{-c_l} and eta*(M) is flat in M; under SP it drifts, or the wide networks
diverge at the narrow networks' eta*. This module measures eta*(M).

Each cell trains one network with ``muptheory.simulate.train`` and is run, cached
and resumed by ``muptheory.sweeps.run_sweep``. For each width, a learning rate's
score is its metric averaged over seeds: the final epoch's mean training loss
(lower is better) or the final test accuracy (higher is better). A learning rate
at which any seed diverged (NaN or infinity, or a final train loss above
``BLOWUP_LOSS``) or whose cell failed (a lost worker) scores worst, so

    eta*(M) = argbest_{eta : no seed diverged} mean_seeds metric(M, eta, seed),

ties going to the smaller learning rate; a width where every rate diverged has no
eta* (None, with a warning). Bad settings are no divergence: they are rejected
before any cell runs, and a cell that raises a project error (``MuptheoryError``)
stops the sweep with that error.

Example (under a ``__main__`` guard, since the cells run in worker processes)::

    config = MethodConfig.create("pc")
    param = derive_mup(config).parameterization.to("fan_in")
    grid = TransferGrid(widths=(64, 128), lrs=(0.25, 0.5, 1.0))
    result = transfer_sweep(config, param, grid, data="digits", workers=2)
    result.best_lr  # {64: 0.5, 128: 0.5}
"""

from __future__ import annotations

import io
import logging
import math
import operator
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muptheory.errors import DivergedError, InvalidInputError, MuptheoryError
from muptheory.io import atomic_write_bytes, figure_format
from muptheory.methods import MethodConfig, config_from_options
from muptheory.parameterization import Parameterization

if TYPE_CHECKING:  # the runner (and NumPy) is imported when a sweep runs
    from muptheory.sweeps import CellResult

logger = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("train_loss", "test_accuracy")
DEFAULT_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
# Six rates doubling from 1/16: on digits they bracket the best rate of each
# method's muP with a tanh MLP of depth 3.
DEFAULT_LRS: tuple[float, ...] = tuple(2.0**k for k in range(-4, 2))
DEFAULT_CACHE_DIR = os.path.join(".muptheory-cache", "transfer")
# Version of the cell's code; bump it when ``transfer_cell`` changes its results.
CELL_SALT = "transfer-cell-1"
# A finished run whose final train loss exceeds this has blown up and scores as
# diverged. The loss is 1/2 ||f - y||^2 per sample on one-hot targets: 1/2 for the
# zero output, about (n_outputs / 2) rms(f)^2 for a fresh network. Even an output
# layer of SP at width 2^14 (rms(f) ~ sqrt(M) = 128, 10 classes) stays below 10^5;
# 10^6 means output coordinates of size ~450, which no trained network reaches
# (SP blow-ups on MNIST end near 10^30 or overflow).
BLOWUP_LOSS = 1e6


@dataclass(frozen=True)
class TransferGrid:
    """The sweep's axes and the training settings shared by every cell.

    Attributes:
        widths: hidden widths M.
        lrs: base learning rates eta (layer l uses eta M^{-c_l}).
        seeds: seeds per (width, lr), numbered 0 .. seeds - 1.
        epochs: passes over the training subset.
        depth: weight layers L.
        activation: nonlinearity.
        batch_size: samples per step.
        n_train: training samples kept (None: all).
        dtype: ``float32`` or ``float64``.
    """

    widths: tuple[int, ...] = DEFAULT_WIDTHS
    lrs: tuple[float, ...] = DEFAULT_LRS
    seeds: int = 1
    epochs: int = 1
    depth: int = 3
    activation: str = "tanh"
    batch_size: int = 32
    n_train: int | None = 1024
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if not self.widths:
            raise InvalidInputError("the width list is empty; give at least one width")
        if not self.lrs:
            raise InvalidInputError(
                "the learning-rate list is empty; give at least one positive rate"
            )
        for width in self.widths:
            _check_positive_int("width", width)
        for lr in self.lrs:
            if isinstance(lr, bool) or not isinstance(lr, int | float):
                raise InvalidInputError(f"learning rate {lr!r} is not a number")
            if not (math.isfinite(lr) and lr > 0):
                raise InvalidInputError(
                    f"learning rate {lr!r} is not allowed; rates must be positive"
                )
        for name in ("seeds", "epochs", "depth", "batch_size"):
            _check_positive_int(name, getattr(self, name))
        if self.depth < 2:
            raise InvalidInputError(f"depth must be at least 2, got {self.depth}")
        if self.n_train is not None:
            _check_positive_int("n_train", self.n_train)
            if self.batch_size > self.n_train:
                raise InvalidInputError(
                    f"batch_size {self.batch_size} exceeds n_train {self.n_train}; "
                    "a step needs a full batch"
                )
        object.__setattr__(self, "widths", tuple(sorted(set(self.widths))))
        object.__setattr__(self, "lrs", tuple(sorted({float(x) for x in self.lrs})))


@dataclass(frozen=True)
class TransferResult:
    """A finished transfer sweep.

    Attributes:
        method: the learning rule's name.
        param: the parameterization's name.
        data: the data set's name or path.
        metric: ``train_loss`` or ``test_accuracy``.
        grid: the sweep's axes and settings.
        cells: one JSON record per (width, lr, seed): the cell's axes, its
            ``train_loss``, ``test_loss``, ``test_accuracy`` (null where undefined),
            ``diverged``, ``diverged_step``, ``error`` and ``cached``.
        best_lr: eta*(M) per width, None where every rate diverged.
        options: the rule's options, as ``MethodConfig.options()`` writes them.
        parameterization: the swept parameterization's exponents, as
            ``Parameterization.to_json()`` writes them.
    """

    method: str
    param: str
    data: str
    metric: str
    grid: TransferGrid
    cells: list[dict[str, Any]]
    best_lr: dict[int, float | None]
    options: dict[str, Any] = field(default_factory=dict)
    parameterization: dict[str, Any] = field(default_factory=dict)

    @property
    def n_computed(self) -> int:
        """Cells computed by this run (not read from the cache)."""
        return sum(not cell["cached"] for cell in self.cells)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "options": dict(self.options),
            "param": self.param,
            "parameterization": dict(self.parameterization),
            "data": self.data,
            "metric": self.metric,
            "widths": list(self.grid.widths),
            "lrs": list(self.grid.lrs),
            "seeds": self.grid.seeds,
            "epochs": self.grid.epochs,
            "best_lr": {str(w): lr for w, lr in self.best_lr.items()},
            "cells": self.cells,
        }


# -- one cell ---------------------------------------------------------------------------


def transfer_cell(
    *,
    method: str,
    options: Mapping[str, Any],
    param: Mapping[str, Any],
    width: int,
    lr: float,
    seed: int,
    epochs: int,
    data: str,
    n_train: int | None,
    depth: int,
    activation: str,
    batch_size: int,
    dtype: str,
) -> dict[str, Any]:
    """Train one network and report its final numbers (a sweep task; pure, picklable).

    Args:
        method, options: the learning rule, as ``MethodConfig.options()`` writes it.
        param: the parameterization, as ``Parameterization.to_json()`` writes it.
        width, lr, seed, epochs, depth, activation, batch_size, dtype: the run.
        data, n_train: the data set and the training subset kept (split seed 0).

    Returns:
        ``{"train_loss", "test_loss", "test_accuracy"}`` of the last epoch (None when
        the run diverged before finishing one), ``"diverged"``, ``"diverged_step"``
        (1-based, or None) and ``"steps"`` completed.
    """
    from muptheory.data import load_dataset
    from muptheory.simulate.train import train

    config = config_from_options(method, options)
    parameterization = Parameterization.from_json(dict(param))
    dataset = load_dataset(data, seed=0, n_train=n_train)
    run = train(
        config,
        parameterization,
        width=width,
        depth=depth,
        activation=activation,
        data=dataset,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        dtype=dtype,
    )
    finished = not run.diverged
    return {
        "train_loss": run.train_loss[-1] if finished else None,
        "test_loss": run.test_loss[-1] if finished else None,
        "test_accuracy": run.test_accuracy[-1] if finished else None,
        "diverged": run.diverged,
        "diverged_step": run.diverged_step,
        "steps": run.steps,
    }


# -- the grid -------------------------------------------------------------------------


def transfer_cells(
    config: MethodConfig, param: Parameterization, grid: TransferGrid, *, data: str
) -> list[dict[str, Any]]:
    """The sweep's cells, width-major, then learning rate, then seed."""
    shared = {
        "method": config.method,
        "options": config.options(),
        "param": param.to_json(),
        "epochs": grid.epochs,
        "data": data,
        "n_train": grid.n_train,
        "depth": grid.depth,
        "activation": grid.activation,
        "batch_size": grid.batch_size,
        "dtype": grid.dtype,
    }
    return [
        {**shared, "width": width, "lr": lr, "seed": seed}
        for width in grid.widths
        for lr in grid.lrs
        for seed in range(grid.seeds)
    ]


def transfer_sweep(
    config: MethodConfig,
    param: Parameterization,
    grid: TransferGrid,
    *,
    data: str,
    metric: str = "train_loss",
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[CellResult], None] | None = None,
) -> TransferResult:
    """Train every (width, lr, seed) cell and find the best learning rate per width.

    Args:
        config: the learning rule.
        param: the parameterization (any convention; cells store it as JSON).
        grid: the axes and training settings.
        data: ``digits``, ``mnist5k``, ``synthetic`` or a directory of IDX files (a
            path is made absolute so that workers and the cache key agree).
        metric: ``train_loss`` or ``test_accuracy``.
        cache_dir, workers, scheduler, progress: passed to ``run_sweep``.

    Returns:
        The ``TransferResult``.

    Raises:
        InvalidInputError: for an unknown metric or data set, settings the data or
            the network cannot take (a batch larger than the training set, a width
            too large), or what ``run_sweep`` rejects (an unreachable scheduler, an
            unwritable cache directory).
        MuptheoryError: when a cell raised one (bad input that only training
            found); a diverged run is a result, not an error.
    """
    from muptheory.sweeps import run_sweep

    check_metric(metric)
    data = _data_name(data)
    check_grid(grid, data=data)
    cells = transfer_cells(config, param, grid, data=data)
    # Widest first, since they take longest; and a width's cells to one worker,
    # which compiles the training step once for all of their learning rates.
    order = sorted(range(len(cells)), key=lambda i: -cells[i]["width"])
    results = run_sweep(
        transfer_cell,
        [cells[i] for i in order],
        cache_dir=cache_dir,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        salt=CELL_SALT,
        jax_cache=True,
        group=operator.itemgetter("width"),
    )
    for result in results:
        if result.user_error and not result.error.startswith(DivergedError.__name__):
            where = ", ".join(
                f"{k} {result.params[k]}" for k in ("width", "lr", "seed")
            )
            raise MuptheoryError(f"transfer cell ({where}) failed: {result.error}")
    lost = [result for result in results if not result.ok]
    if lost:
        warnings.warn(
            f"{len(lost)} of {len(results)} cells failed and score like diverged "
            f"ones; the first: {lost[0].error}",
            stacklevel=2,
        )
    records: list[dict[str, Any]] = [{} for _ in cells]
    for i, result in zip(order, results, strict=True):
        records[i] = _record(result)
    param_name = param.name or "custom"
    return TransferResult(
        method=config.method,
        param=param_name,
        data=data,
        metric=metric,
        grid=grid,
        cells=records,
        best_lr=best_learning_rates(
            records,
            metric=metric,
            widths=grid.widths,
            label=f"{rule_label(config.method, config.options())}, {param_name}",
        ),
        options=config.options(),
        parameterization=param.to_json(),
    )


def rule_label(method: str, options: Mapping[str, Any]) -> str:
    """``method (options that differ from the method's defaults)``."""
    defaults = MethodConfig(method).options()
    changed = [f"{k}={v}" for k, v in options.items() if defaults.get(k) != v]
    return method + (f" ({', '.join(changed)})" if changed else "")


def check_grid(grid: TransferGrid, *, data: str) -> None:
    """Reject settings under which every cell would fail, before any cell runs.

    Raises:
        InvalidInputError: when ``data`` cannot be loaded, has fewer training
            samples than a batch, or a width, the depth or the activation do not
            make a network (``Architecture``) for its inputs and classes.
    """
    from muptheory.data import load_dataset
    from muptheory.simulate.network import Architecture

    dataset = load_dataset(data, seed=0, n_train=grid.n_train)
    if grid.batch_size > dataset.n_train:
        raise InvalidInputError(
            f"batch_size {grid.batch_size} exceeds the {dataset.n_train} training "
            f"samples of {data!r}"
        )
    for width in grid.widths:
        Architecture(
            width=width,
            depth=grid.depth,
            input_dim=dataset.input_dim,
            n_outputs=int(dataset.y_train.shape[1]),
            activation=grid.activation,
        )


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise InvalidInputError(
            f"unknown metric {metric!r}; use one of {', '.join(METRICS)}"
        )


def _data_name(data: str) -> str:
    from muptheory.data import EMBEDDED

    if data in EMBEDDED:
        return data
    path = Path(data)
    if not path.is_dir():
        raise InvalidInputError(
            f"unknown data {data!r}; use {', '.join(EMBEDDED)} or a directory of "
            "IDX files"
        )
    return str(path.resolve())


def _record(result: CellResult) -> dict[str, Any]:
    axes = {k: result.params[k] for k in ("width", "lr", "seed")}
    if not result.ok:
        # A failed cell (the task raised) scores like a diverged one.
        return {
            **axes,
            "train_loss": None,
            "test_loss": None,
            "test_accuracy": None,
            "diverged": False,
            "diverged_step": None,
            "error": result.error,
            "cached": False,
        }
    return {**axes, **result.value, "error": None, "cached": result.cached}


# -- the best learning rate -----------------------------------------------------------


def seed_scores(
    cells: Iterable[Mapping[str, Any]], *, metric: str
) -> dict[tuple[int, float], float | None]:
    """The metric of each (width, lr) averaged over seeds; None if any seed failed.

    A seed fails when it diverged, its task raised, its metric is missing or not
    finite, or it blew up (see ``blew_up``).
    """
    check_metric(metric)
    values: dict[tuple[int, float], list[float] | None] = {}
    for cell in cells:
        point = (int(cell["width"]), float(cell["lr"]))
        value = cell.get(metric)
        failed = bool(cell.get("diverged")) or bool(cell.get("error"))
        if failed or value is None or not math.isfinite(value) or blew_up(cell):
            values[point] = None
        elif values.setdefault(point, []) is not None:
            values[point].append(float(value))
    return {p: (sum(v) / len(v) if v else None) for p, v in values.items()}


def blew_up(cell: Mapping[str, Any]) -> bool:
    """Whether a finished cell's final train loss is non-finite or above
    ``BLOWUP_LOSS``: such a run diverged even though NaN or infinity never came."""
    loss = cell.get("train_loss")
    return loss is not None and not (math.isfinite(loss) and loss <= BLOWUP_LOSS)


def best_learning_rates(
    cells: Iterable[Mapping[str, Any]],
    *,
    metric: str = "train_loss",
    widths: Sequence[int] | None = None,
    label: str = "",
) -> dict[int, float | None]:
    """eta*(M) for each width: the best seed-averaged metric, diverged rates worst.

    Args:
        cells: records with ``width``, ``lr``, ``diverged``, the metric and
            optionally ``error``.
        metric: ``train_loss`` (lower is better) or ``test_accuracy`` (higher).
        widths: the widths to report, in order (default: those in ``cells``).
        label: what was swept, named in the warning (method, parameterization).

    Returns:
        ``{width: best lr}``; None (with a warning) where every rate failed. Ties go
        to the smaller learning rate.
    """
    scores = seed_scores(cells, metric=metric)
    sign = 1.0 if metric == "train_loss" else -1.0
    if widths is None:
        widths = sorted({w for w, _ in scores})
    best: dict[int, float | None] = {}
    for width in widths:
        ranked = sorted(
            (sign * score, lr)
            for (w, lr), score in scores.items()
            if w == width and score is not None
        )
        best[width] = ranked[0][1] if ranked else None
        if not ranked:
            where = f"{label}: " if label else ""
            warnings.warn(
                f"{where}every learning rate diverged or failed at width {width}; "
                "it has no best learning rate",
                stacklevel=2,
            )
    return best


# -- the plot -----------------------------------------------------------------------


def transfer_png(result: TransferResult) -> bytes:
    """The transfer plot of ``result`` (see ``draw_transfer``) as PNG bytes."""
    return transfer_figure(result, format="png")


def transfer_figure(result: TransferResult, *, format: str = "png") -> bytes:
    """The transfer plot of ``result`` as a ``png``, ``pdf`` or ``svg`` file's bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    draw_transfer(fig.subplots(), result)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=format, dpi=120)
    return buffer.getvalue()


def draw_transfer(ax, result: TransferResult) -> None:
    """Draw the transfer plot on a matplotlib Axes: seed-mean metric against
    log2(lr), one curve per width.

    Diverged (width, lr) points are left out of the curves and marked with an ``x``
    in a row of their own near the top (train loss) or bottom (accuracy) edge, one
    row per width so that widths do not hide each other; a width that diverged at
    every rate still gets a legend entry. Each width's best rate is a filled circle.
    """
    import matplotlib
    import matplotlib.ticker

    scores = seed_scores(result.cells, metric=result.metric)
    widths = result.grid.widths
    colours = matplotlib.colormaps["viridis"](
        [i / max(1, len(widths) - 1) * 0.9 for i in range(len(widths))]
    )
    loss = result.metric == "train_loss"
    for i, (width, colour) in enumerate(zip(widths, colours, strict=True)):
        points = [(math.log2(lr), scores.get((width, lr))) for lr in result.grid.lrs]
        kept = [(x, y) for x, y in points if y is not None]
        if kept:
            ax.plot(
                *zip(*kept, strict=True), "o-", ms=3, color=colour, label=f"{width}"
            )
        lost = [x for x, y in points if y is None]
        if lost:
            row = 0.97 - 0.035 * i if loss else 0.03 + 0.035 * i
            ax.plot(
                lost,
                [row] * len(lost),
                "x",
                color=colour,
                transform=ax.get_xaxis_transform(),
                label=None if kept else f"{width} (all diverged)",
            )
        best = result.best_lr.get(width)
        if best is not None:
            ax.plot(math.log2(best), scores[(width, best)], "o", ms=7, color=colour)
    if loss:
        ax.set_yscale("log")
    # learning rates are powers of two in practice: whole-number ticks
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("log2 learning rate")
    ax.set_ylabel("final train loss (x: diverged)" if loss else "test acc.")
    ax.set_title(f"{result.method}, {result.param}, {Path(result.data).name}")
    ax.legend(title="width", fontsize="small")


def write_transfer_plot(path: str | os.PathLike, result: TransferResult) -> None:
    """Write the transfer plot to ``path`` atomically, in the format its extension
    names (.png, .pdf or .svg)."""
    atomic_write_bytes(path, transfer_figure(result, format=figure_format(path)))


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
