"""Time one training step of each method and compare its FLOP rate with a matmul chain.

For each method the script jits ``Simulator.step_fn``, runs it once to compile, then
times ``--repeats`` steps (median). Its FLOP count is the dense matrix-product work the
step needs, counted by hand below (elementwise work is left out, so the ratio is an
efficiency of the useful work, not of every instruction). The reference is a jitted
plain forward chain x W_1^T W_2^T ... W_L^T of the same shapes, timed in the same run,
alternately with each method's steps so that both see the same machine load.

    python benchmarks/bench_step.py                     # width 4096, batch 128, depth 3
    python benchmarks/bench_step.py --width 512 --repeats 3   # a quick look
    python benchmarks/bench_step.py --only pc-iterative-T20 pcx  # PC row and pcx

pcx comparison (``pip install -e ".[bench]"``, pcx 0.6.3; not a runtime dependency).
When pcx imports, the script builds the same PC network in pcx and times its jitted
training step alternately with muptheory's ``pc-iterative`` step, so both see the same
machine load, and prints the ratio of the medians, muptheory / pcx (below 1: muptheory
is faster). Both sides compute, for the tanh MLP with no biases, the same weights and
the same batch:

- energy E = sum_l 1/2 ||v_l - phi(v_{l-1}) W_l^T||^2 summed over the batch, with
  phi(v_0) = x and the top v_L clamped to y (gamma_l = 1: muP's PC at gamma_bar = 0);
- forward initialization v_l = u_l, then T (``--pc-steps``) simultaneous
  gradient steps v_l <- v_l - 0.1 dE/dv_l on the hidden activities;
- one SGD step on the weights, W_l <- W_l - eta_l (1/B) dE/dW_l at the final
  activities, with muP's per-layer rates eta_l = eta M^{-c_l} (all multipliers are 1).

muptheory runs ``Simulator.step_fn`` (``lax.fori_loop`` over the steps, hand-written
activity gradients); pcx runs a ``pxc.Vode`` per layer on the pre-activation, a
``pxf.scan`` over the steps of ``pxf.value_and_grad`` of the energy (vmapped per
sample, summed with ``psum``), ``optax.sgd(0.1)`` on the activities and one
``optax.sgd(eta_l)`` per layer on the weights. The compiled programs hold the same
matrix products: per inference step the products with W_2..W_L and their transposes
(x W_1^T is loop-invariant and XLA hoists it in both), plus a feed-forward pass, the
final errors and the weight gradients. Every timed step of either side starts from
the same weights. Before timing, one step of each is compared: the script prints, per
layer, max |difference of the updates| / max |update|. That is float32 rounding, up to
about 1e-2 for the hidden layer at width 4096, whose update is a small difference of
nearly equal errors; in float64 the two agree to 1e-10 (checked by hand at widths 64
and 1024). Differences that remain: muptheory's step also returns the batch loss (from
the feed-forward pass it already computes) and a step counter; pcx's step goes through
its parameter tracking (Python tree operations on every call, included in its time);
pcx rebuilds its activity optimizer's state inside every step, as its examples do
(SGD has no state, so this costs nothing).
"""

from __future__ import annotations

import argparse
import importlib.metadata
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
        "bp-kfac": _second_order("kfac"),
        "bp-shampoo": _second_order("shampoo"),
    }


def _second_order(optimizer: str) -> tuple[MethodConfig, Parameterization]:
    """K-FAC or Shampoo at its derived muP, damping at the derived exponents."""
    from muptheory.symbolic import derive_mup

    config = MethodConfig.create("bp", optimizer=optimizer)
    return config, derive_mup(config).parameterization


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
    if name in ("bp-kfac", "bp-shampoo"):
        return 2 * forward + sum(
            _second_order_flops(arch.sizes[k - 1], arch.sizes[k], B)
            for k in range(1, arch.depth + 1)
        )
    if name.startswith("bp"):
        return 3 * forward  # forward, input gradients, weight gradients
    if name.startswith("pc-iterative"):
        # per inference step: the errors above layer 1 and their back-projections
        # (x W_1^T does not change during inference; XLA hoists it out of the loop);
        # then the feed-forward pass, the final errors and the weight gradients
        return pc_steps * 2 * above_first + forward + above_first + forward
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


