"""The parameterization table: every method's derived muP, side by side.

Writes ``table.md``, ``table.tex`` and ``table.json`` (fan-in convention, plus the
width-only rows in the JSON). The rows come from ``muptheory.symbolic.derive_mup``;
the finding checks the three anchors of the paper's Table 1 caption against each
other, not against typed numbers: PC with gamma_bar_L = 0 has SGD's row, PC with
gamma_bar_L = -1 has GNT's row, and TP keeps b_L = 1/2.

    python derivations/table.py --out regenerated
"""

from __future__ import annotations

import sys
from fractions import Fraction

from muptheory.derivations.common import (
    Context,
    Finding,
    standalone,
    write_json,
    write_text,
)


def run(ctx: Context) -> list[Finding]:
    from muptheory.symbolic.tables import paper_table, render_rows

    rows = paper_table()
    write_text(ctx.path("table.md"), render_rows(rows, "markdown", "fan_in") + "\n")
    write_text(ctx.path("table.tex"), render_rows(rows, "latex", "fan_in") + "\n")
    write_json(
        ctx.path("table.json"),
        {
            "rows": [
                {
                    "label": row.label,
                    "fan_in": row.to_json("fan_in"),
                    "width_only": row.to_json("width_only"),
                }
                for row in rows
            ]
        },
    )

    by_label = {row.label: row.parameterization for row in rows}
    checks = {
        "PC gamma_bar_L = 0 equals SGD": _same(
            by_label, "PC, gamma_bar_L = 0", "BP, SGD"
        ),
        "PC gamma_bar_L = -1 equals GNT": _same(
            by_label, "PC, gamma_bar_L = -1", "GNT, lambda ~ M^-1"
        ),
        "TP keeps b_L = 1/2": _last_b(by_label, "TP, ridge mu ~ 1") == Fraction(1, 2),
        "DTP keeps b_L = 1/2": _last_b(by_label, "DTP, ridge mu ~ 1") == Fraction(1, 2),
    }
    failed = [name for name, ok in checks.items() if not ok]
    summary = (
        f"The exponent engine derives the muP of {len(rows)} learning rules from "
        "their update rules alone (b: initialization, c: learning rate, first / "
        "hidden / last layer, fan-in convention). "
        + (
            "The caption's anchors hold: PC with gamma_bar_L = 0 has SGD's row, PC "
            "with gamma_bar_L = -1 has GNT's row, and TP/DTP keep b_L = 1/2."
            if not failed
            else f"Anchors that fail: {', '.join(failed)}."
        )
    )
    return [
        Finding(
            piece="table",
            title="muP of every method (Table 1)",
            summary=summary,
            agrees=not failed,
            files=["table.md", "table.tex", "table.json"],
            numbers={"checks": checks, "rows": len(rows)},
        )
    ]


def _same(by_label: dict, first: str, second: str) -> bool:
    if first not in by_label or second not in by_label:
        return False
    a, b = by_label[first], by_label[second]
    return a.b == b.b and a.c == b.c


def _last_b(by_label: dict, label: str) -> Fraction | None:
    param = by_label.get(label)
    return None if param is None else param.b.as_tuple()[-1]


if __name__ == "__main__":
    sys.exit(standalone("table"))
