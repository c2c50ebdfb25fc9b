"""Sub-commands of the simulate engine: ``coordcheck``.

``muptheory coordcheck METHOD --param NAME`` trains the method's MLP at several widths,
fits the width exponent of each layer's coordinate sizes and prints them beside the
exponents the symbolic engine predicts (``--json`` for the machine-readable form,
``--plot FILE`` for the PNG panels). ``--param mup`` means the method's own derived
muP except for BP with SGD, where it is the SGD preset. Each width is a sweep cell,
kept in ``--cache-dir``, so a repeated coord check measures nothing again.
"""

from __future__ import annotations

import argparse
import os
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
    atomic_write_bytes,
    check_output_file,
    method_config,
    print_json,
    resolve_parameterization,
    sweep_options,
)
from muptheory.io import figure_format, output_target

# The coord check's defaults, repeated from ``muptheory.simulate.coordcheck`` (a test
# keeps them equal) because importing that package imports JAX, which would make
# every ``muptheory`` command pay seconds to build its parser.
DEFAULT_WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
DEFAULT_CACHE_DIR = os.path.join(".muptheory-cache", "coordcheck")

_EPILOG = """\
exponent overrides (--a, --b, --c) take three values, first / hidden / last, in the
fan-in convention, and replace the named parameterization's row.

examples:
  muptheory coordcheck pc --param mup --data digits --json
  muptheory coordcheck bp --param sp --widths 64 128 256 512 --steps 2 --plot sp.png
  muptheory coordcheck tp --param mup --b 1/2 1/2 1 --activation tanh
"""


def register(subparsers) -> None:
    """Add this module's sub-commands to the parser."""
    parser = add_subcommand(
        subparsers,
        "coordcheck",
        help="measure width exponents of a trained MLP and compare with theory",
    )
    parser.epilog = _EPILOG
    add_method_argument(parser)
    add_param_argument(parser)
    for letter, what in (("a", "multiplier"), ("b", "init"), ("c", "learning-rate")):
        parser.add_argument(
            f"--{letter}",
            nargs=3,
            metavar=(f"{letter.upper()}1", f"{letter.upper()}H", f"{letter.upper()}L"),
            help=f"override the {what} exponents (first hidden last)",
        )
    run = parser.add_argument_group("training and fit")
    add_widths_argument(run, default=DEFAULT_WIDTHS)
    run.add_argument("--steps", type=int, default=3, help="training steps (default 3)")
    add_seeds_argument(run, default=3, what="width")
    add_data_argument(run)
    add_network_arguments(run)
    run.add_argument("--lr", type=float, default=0.1, help="base learning rate (0.1)")
    run.add_argument(
        "--fit-widths",
        type=int,
        default=4,
        metavar="K",
        help="fit the widest K widths (default 4)",
    )
    add_sweep_arguments(parser, cache_dir=DEFAULT_CACHE_DIR)
    add_output_arguments(parser, plot="the coord-check panels")
    add_method_options(parser)
    parser.set_defaults(run=run_coordcheck)


def run_coordcheck(args: argparse.Namespace) -> int:
    """Run a coord check as the arguments say; print the table or JSON."""
    from muptheory.data import load_dataset
    from muptheory.simulate.coordcheck import CoordCheckSettings, coord_check

    config = method_config(args)
    settings = CoordCheckSettings(
        widths=tuple(args.widths) if args.widths else DEFAULT_WIDTHS,
        seeds=args.seeds,
        steps=args.steps,
        depth=args.depth,
        activation=args.activation,
        lr=args.lr,
        batch_size=args.batch_size,
        dtype=args.dtype,
        fit_widths=args.fit_widths,
    )
    if args.plot is not None:
        figure_format(args.plot)
        check_output_file(args.plot)
        output_target(args.plot)
    param = resolve_parameterization(args.param, config, a=args.a, b=args.b, c=args.c)
    data = load_dataset(args.data, seed=0)
    predicted, notes = _predictions(config, param, settings)

    from tqdm import tqdm

    total = len(settings.widths) * settings.steps
    with tqdm(
        total=total,
        desc=f"coordcheck {config.method}",
        unit="step",
        file=sys.stderr,
        disable=True if args.no_progress else None,
        leave=False,
    ) as bar:
        result = coord_check(
            config,
            param,
            data,
            settings=settings,
            predicted=predicted,
            notes=notes,
            progress=bar.update,
            **sweep_options(args),
        )

    if args.plot is not None:
        from muptheory.simulate.plot import coord_check_figure

        figure = coord_check_figure(result, format=figure_format(args.plot))
        atomic_write_bytes(args.plot, figure)
    if args.json:
        print_json(result.to_json())
    else:
        print(param.describe())
        print(
            f"method {config.method}, data {result.data_name}, widths {result.widths}"
        )
        print(result.table())
        if result.all_agree:
            verdict = "all agree"
        elif any(f.judged and not f.agrees for f in result.fits):
            verdict = "some quantities DISAGREE"
        else:
            verdict = "some quantities could not be fitted"
        n_widths = len(settings.widths)
        fitted = (
            f"all {n_widths} widths"
            if settings.fit_widths >= n_widths
            else f"the widest {settings.fit_widths} widths"
        )
        print(f"\n{verdict} (fit on {fitted})")
    return 0


def _predictions(config, param, settings):
    """The engine's exponents and notes, before any training (errors come first)."""
    from muptheory.simulate.coordcheck import engine_predictions

    return engine_predictions(
        config, param, depth=settings.depth, activation=settings.activation
    )
