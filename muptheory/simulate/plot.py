"""Coord-check panels: RMS size against width, one line per training step.

One panel per (quantity, layer), log-log axes, the seed mean of each step drawn as a
line (step 0 is the initialization). Each panel's title carries the fitted exponent of
the last step and the predicted one. Rendering uses matplotlib's Agg backend and
returns the bytes of a PNG, PDF or SVG file, so callers decide where (and how
atomically) to write them.
"""

from __future__ import annotations

import io
import math

import numpy as np

from muptheory.parameterization import format_exponent
from muptheory.simulate.coordcheck import CoordCheckResult, seed_means

_LABELS = {
    "h": "h",
    "delta_h": "Δh",
    "update": "ΔW h",
    "f": "f",
    "delta_f": "Δf",
}


def coord_check_png(result: CoordCheckResult, *, columns: int = 4) -> bytes:
    """Draw the panels of ``result`` and return them as PNG bytes."""
    return coord_check_figure(result, format="png", columns=columns)


def coord_check_figure(
    result: CoordCheckResult, *, format: str = "png", columns: int = 4
) -> bytes:
    """Draw the panels of ``result`` as a ``png``, ``pdf`` or ``svg`` file's bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    keys = list(result.sizes)
    rows = math.ceil(len(keys) / columns)
    fig = Figure(figsize=(3.2 * columns, 2.7 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    widths = np.asarray(result.widths)
    last_fit = {(f.name, f.layer): f for f in result.fits}
    steps = result.settings.steps
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, steps + 1))
    for ax, key in zip(axes.flat, keys, strict=False):
        name, layer = key
        means = np.array(seed_means(result.sizes[key]), dtype=float)
        first = 1 if name in ("delta_h", "update", "delta_f") else 0
        for t in range(first, steps + 1):
            ax.plot(widths, means[:, t], "o-", ms=3, color=colours[t], label=f"t={t}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _at_least_a_decade(ax, means[:, first:])
        ax.set_title(_title(name, layer, last_fit.get(key)), fontsize=8)
        ax.set_xlabel("width", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    if keys:
        axes.flat[0].legend(fontsize=6)
    fig.suptitle(
        f"coord check: {result.config.method}, {result.param.name or 'custom'}, "
        f"{result.data_name}",
        fontsize=10,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format=format, dpi=110)
    return buffer.getvalue()


def _at_least_a_decade(ax, values: np.ndarray) -> None:
    """Let the log axis span at least a factor 10 around the data's geometric
    middle, so that a flat line (a width-independent size) looks flat and seed noise
    is not magnified into a slope."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return
    low, high = positive.min(), positive.max()
    if high / low < 10:
        middle = math.sqrt(low * high)
        ax.set_ylim(middle / math.sqrt(10), middle * math.sqrt(10))


def _title(name: str, layer: int, fit) -> str:
    text = f"{_LABELS[name]}  (layer {layer})"
    if fit is None:
        return text
    measured = "-" if fit.measured_exponent is None else f"{fit.measured_exponent:+.2f}"
    pred = (
        "?"
        if fit.predicted_exponent is None
        else format_exponent(fit.predicted_exponent)
    )
    return f"{text}\nslope {measured} (t={fit.step}), predicted {pred}"
