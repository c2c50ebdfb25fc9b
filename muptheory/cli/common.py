"""Pieces the sub-commands share: the parser class, method options, the argument
blocks of the commands that train networks (widths, data, seeds, network, where a
sweep runs), output."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

from muptheory.errors import InvalidInputError
from muptheory.io import atomic_write_bytes, atomic_write_text  # noqa: F401 (moved)
from muptheory.methods import (
    METHODS,
    OPTIMIZERS,
    PC_INFERENCE,
    TP_FEEDBACK,
    MethodConfig,
)


def add_subcommand(subparsers, name: str, *, help: str, description: str | None = None):
    """Add a sub-command; it inherits the one-line error handling of the main parser."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_method_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", metavar="METHOD", help=f"one of {', '.join(METHODS)}")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Options of the learning rules; each is rejected where it does not apply."""
    group = parser.add_argument_group("method options (each applies to some methods)")
    group.add_argument("--optimizer", choices=OPTIMIZERS, help="bp: optimizer")
    group.add_argument(
        "--lambda-bar",
        metavar="X",
        help="gnt: damping lambda = lambda0 M^-X (default 1)",
    )
    group.add_argument(
        "--lambda-zero",
        action="store_true",
        default=None,
        help="gnt: lambda = 0 (pseudo-inverse targets)",
    )
    group.add_argument(
        "--gamma-bar-hidden",
        metavar="X",
        help="pc: hidden energy coefficients gamma_l = gamma M^-X (default 0)",
    )
    group.add_argument(
        "--gamma-bar-last",
        metavar="X",
        help="pc: last-layer energy coefficient gamma_L = gamma M^-X (default 0)",
    )
    group.add_argument(
        "--last-layer-gamma",
        action="store_true",
        default=None,
        help="pc: the last layer's weight update carries gamma_L",
    )
    group.add_argument(
        "--inference", choices=PC_INFERENCE, help="pc: inference variant"
    )
    group.add_argument(
        "--inference-steps", type=int, metavar="T", help="pc: iterative inference steps"
    )
    group.add_argument(
        "--inference-rate", type=float, metavar="R", help="pc: inference step size"
    )
    group.add_argument(
        "--fpa",
        action="store_true",
        default=None,
        help="pc: fixed prediction assumption",
    )
    group.add_argument(
        "--mu-bar", metavar="X", help="tp/dtp: ridge constant mu = mu0 M^-X (default 0)"
    )
    group.add_argument("--feedback", choices=TP_FEEDBACK, help="tp/dtp: feedback map")
    group.add_argument(
        "--feedback-b",
        metavar="X",
        help="tp/dtp: trained feedback init exponent, every map (default 1/2)",
    )
    group.add_argument(
        "--feedback-c",
        metavar="X",
        help="tp/dtp: trained feedback lr exponent, hidden maps (default 1)",
    )
    group.add_argument(
        "--feedback-c-last",
        metavar="X",
        help="tp/dtp: trained feedback lr exponent, top map V_L (default 0)",
    )
    group.add_argument(
        "--damping-a",
        nargs="+",
        metavar="X",
        help="bp kfac: damping of the input factors, rho_A = rho0 M^X, three "
        "exponents first hidden last (default: the derived ones)",
    )
    group.add_argument(
        "--damping-g",
        nargs="+",
        metavar="X",
        help="bp kfac: damping of the signal factors, rho_G = rho0 M^X, three "
        "exponents first hidden last (default: the derived ones)",
    )
    group.add_argument(
        "--damping",
        nargs="+",
        metavar="X",
        help="bp shampoo: damping rho = rho0 M^X, three exponents first hidden "
        "last (default: the derived ones)",
    )
    group.add_argument(
        "--damping0",
        type=float,
        metavar="R",
        help="bp kfac/shampoo: damping prefactor rho0 (default 1)",
    )


METHOD_OPTION_NAMES = (
    "optimizer",
    "lambda_bar",
    "lambda_zero",
    "gamma_bar_hidden",
    "gamma_bar_last",
    "last_layer_gamma",
    "inference",
    "inference_steps",
    "inference_rate",
    "fpa",
    "mu_bar",
    "feedback",
    "feedback_b",
    "feedback_c",
    "feedback_c_last",
    "damping_a",
    "damping_g",
    "damping",
    "damping0",
)


def method_config(args: argparse.Namespace):
    """Build a ``MethodConfig`` from parsed arguments."""
    options = {k: getattr(args, k, None) for k in METHOD_OPTION_NAMES}
    if options.get("lambda_zero") is None:
        options.pop("lambda_zero")
    return MethodConfig.create(args.method, **options)


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def resolve_parameterization(name: str, config, *, a=None, b=None, c=None):
    """The named parameterization with exponent overrides applied.

    ``mup`` is the SGD preset for BP with SGD and the method's own derived muP
    (``muptheory.symbolic.derive_mup``) for every other method or optimizer.
    """
    from muptheory.parameterization import LayerExponents, preset

    key = name.strip().lower()
    if key in ("mup", "mu-p") and not (
        config.method == "bp" and config.optimizer == "sgd"
    ):
        from muptheory.symbolic import derive_mup
        from muptheory.symbolic.engine import without_derived_options

        # muP's b and c; a given damping (K-FAC, Shampoo) or trained-feedback
        # exponent still applies to the run
        derived = derive_mup(without_derived_options(config))
        param = derived.parameterization.to("fan_in")
    else:
        param = preset(name)
    overrides = {
        k: LayerExponents.of(v) for k, v in (("a", a), ("b", b), ("c", c)) if v
    }
    if overrides:
        param = dataclasses.replace(
            param, name=f"{param.name or name}+overrides", **overrides
        )
    return param


def check_output_file(path: str) -> None:
    """Reject an output path whose directory is missing or read-only, before a run."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InvalidInputError(f"output directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidInputError(f"output directory {directory!r} is not writable")
    if os.path.isdir(path):
        raise InvalidInputError(f"output {path!r} is a directory; give a file name")


