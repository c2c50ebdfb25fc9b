"""Sub-commands of the sweeps engine: ``transfer``.

``muptheory transfer METHOD --param NAME`` trains a grid of widths, learning rates and
seeds, prints the best learning rate of each width (``--json`` for every cell too) and
draws the transfer plot with ``--plot FILE``. Finished cells are kept in the cache
directory, so a repeated command computes nothing new.
"""

from __future__ import annotations

import argparse
import sys

from muptheory.cli.common import (
    add_data_argument,
    add_method_argument,
    add_method_options,
    add_network_arguments,
    add_output_arguments,
    add_param_argument,
    add_seeds_argument,
    add_subcommand,
    add_sweep_arguments,
    add_widths_argument,
    check_output_file,
    method_config,
    print_json,
    sweep_options,
)
from muptheory.io import figure_format, output_target

_EPILOG = """\
--param mup is the method's own derived muP (the SGD preset for BP with SGD).
A learning rate at which any seed diverged (NaN or infinity, or a final train loss
above {blowup:g}, a blown-up network) scores worst.

examples:
  muptheory transfer pc --param mup --data digits --json
  muptheory transfer bp --param sp --widths 128 512 2048 --plot sp.png
  muptheory transfer tp --param mup --data mnist5k --metric test_accuracy --seeds 3
"""


def register(subparsers) -> None:
    """Add this module's sub-commands to the parser."""
    from muptheory.transfer import (
        BLOWUP_LOSS,
        DEFAULT_CACHE_DIR,
        DEFAULT_WIDTHS,
        METRICS,
    )

    parser = add_subcommand(
        subparsers,
        "transfer",
        help="sweep widths and learning rates; find the best rate per width",
    )
    parser.epilog = _EPILOG.format(blowup=BLOWUP_LOSS)
    add_method_argument(parser)
    add_param_argument(parser)
    grid = parser.add_argument_group("grid and training")
    add_widths_argument(grid, default=DEFAULT_WIDTHS)
    grid.add_argument(
        "--lrs",
        nargs="*",
        type=float,
        metavar="LR",
        help="base learning rates (default 1/16 1/8 ... 2, doubling)",
    )
    add_seeds_argument(grid, default=1, what="cell")
    grid.add_argument("--epochs", type=int, default=1, help="epochs (1)")
    add_data_argument(grid)
    grid.add_argument(
        "--n-train",
        type=int,
        default=1024,
        metavar="N",
        help="training samples kept (1024; 0 = all)",
    )
    add_network_arguments(grid)
    grid.add_argument(
        "--metric",
        default="train_loss",
        choices=METRICS,
        help="what picks the best rate (train_loss)",
    )
    add_sweep_arguments(parser, cache_dir=DEFAULT_CACHE_DIR)
    add_output_arguments(parser, plot="the transfer plot")
    add_method_options(parser)
    parser.set_defaults(run=run_transfer)


def run_transfer(args: argparse.Namespace) -> int:
    """Run a transfer sweep as the arguments say; print the table or JSON."""
    from muptheory.cli.common import resolve_parameterization
    from muptheory.transfer import DEFAULT_LRS, DEFAULT_WIDTHS, TransferGrid

    config = method_config(args)
    grid = TransferGrid(
        widths=tuple(args.widths) if args.widths is not None else DEFAULT_WIDTHS,
        lrs=tuple(args.lrs) if args.lrs is not None else DEFAULT_LRS,
        seeds=args.seeds,
        epochs=args.epochs,
        depth=args.depth,
        activation=args.activation,
        batch_size=args.batch_size,
        n_train=args.n_train or None,
        dtype=args.dtype,
    )
    if args.plot is not None:
        figure_format(args.plot)
        check_output_file(args.plot)
        output_target(args.plot)
    param = resolve_parameterization(args.param, config)
    result = _sweep(args, config, param, grid)

    if args.plot is not None:
        from muptheory.transfer import write_transfer_plot

        write_transfer_plot(args.plot, result)
    if args.json:
        print_json(result.to_json())
    else:
        _print_table(result)
    return 0


def _sweep(args, config, param, grid):
    from tqdm import tqdm

    from muptheory.transfer import check_grid, transfer_sweep

    # A bad data name or path, or settings no cell could train with, are one error
    # here, before the progress bar and any cell.
    check_grid(grid, data=args.data)
    total = len(grid.widths) * len(grid.lrs) * grid.seeds
    with tqdm(
        total=total,
        desc=f"transfer {config.method}",
        unit="cell",
        file=sys.stderr,
        disable=True if args.no_progress else None,
        leave=False,
    ) as bar:
        return transfer_sweep(
            config,
            param,
            grid,
            data=args.data,
            metric=args.metric,
            progress=lambda _: bar.update(),
            **sweep_options(args),
        )


def _print_table(result) -> None:
    from muptheory.transfer import rule_label, seed_scores

    scores = seed_scores(result.cells, metric=result.metric)
    lrs = result.grid.lrs
    print(
        f"method {rule_label(result.method, result.options)}, param {result.param}, "
        f"data {result.data}, "
        f"metric {result.metric} (seed mean; 'div' = diverged, 'err' = failed)"
    )
    failed = {(c["width"], c["lr"]) for c in result.cells if c.get("error")}
    print("width   " + "".join(f"{lr:>10.4g}" for lr in lrs) + "   best lr")
    for width in result.grid.widths:
        row = "".join(
            f"{'err' if (width, lr) in failed else 'div':>10}"
            if scores.get((width, lr)) is None
            else f"{scores[(width, lr)]:>10.4g}"
            for lr in lrs
        )
        best = result.best_lr[width]
        print(f"{width:<8}{row}   {'none' if best is None else f'{best:.4g}'}")
    print(f"\n{result.n_computed} of {len(result.cells)} cells computed this run")
