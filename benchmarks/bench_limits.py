"""Limit engine vs the simulator: time to a given accuracy on BP's training curve.

Case: depth 4, 16 training points, 10 outputs, 100 steps of BP under muP on the
engine's linear-teacher task. The engine computes the limit once. The JAX simulator
(float64, linear, full batch; seeds vmapped, compilation included in its time)
approximates it by averaging the loss curves of several seeds at width M; their error
max_t |mean_seeds loss_M(t) - loss_inf(t)| is measured at each width, and the time a
finite-width estimate needs to be as accurate as the widest one measured (and, by
the fitted error slope, to reach 1e-3) is printed next to the engine's time.

Run: python benchmarks/bench_limits.py [--seeds S] [--widths 128,256,...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from muptheory.limits import limit_dynamics, linear_teacher_task, maximal_update
from muptheory.limits.convergence import fit_slope
from muptheory.limits.simulated import simulated_dynamics
from muptheory.methods import MethodConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--widths", default="128,256,512,1024,2048")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    config = MethodConfig.create("bp")
    param = maximal_update(config)
    task = linear_teacher_task(n_train=16, n_outputs=10)
    common = dict(depth=4, steps=args.steps, lr=0.05)

    start = time.perf_counter()
    limit = limit_dynamics(config, param, task, **common)
    limit_time = time.perf_counter() - start
    print(f"limit engine: {limit_time:.2f} s (basis sizes {limit.basis_sizes})")
    print(f"{'width':>7}{'seeds':>7}{'time/run s':>12}{'error of mean':>16}")
    errors, costs = [], []
    for width in widths:
        start = time.perf_counter()
        runs = simulated_dynamics(
            config, param, task, width=width, seeds=range(args.seeds), **common
        )
        elapsed = time.perf_counter() - start
        curves = [run.loss for run in runs]
        error = float(np.max(np.abs(np.mean(curves, axis=0) - limit.loss)))
        errors.append(error)
        costs.append(elapsed)
        print(f"{width:7d}{args.seeds:7d}{elapsed / args.seeds:12.2f}{error:16.3e}")

    slope = fit_slope(widths, errors)
    print(f"error of the seed mean ~ M^{slope:.2f}")
    print(
        f"the simulator reaches {errors[-1]:.2e} in {costs[-1]:.1f} s "
        f"(width {widths[-1]}, {args.seeds} seeds): "
        f"{costs[-1] / limit_time:.0f}x the engine's {limit_time:.2f} s"
    )
    # extrapolate along the fitted line error = a M^slope, with time per run
    # ~ M^2 (dense M x M products) at the same number of seeds
    intercept = np.polyfit(np.log(widths), np.log(errors), 1)[1]
    target = 1e-3
    if slope < 0:
        width = float(np.exp((np.log(target) - intercept) / slope))
        needed = costs[-1] * (width / widths[-1]) ** 2
        print(
            f"to reach {target:.0e}: width ~{width:.0f}, about {needed:.0f} s, "
            f"{needed / limit_time:.0f}x the engine (extrapolated from the fit)"
        )


if __name__ == "__main__":
    main()