# -- argument blocks shared by the commands that train networks ------------------------


def add_param_argument(parser: argparse.ArgumentParser) -> None:
    """``--param NAME``: the parameterization preset, default ``mup``."""
    parser.add_argument(
        "--param",
        default="mup",
        metavar="NAME",
        help="parameterization preset (sp, sp-lr1/m, ntk, mup, mean-field); "
        "mup = the method's own derived muP (default mup)",
    )


def add_widths_argument(group, *, default: Sequence[int]) -> None:
    """``--widths M [M ...]``; None when not given, so the caller's default applies."""
    group.add_argument(
        "--widths",
        nargs="+",
        type=int,
        metavar="M",
        help=f"hidden widths (default {' '.join(str(w) for w in default)})",
    )


def add_data_argument(group) -> None:
    """``--data NAME|PATH``: an embedded data set or a directory of IDX files."""
    group.add_argument(
        "--data",
        default="digits",
        metavar="NAME|PATH",
        help="digits, mnist5k, synthetic or a directory of IDX files (default digits)",
    )


def add_seeds_argument(group, *, default: int, what: str) -> None:
    """``--seeds K``: seeds 0..K-1 per ``what``."""
    group.add_argument(
        "--seeds", type=int, default=default, help=f"seeds per {what} ({default})"
    )


def add_network_arguments(group) -> None:
    """``--depth``, ``--activation``, ``--batch-size`` and ``--dtype`` of the MLP."""
    group.add_argument("--depth", type=int, default=3, help="weight layers L (3)")
    group.add_argument(
        "--activation",
        default="tanh",
        choices=("linear", "tanh", "relu"),
        help="nonlinearity (tanh)",
    )
    group.add_argument("--batch-size", type=int, default=32, help="batch size (32)")
    group.add_argument(
        "--dtype", default="float32", choices=("float32", "float64"), help="precision"
    )


def add_sweep_arguments(parser: argparse.ArgumentParser, *, cache_dir: str) -> None:
    """Where a sweep's cells run and are kept: ``--scheduler``, ``--workers``,
    ``--cache-dir`` (default ``cache_dir``) and ``--no-cache``; read them back with
    ``sweep_options``."""
    where = parser.add_argument_group("where the cells run")
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on this Dask scheduler"
    )
    where.add_argument(
        "--workers", type=int, metavar="N", help="local processes (default: CPUs)"
    )
    where.add_argument(
        "--cache-dir",
        default=cache_dir,
        metavar="DIR",
        help=f"finished cells are kept here ({cache_dir})",
    )
    where.add_argument("--no-cache", action="store_true", help="keep no finished cells")


def sweep_options(args: argparse.Namespace) -> dict:
    """``cache_dir``, ``workers`` and ``scheduler`` for ``run_sweep`` and its callers.

    Raises:
        InvalidInputError: when the cache directory, or the nearest of its parents
            that exists, is not a directory.
    """
    if not args.no_cache:
        check_cache_dir(args.cache_dir)
    return {
        "cache_dir": None if args.no_cache else args.cache_dir,
        "workers": args.workers,
        "scheduler": args.scheduler,
    }


def check_cache_dir(path: str) -> None:
    """Reject a cache directory that is a file, or lies under one, before a run."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if os.path.isdir(existing):
        return
    if existing == os.path.abspath(path):
        raise InvalidInputError(f"cache directory {path!r} is a file")
    raise InvalidInputError(
        f"cache directory {path!r} cannot be created: {existing!r} is a file"
    )


def add_output_arguments(parser: argparse.ArgumentParser, *, plot: str) -> None:
    """``--json``, ``--plot FILE`` (help: write ``plot``) and ``--no-progress``."""
    out = parser.add_argument_group("output")
    out.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    out.add_argument(
        "--plot", metavar="FILE", help=f"write {plot} (.png, .pdf or .svg)"
    )
    out.add_argument("--no-progress", action="store_true", help="hide the progress bar")
