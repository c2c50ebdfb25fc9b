"""Learning-rate transfer of PC and TP/DTP: their muP against SP.

For each learning rule (PC with gamma_bar_L = 0 and -1, each with and without the
fixed prediction assumption, inference by 20 energy gradient steps; TP; DTP) this
piece sweeps widths and base learning rates under the rule's derived muP and under
SP (b = 1/2 everywhere, one learning rate for every layer), and finds the best rate eta*(M) of each width by the final
training loss (``muptheory.transfer``). muP's promise is that eta*(M) stays put:
the piece calls it transferred when eta* moves by at most one grid step (a factor
2) from the narrowest to the widest width. SP is expected to fail that test, by a
drifting eta* or by wide networks diverging at the narrow networks' eta*.

Writes ``transfer_<rule>.png`` (muP and SP side by side) and ``transfer.json``.

    python derivations/transfer.py --out regenerated --quick
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from muptheory.derivations.common import (
    Context,
    Finding,
    new_figure,
    save_figure,
    standalone,
    write_json,
)

# PC infers by T = 20 gradient steps on the energy from the feed-forward values, as
# PC networks are trained in practice: the tanh equilibrium solver converges only
# linearly at gamma_bar_L = -1 (gamma_L = gamma0 M makes the residual large), which
# costs 100 Gauss-Newton iterations per step at width 2048.
INFERENCE = {"inference": "iterative", "inference_steps": 20}

# (file stem, title, method, options)
RULES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("pc", "PC, gamma_bar_L = 0", "pc", {"gamma_bar_last": "0", **INFERENCE}),
    (
        "pc_fpa",
        "PC with FPA, gamma_bar_L = 0",
        "pc",
        {"gamma_bar_last": "0", "fpa": True, **INFERENCE},
    ),
    ("pc_gn", "PC, gamma_bar_L = -1", "pc", {"gamma_bar_last": "-1", **INFERENCE}),
    (
        "pc_gn_fpa",
        "PC with FPA, gamma_bar_L = -1",
        "pc",
        {"gamma_bar_last": "-1", "fpa": True, **INFERENCE},
    ),
    ("tp", "TP, ridge feedback", "tp", {}),
    ("dtp", "DTP, ridge feedback", "dtp", {}),
)
PARAMS = ("mup", "sp")
METRIC = "train_loss"


def run(ctx: Context) -> list[Finding]:
    from muptheory.cli.common import resolve_parameterization
    from muptheory.methods import MethodConfig
    from muptheory.transfer import TransferGrid, transfer_sweep

    sizes = ctx.sizes
    grid = TransferGrid(
        widths=sizes.transfer_widths,
        lrs=sizes.transfer_lrs,
        seeds=sizes.transfer_seeds,
        epochs=sizes.transfer_epochs,
        n_train=sizes.transfer_n_train,
    )
    cells = len(RULES) * len(PARAMS) * len(grid.widths) * len(grid.lrs) * grid.seeds
    findings, record = [], {}
    with ctx.bar(cells, "transfer") as bar:
        for stem, title, method, options in RULES:
            config = MethodConfig.create(method, **options)
            results = {}
            for name in PARAMS:
                results[name] = transfer_sweep(
                    config,
                    resolve_parameterization(name, config),
                    grid,
                    data=sizes.data,
                    metric=METRIC,
                    cache_dir=ctx.cache("transfer"),
                    workers=ctx.workers,
                    scheduler=ctx.scheduler,
                    progress=lambda _: bar.update(),
                )
            verdict = judge(results["mup"], results["sp"])
            record[stem] = {
                "title": title,
                **verdict,
                "results": {n: r.to_json() for n, r in results.items()},
            }
            plot_rule(ctx.path(f"transfer_{stem}.png"), title, results)
            findings.append(_finding(stem, title, verdict, sizes.data))
    write_json(ctx.path("transfer.json"), record)
    return findings


def judge(mup, sp) -> dict[str, Any]:
    """Did eta* transfer under muP, and did SP fail to?

    muP transfers when eta* of the widest width is within one grid step (a factor 2)
    of the narrowest's. SP fails when its eta* moves by a grid step or more, or the
    widest width diverges (NaN, overflow or a blown-up loss, ``blew_up``) or has no
    eta* at the narrowest's eta*.
    """
    from muptheory.transfer import blew_up

    narrow, wide = mup.grid.widths[0], mup.grid.widths[-1]
    mup_shift = _steps(mup.best_lr[narrow], mup.best_lr[wide])
    sp_shift = _steps(sp.best_lr[narrow], sp.best_lr[wide])
    sp_narrow_best = sp.best_lr[narrow]
    wide_diverges = sp_narrow_best is not None and any(
        cell["width"] == wide
        and cell["lr"] == sp_narrow_best
        and (cell["diverged"] or cell["error"] or blew_up(cell))
        for cell in sp.cells
    )
    return {
        "narrow": narrow,
        "wide": wide,
        "best_lr": {
            "mup": {str(w): v for w, v in mup.best_lr.items()},
            "sp": {str(w): v for w, v in sp.best_lr.items()},
        },
        "mup_shift_steps": mup_shift,
        "sp_shift_steps": sp_shift,
        "sp_wide_diverges_at_narrow_best": wide_diverges,
        "mup_transfers": mup_shift is not None and mup_shift <= 1,
        "sp_fails": sp_shift is None or sp_shift >= 1 or wide_diverges,
    }


def _steps(a: float | None, b: float | None) -> float | None:
    """Grid steps (factors of 2) between two learning rates; None if one is missing."""
    if a is None or b is None:
        return None
    return abs(math.log2(b) - math.log2(a))


def _finding(stem: str, title: str, verdict: dict, data: str) -> Finding:
    best = verdict["best_lr"]
    narrow, wide = verdict["narrow"], verdict["wide"]

    def _lr(value):
        return "none" if value is None else f"{value:g}"

    mup_text = (
        f"Under muP the best learning rate is {_lr(best['mup'][str(narrow)])} at width "
        f"{narrow} and {_lr(best['mup'][str(wide)])} at width {wide} "
        f"({_shift(verdict['mup_shift_steps'])})"
    )
    if best["sp"][str(narrow)] is None:
        sp_text = f"under SP every rate diverged already at width {narrow}"
    elif verdict["sp_wide_diverges_at_narrow_best"]:
        sp_text = (
            f"under SP width {wide} diverges at width {narrow}'s best rate "
            f"{_lr(best['sp'][str(narrow)])}"
        )
    else:
        sp_text = (
            f"under SP it goes from {_lr(best['sp'][str(narrow)])} to "
            f"{_lr(best['sp'][str(wide)])} ({_shift(verdict['sp_shift_steps'])})"
        )
    if verdict["mup_transfers"] and verdict["sp_fails"]:
        expectation = ", as muP predicts."
    else:
        expectation = (
            ". Theory expects muP to hold eta* within one grid step and SP not to "
            f"(here muP transfers: {verdict['mup_transfers']}, SP fails: "
            f"{verdict['sp_fails']})."
        )
    summary = (
        f"{title} on {data}, metric: final training loss. "
        f"{mup_text}; {sp_text}{expectation}"
    )
    return Finding(
        piece="transfer",
        title=f"Learning-rate transfer: {title}",
        summary=summary,
        agrees=verdict["mup_transfers"] and verdict["sp_fails"],
        figure=f"transfer_{stem}.png",
        files=["transfer.json"],
        numbers={k: v for k, v in verdict.items() if k != "results"},
    )


def _shift(steps: float | None) -> str:
    if steps is None:
        return "a width with no best rate"
    if steps == 0:
        return "no shift"
    return f"a shift of {steps:g} grid step{'s' if steps != 1 else ''}"


def plot_rule(path: Path, title: str, results: dict) -> None:
    """One rule's transfer plots side by side (muP, SP), written to ``path``."""
    from muptheory.transfer import draw_transfer

    fig, axes = new_figure(len(results), width=5.0)
    for ax, (name, result) in zip(axes, results.items(), strict=True):
        draw_transfer(ax, result)
        ax.set_title(f"{title}: {name}")
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(standalone("transfer"))
