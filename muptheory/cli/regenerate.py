"""Sub-command ``regenerate``: the paper's results from one command.

``muptheory regenerate [--out DIR] [--quick | --full] [--only PIECE ...]`` runs the
pieces under ``derivations/`` (installed as ``muptheory.derivations``) into DIR and
writes DIR/index.md, which shows every figure with what it demonstrates and whether
it agrees with theory.
"""

from __future__ import annotations

import argparse
import sys

from muptheory.cli.common import add_subcommand

_EPILOG = """\
--quick (default) uses the embedded digits data and small grids: about 5 minutes
on 2 idle cores (10 on busy ones), about 80 s to rerun. --full uses MNIST-5k, widths
128 to 2048 and a Dask cluster (a local one unless --scheduler is given). Finished
sweep cells are kept in DIR/.cells, so a second run computes only what changed.

examples:
  muptheory regenerate
  muptheory regenerate --out results --only table interpolation
  muptheory regenerate --full --scheduler tcp://127.0.0.1:8786
"""


def register(subparsers) -> None:
    """Add the ``regenerate`` sub-command."""
    from muptheory.derivations import PIECES
    from muptheory.derivations.common import add_run_arguments

    parser = add_subcommand(
        subparsers,
        "regenerate",
        help="rebuild the paper's tables and figures into a directory",
    )
    parser.epilog = _EPILOG
    add_run_arguments(parser)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PIECES,
        metavar="PIECE",
        help=f"run only these pieces ({', '.join(PIECES)})",
    )
    parser.set_defaults(run=run_regenerate)


def run_regenerate(args: argparse.Namespace) -> int:
    from muptheory.derivations.common import context_from_args
    from muptheory.derivations.regenerate import regenerate

    ctx = context_from_args(args)
    print(f"regenerating ({args.mode}) into {ctx.out}/", file=sys.stderr)
    done = regenerate(ctx, only=args.only, report=print)
    total = sum(seconds for _, seconds in done.values())
    print(f"done in {total:.0f} s; open {ctx.out / 'index.md'}")
    return 0