def _second_order_flops(n_in: int, n_out: int, batch: int) -> float:
    """One layer's K-FAC or Shampoo direction as ``simulate/second_order.py``
    computes it, k = min(n, B) per side: two reduced Householder QRs with Q formed
    (about 4 n B k each), the k x k cores and Grams (2 k k' B each), the small
    solves or eigendecompositions (about 10 k^3 each, an upper estimate that covers
    eigh) and the products back to n_out x n_in (2 n_out k_out k_in +
    2 n_out k_in n_in). The forward pass and the deltas are counted apart."""
    k_in, k_out = min(n_in, batch), min(n_out, batch)
    qr = 4.0 * batch * (n_in * k_in + n_out * k_out)
    cores = 2.0 * batch * (k_in * k_out + k_in**2 + k_out**2)
    small = 10.0 * (k_in**3 + k_out**3)
    back = 2.0 * n_out * k_out * k_in + 2.0 * n_out * k_in * n_in
    return qr + cores + small + back


def matmul_chain(arch: Architecture, batch: int, dtype):
    """A jitted forward chain of plain products of the same shapes, ready to call."""
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

    return lambda: chain(x, Ws)


def _time_alternately(fns, repeats: int) -> list[float]:
    """Median seconds of each of ``fns``, called in turn so all see the same load.

    On a shared machine the load changes within seconds; timing a method and its
    reference alternately keeps their ratio meaningful.
    """
    for fn in fns:  # compile and warm up
        jax.block_until_ready(fn())
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


