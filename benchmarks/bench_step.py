"""Time one training step of each method and compare its FLOP rate with a matmul chain.

For each method the script jits ``Simulator.step_fn``, runs it once to compile, then
times ``--repeats`` steps (median). Its FLOP count is the dense matrix-product work the
step needs, counted by hand below (elementwise work is left out, so the ratio is an
efficiency of the useful work, not of every instruction). The reference is a jitted
plain forward chain x W_1^T W_2^T ... W_L^T of the same shapes, timed in the same run.

    python benchmarks/bench_step.py                     # width 4096, batch 128, depth 3
    python benchmarks/bench_step.py --width 512 --repeats 3   # a quick look

pcx (the JAX predictive-coding library) is compared when it can be imported; it is
not a dependency, and the script says so when it is absent.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization, preset
from muptheory.simulate import Architecture, Simulator

TP_MUP = Parameterization(b=("1/2", "1/2", "1/2"), c=(0, 1, 1), name="tp-mup")
GNT_MUP = Parameterization(b=("1/2", "1/2", 1), c=(0, 1, 1), name="gnt-mup")


def methods(pc_steps: int) -> dict[str, tuple[MethodConfig, Parameterization]]:
    return {
        "bp-sgd": (MethodConfig.create("bp"), preset("mup")),
        "bp-adam": (MethodConfig.create("bp", optimizer="adam"), preset("mup")),
        f"pc-iterative-T{pc_steps}": (
            MethodConfig.create("pc", inference="iterative", inference_steps=pc_steps),
            preset("mup"),
        ),
        "pc-sequential-fpa": (
            MethodConfig.create("pc", inference="sequential", fpa=True),
            preset("mup"),
        ),
        "gnt": (MethodConfig.create("gnt"), GNT_MUP),
        "tp-ridge": (MethodConfig.create("tp"), TP_MUP),
        "dtp-ridge": (MethodConfig.create("dtp"), TP_MUP),
        "dtp-trained": (MethodConfig.create("dtp", feedback="trained"), TP_MUP),
    }


def layer_flops(arch: Architecture, batch: int) -> list[float]:
    """2 B n_{l-1} n_l per layer: one batched product with W_l."""
    sizes = arch.sizes
    return [2.0 * batch * sizes[k - 1] * sizes[k] for k in range(1, arch.depth + 1)]


def step_flops(name: str, arch: Architecture, batch: int, pc_steps: int) -> float:
    """Matrix-product FLOPs of one step of ``name``."""
    per_layer = layer_flops(arch, batch)
    forward = sum(per_layer)
    above_first = forward - per_layer[0]  # products that carry errors downwards
    C, B = arch.n_outputs, batch
    hidden = arch.sizes[1:-1]
    if name.startswith("bp"):
        return 3 * forward  # forward, input gradients, weight gradients
    if name.startswith("pc-iterative"):
        # per inference step: all errors (a forward) and their back-projections
        return pc_steps * (forward + above_first) + forward + forward
    if name.startswith("pc-sequential"):
        return 2 * forward + above_first + forward
    if name == "gnt":
        # forward, C reverse passes per sample, J J^T and J^T a, weight gradients
        gram = sum(2.0 * B * C * C * n + 4.0 * B * C * n for n in hidden)
        return forward + C * above_first + gram + forward
    if name == "dtp-trained":
        # noisy pass, reconstruction residual and V gradient, targets sent by V
        return forward + 4 * above_first + above_first + forward
    # TP/DTP ridge, per layer l >= 2: gram U_l U_l^T, right-hand side, a B x B solve
    # and the product sending the target down
    sizes = arch.sizes
    ridge = sum(
        2.0 * B * B * (2 * sizes[k] + sizes[k - 1]) + B**3
        for k in range(2, arch.depth + 1)
    )
    return forward + ridge + forward


def matmul_chain_rate(arch: Architecture, batch: int, repeats: int, dtype) -> float:
    """FLOP/s of a jitted forward chain of plain products of the same shapes."""
    key = jax.random.PRNGKey(0)
    Ws = [
        jax.random.normal(k, arch.shape(i + 1), dtype) / np.sqrt(arch.shape(i + 1)[1])
        for i, k in enumerate(jax.random.split(key, arch.depth))
    ]
    x = jax.random.normal(key, (batch, arch.input_dim), dtype)

    @jax.jit
    def chain(x, Ws):
        for W in Ws:
            x = x @ W.T
        return x

    seconds = _time(lambda: chain(x, Ws), repeats)
    return sum(layer_flops(arch, batch)) / seconds


def _time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pcx_time(arch: Architecture, batch: int, pc_steps: int, repeats: int):
    """Seconds per step of the same PC network in pcx, or None when unavailable."""
    try:
        import pcx  # noqa: F401
    except ImportError:
        return None
    # pcx's API changes between releases; comparing needs a pinned version.
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--input-dim", type=int, default=784)
    parser.add_argument("--outputs", type=int, default=10)
    parser.add_argument("--pc-steps", type=int, default=20, help="PC inference steps T")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="run only these methods")
    args = parser.parse_args(argv)

    arch = Architecture(
        width=args.width,
        depth=args.depth,
        input_dim=args.input_dim,
        n_outputs=args.outputs,
        activation="tanh",
    )
    dtype = jnp.float32
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((args.batch, args.input_dim)), dtype)
    y = jnp.asarray(
        np.eye(args.outputs)[rng.integers(0, args.outputs, args.batch)], dtype
    )

    print(
        f"width {args.width}, batch {args.batch}, depth {args.depth}, "
        f"d {args.input_dim}, C {args.outputs}, float32, {jax.devices()[0].platform}, "
        f"median of {args.repeats}"
    )
    reference = matmul_chain_rate(arch, args.batch, args.repeats, dtype)
    print(f"matmul chain: {reference / 1e9:.1f} GFLOP/s (reference)")
    print(f"{'method':<22}{'ms/step':>10}{'GFLOP':>9}{'GFLOP/s':>10}{'vs chain':>10}")
    for name, (config, param) in methods(args.pc_steps).items():
        if args.only and name not in args.only:
            continue
        sim = Simulator(config, param, arch, lr=0.01)
        state = sim.init(0)
        step = jax.jit(sim.step_fn)
        seconds = _time(
            lambda sim=sim, step=step, state=state: step(state, x, y), args.repeats
        )
        flops = step_flops(name, arch, args.batch, args.pc_steps)
        rate = flops / seconds
        print(
            f"{name:<22}{1e3 * seconds:>10.1f}{flops / 1e9:>9.2f}"
            f"{rate / 1e9:>10.1f}{rate / reference:>10.2f}"
        )
    pcx = pcx_time(arch, args.batch, args.pc_steps, args.repeats)
    if pcx is None:
        print("pcx: not importable here (optional); no comparison made")


if __name__ == "__main__":
    main()
