"""The paper-style muP table: every method's derived row, rendered as text, Markdown
or LaTeX. Every number comes from ``derive_mup``; nothing here is typed in."""

from __future__ import annotations

from muptheory.errors import MuptheoryError
from muptheory.methods import MethodConfig
from muptheory.symbolic.engine import Derivation, derive_mup

# The rows of the table: a label and the method options that define it.
TABLE_ROWS: tuple[tuple[str, str, dict], ...] = (
    ("BP, SGD", "bp", {}),
    ("BP, Adam", "bp", {"optimizer": "adam"}),
    ("BP, K-FAC", "bp", {"optimizer": "kfac"}),
    ("BP, Shampoo", "bp", {"optimizer": "shampoo"}),
    ("GNT, lambda ~ M^-1", "gnt", {}),
    ("GNT, lambda = 0", "gnt", {"lambda_zero": True}),
    ("PC, gamma_bar_L = 0", "pc", {"gamma_bar_last": "0"}),
    ("PC, gamma_bar_L = -1/2", "pc", {"gamma_bar_last": "-1/2"}),
    ("PC, gamma_bar_L = -1", "pc", {"gamma_bar_last": "-1"}),
    (
        "PC, gamma_bar_L = -1, gamma_L on last update",
        "pc",
        {"gamma_bar_last": "-1", "last_layer_gamma": True},
    ),
    ("TP, ridge mu ~ 1", "tp", {}),
    ("DTP, ridge mu ~ 1", "dtp", {}),
)


def paper_table() -> list[Derivation]:
    """Derive every row of ``TABLE_ROWS`` (rows the engine cannot derive are left out
    with their reason in the log)."""
    import logging

    log = logging.getLogger(__name__)
    out = []
    for label, method, options in TABLE_ROWS:
        try:
            derivation = derive_mup(MethodConfig.create(method, **options))
        except MuptheoryError as err:
            log.warning("table row %r left out: %s", label, err)
            continue
        derivation.label = label
        out.append(derivation)
    return out


def _label(d: Derivation) -> str:
    return getattr(d, "label", None) or d.config.method


def render_rows(derivations: list[Derivation], fmt: str, convention: str) -> str:
    """The rows as ``text``, ``markdown`` or ``latex``."""
    rows = []
    for d in derivations:
        p = d.in_convention(convention)
        rows.append(
            (
                _label(d),
                *(str(v) for v in p.b.as_tuple()),
                *(str(v) for v in p.c.as_tuple()),
            )
        )
    head = ("method", "b_1", "b_l", "b_L", "c_1", "c_l", "c_L")
    caption = f"muP exponents ({convention} convention; first / hidden / last layer)"
    if fmt == "markdown":
        lines = [f"| {' | '.join(head)} |", "|" + " --- |" * len(head)]
        lines += [f"| {' | '.join(r)} |" for r in rows]
        return f"{caption}\n\n" + "\n".join(lines)
    if fmt == "latex":
        lines = [
            r"\begin{tabular}{l" + "r" * 6 + "}",
            r"\hline",
            "method & $b_1$ & $b_l$ & $b_L$ & $c_1$ & $c_l$ & $c_L$ \\\\",
            r"\hline",
        ]
        for r in rows:
            cells = [r[0].replace("_", r"\_")] + [f"${v}$" for v in r[1:]]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\hline", r"\end{tabular}"]
        return f"% {caption}\n" + "\n".join(lines)
    width = max([len(head[0]), *(len(r[0]) for r in rows)])
    lines = [caption, f"{head[0]:<{width}}  " + "".join(f"{h:>6}" for h in head[1:])]
    lines += [f"{r[0]:<{width}}  " + "".join(f"{v:>6}" for v in r[1:]) for r in rows]
    return "\n".join(lines)
