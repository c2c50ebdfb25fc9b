"""Run every piece into one directory and write its index.md.

``muptheory regenerate [--out DIR] [--quick | --full]`` calls ``regenerate``; the
pieces run in the order of ``PIECES`` and each stores its findings as it finishes,
so an interrupted run keeps what was done and its sweeps resume from their cells.

    python derivations/regenerate.py --out regenerated --quick
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from muptheory.derivations import PIECES
from muptheory.derivations.common import Context, Finding, run_piece, sweep_cluster
from muptheory.derivations.index import write_index
from muptheory.errors import InvalidInputError

logger = logging.getLogger(__name__)

# Pieces whose cells run on the sweep runner (and so on Dask under --full).
SWEEPING = {"coordchecks", "transfer"}


def regenerate(
    ctx: Context,
    *,
    only: Sequence[str] | None = None,
    report=print,
) -> dict[str, tuple[list[Finding], float]]:
    """Run the pieces (all, or ``only``) into ``ctx.out`` and rebuild index.md.

    Args:
        ctx: output directory, sizes and where sweeps run.
        only: piece names to run; the index still shows every stored piece.
        report: called with one line per finished piece.

    Returns:
        ``{piece: (findings, seconds)}``.
    """
    names = list(dict.fromkeys(PIECES if not only else only))
    unknown = [n for n in names if n not in PIECES]
    if unknown:
        raise InvalidInputError(
            f"unknown piece {unknown[0]!r}; use some of {', '.join(PIECES)}"
        )
    done = {}
    with sweep_cluster(ctx, needed=bool(SWEEPING.intersection(names))) as ctx:
        for name in names:
            findings, seconds = run_piece(name, ctx)
            write_index(ctx.out)
            verdicts = ", ".join(
                {True: "agrees", False: "DISAGREES", None: "measured"}[f.agrees]
                for f in findings
            )
            report(f"{name:<16}{seconds:8.1f} s  {verdicts}")
            done[name] = (findings, seconds)
    return done


def main(argv: list[str] | None = None) -> int:
    from muptheory.cli import main as cli_main

    return cli_main(["regenerate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
