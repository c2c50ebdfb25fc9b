"""Time a transfer sweep with and without reuse of the compiled training epoch.

``muptheory.simulate.train`` keeps one jitted epoch per process for every simulator
that differs only in learning rate or seed (``epoch_runner``); a transfer sweep's
cells at one width then compile once instead of once per learning rate. This script
runs the same small sweep twice in this process, first with that cache emptied
before every cell (``EPOCH_CACHE_SIZE = 0``: each cell compiles, as before the
cache existed), then with it on, checks that both give the same numbers, and prints
the ratio of their times.

    python benchmarks/bench_transfer.py                  # pc, muP, digits
    python benchmarks/bench_transfer.py --method tp --widths 64 256 --lrs 0.1 0.2 0.4

Cells run in this process (``workers=1``) so that both sweeps see the same machine;
a pool of workers gains the same per worker, since the sweep hands a width's cells to
one worker (``run_sweep(..., group=...)``).
"""

from __future__ import annotations

import argparse
import importlib
import time
import warnings

from muptheory.cli.common import resolve_parameterization
from muptheory.methods import MethodConfig
from muptheory.transfer import TransferGrid, transfer_sweep

# the module, not the function ``muptheory.simulate.train`` that its package exports
train_module = importlib.import_module("muptheory.simulate.train")


def timed_sweep(config, param, grid, data: str, *, reuse: bool):
    """(seconds, cells) of one sweep, the epoch cache on or off."""
    saved = train_module.EPOCH_CACHE_SIZE
    train_module.EPOCH_CACHE_SIZE = saved if reuse else 0
    train_module._epoch_runners.clear()
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a width where every rate diverged
            result = transfer_sweep(
                config, param, grid, data=data, cache_dir=None, workers=1
            )
        return time.perf_counter() - start, result.cells
    finally:
        train_module.EPOCH_CACHE_SIZE = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="pc")
    parser.add_argument("--param", default="mup")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--widths", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--n-train", type=int, default=512)
    args = parser.parse_args()

    config = MethodConfig.create(args.method)
    param = resolve_parameterization(args.param, config)
    grid = TransferGrid(
        widths=tuple(args.widths), lrs=tuple(args.lrs), n_train=args.n_train
    )
    n_cells = len(grid.widths) * len(grid.lrs) * grid.seeds

    # One cell first, so that neither sweep pays for importing and for compiling
    # the eager operations of initialization and evaluation.
    warm = TransferGrid(widths=grid.widths[:1], lrs=grid.lrs[:1], n_train=args.n_train)
    timed_sweep(config, param, warm, args.data, reuse=False)

    without, cells_without = timed_sweep(config, param, grid, args.data, reuse=False)
    with_reuse, cells_with = timed_sweep(config, param, grid, args.data, reuse=True)
    strip = [{k: v for k, v in c.items() if k != "cached"} for c in cells_with]
    same = strip == [
        {k: v for k, v in c.items() if k != "cached"} for c in cells_without
    ]

    print(
        f"{args.method} under {param.name}, {args.data} ({args.n_train} samples), "
        f"widths {list(grid.widths)}, {len(grid.lrs)} learning rates: {n_cells} cells"
    )
    print(f"compiling every cell:       {without:7.2f} s")
    print(f"one compile per width:      {with_reuse:7.2f} s")
    print(f"same numbers:               {same}")
    print(f"time ratio (reuse / none):  {with_reuse / without:7.3f}")


if __name__ == "__main__":
    main()