class PCXStep:
    """The PC step of a muptheory ``Simulator`` rebuilt in pcx, from the same weights.

    ``run()`` puts the starting weights back (a few Python assignments) and takes
    one jitted pcx training step: forward initialization, T inference steps, one SGD
    step on the weights. It returns the new weights.
    """

    def __init__(self, sim: Simulator, state, x, y, pc_steps: int) -> None:
        cfg = sim.config
        if cfg.inference != "iterative" or cfg.fpa or any(g != 1 for g in sim.gammas):
            raise NotImplementedError(
                "this pcx network is iterative inference without FPA and with all "
                f"gamma_l = 1; got {cfg.inference}, fpa={cfg.fpa}, gammas {sim.gammas}"
            )
        import optax
        import pcx
        import pcx.functional as pxf
        import pcx.nn as pxnn
        import pcx.predictive_coding as pxc
        import pcx.utils as pxu

        phi = {"tanh": jnp.tanh, "linear": lambda u: u, "relu": jax.nn.relu}[
            sim.arch.activation
        ]

        class Network(pxc.EnergyModule):
            """A Vode per layer holds v_l, predicted by W_l phi(v_{l-1}); v_L is clamped."""

            def __init__(self, sizes):
                super().__init__()
                self.phi = pcx.static(phi)
                self.layers = [
                    pxnn.Linear(n_in, n_out, bias=False)
                    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
                ]
                self.vodes = [pxc.Vode() for _ in self.layers]
                self.vodes[-1].h.frozen = True  # only read by the mask below

            def __call__(self, x, y=None):
                a = x
                for layer, vode in zip(self.layers, self.vodes, strict=True):
                    a = self.phi(vode(layer(a)))  # the Vode sits on the pre-activation
                if y is not None:
                    self.vodes[-1].set("h", y)
                return self.vodes[-1].get("u")

        per_sample = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))

        # masks are built anew at each use: M.to() changes the mask it is called on
        def hidden():
            return pxu.M_hasnot(pxc.VodeParam, frozen=True)

        def weights():
            return pxu.M(pxnn.LayerParam)

        @pxf.vmap(per_sample, in_axes=(0, 0), out_axes=0)
        def initialize(x, y, *, model):
            return model(x, y)

        @pxf.vmap(per_sample, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
        def energy(x, *, model):
            prediction = model(x)
            return jax.lax.psum(model.energy(), "batch"), prediction

        @pxf.jit(static_argnums=0)
        def train_step(steps, x, y, *, model, optim_h, optim_w):
            # forward initialization: every Vode starts at its input u_l
            with pxu.step(
                model, (pxc.STATUS.INIT, None), clear_params=pxc.VodeParam.Cache
            ):
                initialize(x, y, model=model)

            # inference: gradient steps on the hidden activities
            optim_h.init(hidden()(model))

            def inference_step(_, *, model, optim_h):
                with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                    _, grads = pxf.value_and_grad(
                        hidden().to([False, True]), has_aux=True
                    )(energy)(x, model=model)
                optim_h.step(model, grads["model"])
                return (), None

            pxf.scan(inference_step, xs=jnp.arange(steps))(model=model, optim_h=optim_h)
            optim_h.clear()

            # learning: one SGD step per layer on the batch mean of dE/dW_l
            with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                _, grads = pxf.value_and_grad(
                    weights().to([False, True]), has_aux=True
                )(energy)(x, model=model)
            for layer, optim, g in zip(
                model.layers, optim_w, grads["model"].layers, strict=True
            ):
                optim.step(layer, g, scale_by=1.0 / x.shape[0])

        # muptheory moves w_l by eta_l m_l G_l, so W_l = m_l w_l moves by eta_l m_l^2
        rates = [
            r * m
            for r, m in zip(sim.rates().weights, sim.scales.multipliers, strict=True)
        ]
        self.start = sim.effective(state)
        self.model = Network(sim.arch.sizes)
        self.reset()
        rate = cfg.inference_rate
        self.optim_h = pxu.Optim(lambda: optax.sgd(rate))
        self.optim_w = [
            pxu.Optim(lambda r=r: optax.sgd(r), weights()(layer))
            for layer, r in zip(self.model.layers, rates, strict=True)
        ]
        self._step = train_step
        self.x, self.y, self.pc_steps = x, y, pc_steps

    def reset(self) -> None:
        for layer, W in zip(self.model.layers, self.start, strict=True):
            layer.nn.weight.set(W)

    def run(self) -> list:
        self.reset()
        self._step(
            self.pc_steps,
            self.x,
            self.y,
            model=self.model,
            optim_h=self.optim_h,
            optim_w=self.optim_w,
        )
        return self.weights()

    def weights(self) -> list:
        return [layer.nn.weight.get() for layer in self.model.layers]


def compare_with_pcx(arch, x, y, pc_steps: int, repeats: int) -> None:
    """Time muptheory's iterative PC step against pcx's and print the ratio."""
    try:
        import pcx  # noqa: F401
    except ImportError:
        print(
            'pcx: not installed; pip install -e ".[bench]" adds it (comparison skipped)'
        )
        return
    config = MethodConfig.create("pc", inference="iterative", inference_steps=pc_steps)
    sim = Simulator(config, preset("mup"), arch, lr=0.01)
    state = sim.init(0)
    step = jax.jit(sim.step_fn)
    theirs = PCXStep(sim, state, x, y, pc_steps)

    # the same computation: one step of each from the same weights
    new, _ = step(state, x, y)
    ours = [
        m * (w1 - w0)
        for m, w0, w1 in zip(
            sim.scales.multipliers, state.weights, new.weights, strict=True
        )
    ]
    after = theirs.run()
    gaps = [
        float(jnp.max(jnp.abs((w1 - w0) - d)) / jnp.max(jnp.abs(d)))
        for w0, w1, d in zip(theirs.start, after, ours, strict=True)
    ]
    print(
        "pcx: same weight update per layer up to relative "
        + ", ".join(f"{g:.1e}" for g in gaps)
    )

    seconds_ours, seconds_pcx = _time_alternately(
        [lambda: step(state, x, y), theirs.run],
        repeats,
    )
    version = importlib.metadata.version("pcx")
    print(
        f"pc-iterative-T{pc_steps}: muptheory {1e3 * seconds_ours:.1f} ms, "
        f"pcx {version} {1e3 * seconds_pcx:.1f} ms, "
        f"muptheory/pcx = {seconds_ours / seconds_pcx:.2f} (median of {repeats})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--input-dim", type=int, default=784)
    parser.add_argument("--outputs", type=int, default=10)
    parser.add_argument("--pc-steps", type=int, default=20, help="PC inference steps T")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only", nargs="*", help="run only these methods ('pcx': the comparison)"
    )
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
    chain = matmul_chain(arch, args.batch, dtype)
    chain_flops = sum(layer_flops(arch, args.batch))
    print(
        f"{'method':<22}{'ms/step':>10}{'GFLOP':>9}{'GFLOP/s':>10}"
        f"{'chain GFLOP/s':>15}{'vs chain':>10}"
    )
    for name, (config, param) in methods(args.pc_steps).items():
        if args.only and name not in args.only:
            continue
        sim = Simulator(config, param, arch, lr=0.01)
        state = sim.init(0)
        step = jax.jit(sim.step_fn)
        seconds, chain_seconds = _time_alternately(
            [lambda step=step, state=state: step(state, x, y), chain], args.repeats
        )
        flops = step_flops(name, arch, args.batch, args.pc_steps)
        rate, reference = flops / seconds, chain_flops / chain_seconds
        print(
            f"{name:<22}{1e3 * seconds:>10.1f}{flops / 1e9:>9.2f}"
            f"{rate / 1e9:>10.1f}{reference / 1e9:>15.1f}{rate / reference:>10.2f}"
        )
    if not args.only or "pcx" in args.only:
        compare_with_pcx(arch, x, y, args.pc_steps, args.repeats)


if __name__ == "__main__":
    main()
