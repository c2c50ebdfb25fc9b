"""Write docs/figures/transfer_pc.png, the figure the README shows.

It is the transfer piece's figure for PC (gamma_bar_L = 0) at the ``--full`` sizes:
MNIST-5k, widths 128 to 2048, muP next to SP. The sweep's cells are read from (and
missing ones added to) a cell cache, by default the one of a ``muptheory regenerate
--full`` run into ``regenerated/``:

    python derivations/readme_figure.py [--cells regenerated/.cells/transfer]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from muptheory.derivations.common import FULL
from muptheory.derivations.transfer import RULES, judge, plot_rule
from muptheory.errors import MuptheoryError

ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "docs" / "figures" / "transfer_pc.png"


def main(argv: list[str] | None = None) -> int:
    from muptheory.cli.common import resolve_parameterization
    from muptheory.methods import MethodConfig
    from muptheory.transfer import TransferGrid, transfer_sweep

    parser = argparse.ArgumentParser(prog="derivations/readme_figure.py")
    parser.add_argument("--cells", default="regenerated/.cells/transfer", metavar="DIR")
    parser.add_argument("--workers", type=int, metavar="N")
    args = parser.parse_args(argv)

    stem, title, method, options = RULES[0]
    config = MethodConfig.create(method, **options)
    grid = TransferGrid(
        widths=FULL.transfer_widths,
        lrs=FULL.transfer_lrs,
        seeds=FULL.transfer_seeds,
        epochs=FULL.transfer_epochs,
        n_train=FULL.transfer_n_train,
    )
    try:
        results = {
            name: transfer_sweep(
                config,
                resolve_parameterization(name, config),
                grid,
                data=FULL.data,
                cache_dir=args.cells,
                workers=args.workers,
            )
            for name in ("mup", "sp")
        }
    except MuptheoryError as err:
        print(f"readme_figure: error: {err}", file=sys.stderr)
        return 2
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    plot_rule(FIGURE, f"{title}, MNIST-5k", results)
    verdict = judge(results["mup"], results["sp"])
    print(f"wrote {FIGURE}; best lr {verdict['best_lr']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
