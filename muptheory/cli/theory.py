"""Sub-commands of the exponent engine: ``exponents``, ``classify``, ``table``."""

from __future__ import annotations

import argparse

from muptheory.cli.common import (
    add_method_argument,
    add_method_options,
    add_subcommand,
    method_config,
    print_json,
)
from muptheory.errors import InvalidInputError

FORMATS = ("text", "json", "markdown", "latex")


def register(subparsers) -> None:
    exponents = add_subcommand(
        subparsers,
        "exponents",
        help="derive a method's muP (b and c per layer group)",
        description="Derive the muP of METHOD from its update rule: the exponents b "
        "(initialization) and c (learning rate) of the first, hidden and last layers.",
    )
    add_method_argument(exponents)
    _add_output_options(exponents)
    exponents.add_argument(
        "--explain",
        action="store_true",
        help="print every sized quantity and condition (with --json: an "
        '"explanation" list of lines)',
    )
    add_method_options(exponents)
    exponents.set_defaults(run=run_exponents)

    classify = add_subcommand(
        subparsers,
        "classify",
        help="classify a parameterization: unstable, trivial, kernel or feature learning",
    )
    add_method_argument(classify)
    for name, what in (
        ("b", "initialization"),
        ("c", "learning-rate"),
        ("a", "multiplier"),
    ):
        classify.add_argument(
            f"--{name}",
            nargs="+",
            metavar="X",
            required=name != "a",
            help=f"{what} exponents: first hidden last (rationals such as 1/2)",
        )
    classify.add_argument(
        "--convention",
        choices=("fan_in", "width_only"),
        default="fan_in",
        help="how b is read (default fan_in)",
    )
    classify.add_argument("--json", action="store_true", help="print JSON")
    classify.add_argument(
        "--explain",
        action="store_true",
        help='print every sized quantity (with --json: an "explanation" list)',
    )
    add_method_options(classify)
    classify.set_defaults(run=run_classify)

    table = add_subcommand(
        subparsers, "table", help="the muP of every method side by side (paper style)"
    )
    _add_output_options(table)
    table.set_defaults(run=run_table)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--convention",
        choices=("fan_in", "width_only"),
        default="fan_in",
        help="exponent convention of b (default fan_in)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--json", action="store_const", const="json", dest="format", help="print JSON"
    )
    group.add_argument(
        "--markdown",
        action="store_const",
        const="markdown",
        dest="format",
        help="print a Markdown table",
    )
    group.add_argument(
        "--latex",
        action="store_const",
        const="latex",
        dest="format",
        help="print a LaTeX tabular",
    )
    parser.set_defaults(format="text")


# -- exponents -----------------------------------------------------------------------


def run_exponents(args: argparse.Namespace) -> int:
    from muptheory.symbolic import derive_mup
    from muptheory.symbolic.tables import render_rows

    config = method_config(args)
    derivation = derive_mup(config)
    if args.format == "json":
        out = derivation.to_json(args.convention)
        if args.explain:
            out["explanation"] = list(derivation.explanation)
        print_json(out)
        return 0
    print(render_rows([derivation], args.format, args.convention))
    if args.format == "text":
        for note in derivation.notes:
            print(f"note: {note}")
    if args.explain:
        print("\n".join(derivation.explanation))
    return 0


# -- classify ------------------------------------------------------------------------


def run_classify(args: argparse.Namespace) -> int:
    from muptheory.parameterization import LayerExponents, Parameterization
    from muptheory.symbolic import classify

    config = method_config(args)
    param = Parameterization(
        b=_triple(args.b, "--b"),
        c=_triple(args.c, "--c"),
        a=_triple(args.a, "--a") if args.a else LayerExponents(0, 0, 0),
        convention=args.convention,
    )
    result = classify(config, param, explain=args.explain)
    if args.json:
        out = result.to_json()
        if args.explain:
            out["explanation"] = list(result.explanation)
        print_json(out)
        return 0
    print(
        f"method {config.method}: {result.regime.replace('_', ' ')}"
        f" (stable: {'yes' if result.stable else 'no'}, r = {result.r})"
    )
    for reason in result.reasons:
        print(f"  {reason}")
    if args.explain:
        print("\n".join(result.explanation))
    return 0


def _triple(values: list[str], flag: str):
    from muptheory.parameterization import LayerExponents

    if len(values) != 3:
        raise InvalidInputError(
            f"{flag} takes 3 exponents (first hidden last), got {len(values)}"
        )
    return LayerExponents.of(values)


# -- table ---------------------------------------------------------------------------


def run_table(args: argparse.Namespace) -> int:
    from muptheory.symbolic.tables import paper_table, render_rows

    derivations = paper_table()
    if args.format == "json":
        print_json([d.to_json(args.convention) for d in derivations])
    else:
        print(render_rows(derivations, args.format, args.convention))
    return 0
