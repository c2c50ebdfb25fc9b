"""Coord checks of each method's muP: sampled widths against the derived exponents.

For BP with SGD, GNT, PC (gamma_bar_L = 0 and -1), TP and DTP under their derived
muP, this piece trains tanh MLPs of depth 3 at several widths for a few steps and
fits the width exponent of every layer's activations, their change, each layer's
own update contribution and the output (``muptheory.simulate.coordcheck``). Under
muP every prediction is 0 apart from the initial output (-1/2 with b_L = 1) and
the changes at initialization; agreement means the fitted slope lies in its
confidence interval over seeds or within 0.15 of the prediction.

Writes ``coordcheck_<rule>.png`` and ``coordcheck_<rule>.json`` per rule.

    python derivations/coordchecks.py --out regenerated
"""

from __future__ import annotations

import sys
from typing import Any

from muptheory.derivations.common import (
    Context,
    Finding,
    standalone,
    write_json,
)
from muptheory.io import atomic_write_bytes

# (file stem, title, method, options)
RULES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("bp", "BP with SGD", "bp", {}),
    ("gnt", "GNT", "gnt", {}),
    ("pc", "PC, gamma_bar_L = 0", "pc", {"gamma_bar_last": "0"}),
    ("pc_gn", "PC, gamma_bar_L = -1", "pc", {"gamma_bar_last": "-1"}),
    ("tp", "TP", "tp", {}),
    ("dtp", "DTP", "dtp", {}),
)


def run(ctx: Context) -> list[Finding]:
    from muptheory.cli.common import resolve_parameterization
    from muptheory.data import load_dataset
    from muptheory.methods import MethodConfig
    from muptheory.simulate.coordcheck import CoordCheckSettings, coord_check
    from muptheory.simulate.plot import coord_check_png

    sizes = ctx.sizes
    data = load_dataset(sizes.data, seed=0)
    settings = CoordCheckSettings(
        widths=sizes.coord_widths, seeds=sizes.coord_seeds, steps=sizes.coord_steps
    )
    findings = []
    with ctx.bar(len(RULES) * len(settings.widths), "coordchecks") as bar:
        for stem, title, method, options in RULES:
            config = MethodConfig.create(method, **options)
            result = coord_check(
                config,
                resolve_parameterization("mup", config),
                data,
                settings=settings,
                cache_dir=ctx.cache("coordcheck"),
                workers=ctx.workers,
                scheduler=ctx.scheduler,
                progress=bar.update,
            )
            write_json(ctx.path(f"coordcheck_{stem}.json"), result.to_json())
            atomic_write_bytes(
                ctx.path(f"coordcheck_{stem}.png"), coord_check_png(result)
            )
            findings.append(_finding(stem, title, result, sizes.data))
    return findings


def _finding(stem: str, title: str, result, data: str) -> Finding:
    judged = [f for f in result.fits if f.predicted_exponent is not None]
    agreeing = [f for f in judged if f.agrees]
    worst = max(
        (
            abs(f.measured_exponent - float(f.predicted_exponent))
            for f in judged
            if f.measured_exponent is not None
        ),
        default=None,
    )
    missed = [f"{f.name} layer {f.layer} step {f.step}" for f in judged if not f.agrees]
    summary = (
        f"{title} under its derived muP on {data}: {len(agreeing)} of {len(judged)} "
        f"fitted width exponents (widths {result.widths[0]} to {result.widths[-1]}, "
        f"{result.settings.seeds} seeds, {result.settings.steps} steps) agree with "
        "the exponent engine"
        + ("" if worst is None else f", the largest gap being {worst:.2f}")
        + ". "
        + (
            "Activations, their changes, every layer's update and the output stay "
            "of order one as the width grows, as muP requires."
            if not missed
            else f"Disagreeing: {', '.join(missed)}."
        )
    )
    return Finding(
        piece="coordchecks",
        title=f"Coord check: {title}, muP",
        summary=summary,
        agrees=not missed and not result.diverged,
        figure=f"coordcheck_{stem}.png",
        files=[f"coordcheck_{stem}.json"],
        numbers={"agree": len(agreeing), "judged": len(judged), "largest_gap": worst},
    )


if __name__ == "__main__":
    sys.exit(standalone("coordchecks"))
