"""The memory a limit run needs, estimated before it starts.

A run records, at each of its T + 1 steps, the feature kernels K_l(x, x') of the
L - 1 hidden layers on the P training points: (T + 1)(L - 1) P^2 float64 numbers,
held twice (the per-step records and the stacked trajectory). The kernel regime
keeps one P x P propagator per step instead, which the same count covers. A
finite-width comparison (``convergence``) records the same kernels for every seed
at a width, and trains up to ``SEED_CHUNK`` seeds at once, each with L weight matrices
of up to M x M entries and as many again for gradients and PC's references.
The Gaussian directions of the limit's state grow with T (C + r per step and
layer), not with P, and are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from muptheory.errors import InvalidInputError
from muptheory.limits.simulated import SEED_CHUNK

FLOAT = 8  # bytes of a float64
GIB = 2**30
# What ``limit`` and ``interpolation`` allow themselves by default.
BUDGET_BYTES = 16 * GIB


def run_bytes(
    *,
    samples: int,
    steps: int,
    depth: int,
    widths: Sequence[int] = (),
    seeds: int = 0,
) -> int:
    """Estimated peak bytes of a limit run and, with ``widths``, its comparison.

    Returns:
        2 (T + 1)(L - 1) P^2 * 8 for the limit, plus with widths
        2 K (T + 1)(L - 1) P^2 * 8 + 4 min(K, SEED_CHUNK) L M_max^2 * 8 for K seeds.
    """
    kernels = (steps + 1) * max(depth - 1, 1) * samples**2
    total = 2 * kernels * FLOAT
    if widths:
        total += 2 * seeds * kernels * FLOAT
        total += 4 * min(seeds, SEED_CHUNK) * depth * max(widths) ** 2 * FLOAT
    return total


def check_memory(
    *,
    samples: int,
    steps: int,
    depth: int,
    widths: Sequence[int] = (),
    seeds: int = 0,
    budget: int = BUDGET_BYTES,
) -> None:
    """Refuse a run whose ``run_bytes`` exceeds ``budget``, naming the sizes.

    Raises:
        InvalidInputError: the estimate is over the budget.
    """
    need = run_bytes(
        samples=samples, steps=steps, depth=depth, widths=widths, seeds=seeds
    )
    if need <= budget:
        return
    sizes = f"{samples} training points over {steps} steps at depth {depth}"
    held = "P x P feature kernels per step and layer"
    fewer = "fewer samples or steps"
    if widths:
        sizes += f" with widths up to {max(widths)} and {seeds} seeds"
        held += ", M x M weights per seed"
        fewer = "fewer samples, steps or seeds, or smaller widths"
    raise InvalidInputError(
        f"{sizes} need about {need / GIB:.3g} GiB ({held}); the limit commands "
        f"keep under {budget / GIB:.3g} GiB: use {fewer}"
    )
