"""Sub-commands of the limit engine: ``limit`` and ``interpolation``.

``muptheory limit METHOD --param NAME`` trains a deep linear network in the
infinite-width limit (exact engine for feature-learning parameterizations, the
kernel-regime formula for BP with b = 1/2 everywhere) and can compare it with
networks of the given widths trained by the JAX simulator (``--widths``).
``muptheory interpolation --depth L`` prints PC's limiting cosine similarities with
the first-order gradient, the Gauss-Newton-target update (damping -> 0) and PC's own
Gauss-Newton end as gamma0 varies. Engines are imported when the command runs.
"""

from __future__ import annotations

import argparse
import math

from muptheory.cli.common import (
    add_method_argument,
    add_method_options,
    add_subcommand,
    atomic_write_bytes,
    print_json,
)
from muptheory.errors import InvalidInputError, MuptheoryError, UnsupportedError
from muptheory.io import figure_format

LIMIT_HELP = "exact infinite-width training dynamics of a deep linear network"
INTERPOLATION_HELP = "PC's limiting interpolation between first order and Gauss-Newton"

INTERPOLATION_EPILOG = """\
The state is reached by BP steps under muP in the limit (10 outputs, sigma = 0.5,
20 steps by default). At initialization M C_gamma is a multiple of the identity and
every cosine is 1; training makes it anisotropic so the gamma0 dependence shows.
Columns: cos(PC,GD) with BP's gradient; cos(PC,GNT) with the Gauss-Newton-target
update of Meulemans et al. with damping -> 0 (each layer preconditioned by its own
M J_l J_l^T, J_l = W_{L:l+1}); cos(PC,GN) with PC's own gamma0 -> infinity end (all
layers preconditioned by the sum of those matrices). GNT and the GN end coincide in
the first layer of a one-hidden-layer network. Headline values are the first
layer's; per-layer values are in the JSON too.
"""


def register(subparsers) -> None:
    """Add ``limit`` and ``interpolation`` to the parser."""
    _register_limit(subparsers)
    _register_interpolation(subparsers)


def _register_limit(subparsers) -> None:
    parser = add_subcommand(subparsers, "limit", help=LIMIT_HELP)
    add_method_argument(parser)
    parser.add_argument(
        "--param",
        required=True,
        metavar="NAME",
        help="parameterization: mup (the method's muP), limit-mup (the limit "
        "engine's own maximal-update exponents) or a preset (sp, ntk, ...)",
    )
    _add_network_options(parser, steps=20, lr=0.05, sigma=1.0)
    parser.add_argument(
        "--samples", type=int, default=16, metavar="P", help="training points (16)"
    )
    parser.add_argument(
        "--gamma0", type=_positive_float, metavar="G", help="pc: gamma_L prefactor"
    )
    parser.add_argument("--mu0", type=_positive_float, metavar="X", help="tp/dtp: mu0")
    parser.add_argument("--beta", type=_positive_float, help="tp/dtp: target step (1)")
    parser.add_argument(
        "--data",
        metavar="NAME_OR_PATH",
        help="a muptheory.data dataset (digits, mnist5k, synthetic, IDX dir); "
        "default: the engine's anisotropic linear teacher",
    )
    parser.add_argument(
        "--activation", default="linear", help="only linear is exact (default)"
    )
    parser.add_argument(
        "--widths",
        nargs="+",
        metavar="M",
        help="also train the JAX simulator at these widths (two or more distinct, "
        "comma- or space-separated; linear, float64) and fit each quantity's error "
        "slope against width",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        help="seeds per width, only with --widths (8; the loss and PC's per-layer cosines "
        "and update norms, a few numbers per step, need about 128 for a slope "
        "within +-0.05; the printed +- is the slope's standard error)",
    )
    parser.add_argument("--seed", type=_seed, default=0, help="data / readout seed (0)")
    add_method_options(parser)
    parser.set_defaults(run=run_limit)


def _register_interpolation(subparsers) -> None:
    parser = add_subcommand(
        subparsers,
        "interpolation",
        help=INTERPOLATION_HELP,
        description=INTERPOLATION_HELP + "\n\n" + INTERPOLATION_EPILOG,
    )
    _add_network_options(parser, steps=20, lr=0.05, sigma=0.5)
    parser.add_argument(
        "--gamma0",
        type=_positive_float,
        nargs="+",
        metavar="G",
        help="gamma0 values (default: 25 values from 1e-3 to 1e3)",
    )
    parser.add_argument("--seed", type=_seed, default=0, help="data seed (0)")
    parser.set_defaults(run=run_interpolation)


def _add_network_options(parser, *, steps: int, lr: float, sigma: float) -> None:
    parser.add_argument(
        "--depth", type=int, default=3, metavar="L", help="weight layers (3)"
    )
    parser.add_argument(
        "--steps", type=int, default=steps, metavar="T", help=f"steps ({steps})"
    )
    parser.add_argument(
        "--lr", type=_positive_float, default=lr, help=f"learning rate ({lr})"
    )
    parser.add_argument(
        "--sigma", type=_positive_float, default=sigma, help=f"init scale ({sigma})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--plot", metavar="FILE", help="write a figure (png, pdf)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"must be a non-negative integer, got {text!r}"
        )
    return value


def _memory_errors(run):
    """Run a command, turning running out of memory into a one-line error."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except MemoryError:
            raise MuptheoryError(
                "ran out of memory; use fewer samples, steps, seeds or smaller widths"
            ) from None

    return wrapped


# -- limit ------------------------------------------------------------------------


@_memory_errors
def run_limit(args: argparse.Namespace) -> int:
    from muptheory.limits.dynamics import check_activation, check_sigma, limit_dynamics
    from muptheory.limits.kernel import kernel_regime_limit
    from muptheory.limits.memory import check_memory

    config = _method_config(args)
    _check_sizes(args)
    _check_applicable(args, config)
    widths = _widths(args.widths) if args.widths else []
    check_activation(args.activation)
    check_sigma(args.sigma, args.depth)
    check_memory(
        samples=args.samples,
        steps=args.steps,
        depth=args.depth,
        widths=widths,
        seeds=args.seeds,
    )
    param = _limit_parameterization(args.param, config)
    task = _task(args)
    if _is_kernel_regime(config, param):
        if args.widths:
            raise UnsupportedError(
                "--widths is not supported in the kernel regime: the comparison "
                "there conditions each network's curve on its own random f_0 "
                "(tests/test_limits_kernel.py does it); use a feature-learning "
                "parameterization such as mup"
            )
        result = kernel_regime_limit(
            param,
            task,
            depth=args.depth,
            times=list(range(args.steps + 1)),
            lr=args.lr,
            sigma=args.sigma,
        )
        out = {
            "regime": "kernel",
            "loss": result.loss.tolist(),
            "expected_loss": result.expected_loss.tolist(),
        }
        curve = result.expected_loss
    else:
        run = limit_dynamics(
            config,
            param,
            task,
            depth=args.depth,
            steps=args.steps,
            lr=args.lr,
            sigma=args.sigma,
            beta=args.beta,
            activation=args.activation,
            seed=args.seed,
        )
        out = {"regime": "feature learning", **run.to_json()}
        curve = run.loss
    out.update(
        method=config.method,
        options=config.options(),
        parameterization=param.to_json(),
        depth=args.depth,
        samples=task.x_train.shape[0],
        steps=args.steps,
    )
    conv = None
    if widths:
        conv = _convergence(args, config, param, task, widths)
        out["convergence"] = conv.to_json()
    if args.plot:
        _plot_limit(args.plot, curve, conv, title=f"{config.method}, {args.param}")
    if args.json:
        print_json(out)
    else:
        print(
            f"{config.method} under {args.param} ({out['regime']}), depth {args.depth}"
        )
        print(f"loss: {curve[0]:.6g} -> {curve[-1]:.6g} after {args.steps} steps")
        if conv is not None:
            for name, slope in conv.slopes.items():
                fitted = "exact (error < 1e-10)" if slope is None else f"{slope:.3f}"
                spread = conv.slope_errors.get(name)
                if spread is not None:
                    fitted += f" +- {spread:.3f}"
                print(f"{name}: error slope {fitted} over widths {conv.widths}")
    return 0


def _method_config(args):
    from muptheory.cli.common import METHOD_OPTION_NAMES
    from muptheory.methods import MethodConfig

    options = {k: getattr(args, k, None) for k in METHOD_OPTION_NAMES}
    if options.get("lambda_zero") is None:
        options.pop("lambda_zero")
    options["gamma0"] = args.gamma0
    options["mu0"] = args.mu0
    return MethodConfig.create(args.method, **options)


def _check_applicable(args, config) -> None:
    """Refuse options the chosen method or mode does not use; fill their defaults."""
    if args.beta is not None and config.method not in ("tp", "dtp"):
        raise InvalidInputError(
            f"--beta is the TP/DTP output-target step; {config.method} does not use it"
        )
    if args.beta is None:
        args.beta = 1.0
    if args.seeds is not None and not args.widths:
        raise InvalidInputError(
            "--seeds is the number of networks per width in the finite-width "
            "comparison; give --widths too"
        )
    if args.seeds is None:
        args.seeds = 8


def _widths(items: list[str]) -> list[int]:
    """--widths as integers: comma- or space-separated, two or more, distinct."""
    from muptheory.limits.convergence import check_widths

    text = ",".join(items)
    widths = []
    for item in text.split(","):
        try:
            widths.append(int(item))
        except ValueError:
            what = "an empty item" if not item.strip() else f"{item.strip()!r}"
            raise InvalidInputError(
                f"--widths takes positive integers separated by commas or spaces "
                f"(e.g. 64,128,256); {text!r} has {what}"
            ) from None
    try:
        return check_widths(widths)
    except InvalidInputError as err:
        raise InvalidInputError(f"--widths: {err}") from None


def _check_sizes(args) -> None:
    for name in ("depth", "steps", "samples", "seeds"):
        value = getattr(args, name, None)
        least = {"depth": 2, "steps": 0}.get(name, 1)
        if value is not None and value < least:
            raise InvalidInputError(f"--{name} must be at least {least}, got {value}")


def _limit_parameterization(name: str, config):
    """``limit-mup``: the limit engine's own maximal-update exponents; anything else
    (``mup``, presets) as every command resolves it."""
    from muptheory.cli.common import resolve_parameterization
    from muptheory.limits.scaling import maximal_update

    if name.strip().lower() == "limit-mup":
        return maximal_update(config)
    return resolve_parameterization(name, config)


def _is_kernel_regime(config, param) -> bool:
    from muptheory.limits.scaling import HALF

    p = param.without_multipliers().to_fan_in()
    return config.method == "bp" and all(v == HALF for v in p.b.as_tuple())


def _task(args):
    from muptheory.limits.tasks import Task, linear_teacher_task

    if args.data is None:
        return linear_teacher_task(n_train=args.samples, seed=args.seed)
    from muptheory.data import load_dataset

    data = load_dataset(args.data, seed=args.seed, n_train=args.samples, n_test=16)
    return Task.of(data)


def _convergence(args, config, param, task, widths: list[int]):
    from muptheory.limits.convergence import PC_QUANTITIES, QUANTITIES, convergence

    quantities = [
        q for q in QUANTITIES if config.method == "pc" or q not in PC_QUANTITIES
    ]
    return convergence(
        config,
        param,
        task,
        depth=args.depth,
        steps=args.steps,
        lr=args.lr,
        sigma=args.sigma,
        beta=args.beta,
        widths=widths,
        seeds=args.seeds,
        quantities=quantities,
    )


def _plot_limit(path: str, curve, conv, *, title: str) -> None:
    fig, axes = _figure(2 if conv is not None else 1)
    axes[0].semilogy(curve, label="limit")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss")
    axes[0].set_title(title)
    if conv is not None:
        for name, errors in conv.errors.items():
            if conv.slopes[name] is None:
                continue  # exact at every width: nothing to draw on a log scale
            spread = conv.slope_errors.get(name)
            label = f"{name} (slope {conv.slopes[name]:.2f}"
            label += ")" if spread is None else f" +- {spread:.2f})"
            axes[1].loglog(conv.widths, errors, "o-", label=label)
        ref = [
            conv.errors["f_train"][0] * (w / conv.widths[0]) ** -0.5
            for w in conv.widths
        ]
        axes[1].loglog(conv.widths, ref, "k--", label="M^-1/2")
        axes[1].set_xlabel("width M")
        axes[1].set_ylabel("mean over seeds of max_t |simulator - limit|")
        # up to ten curves: the legend goes beside the panel, not over it
        axes[1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    _save(fig, path)


# -- interpolation -------------------------------------------------------------------


@_memory_errors
def run_interpolation(args: argparse.Namespace) -> int:
    import numpy as np

    from muptheory.limits.dynamics import check_sigma
    from muptheory.limits.memory import check_memory
    from muptheory.limits.pc import pc_interpolation
    from muptheory.limits.tasks import linear_teacher_task

    _check_sizes(args)
    check_sigma(args.sigma, args.depth)
    gamma0 = args.gamma0 if args.gamma0 else list(np.logspace(-3, 3, 25))
    task = linear_teacher_task(n_outputs=10, seed=args.seed)
    check_memory(samples=task.x_train.shape[0], steps=args.steps, depth=args.depth)
    result = pc_interpolation(
        task,
        depth=args.depth,
        gamma0=gamma0,
        train_steps=args.steps,
        lr=args.lr,
        sigma=args.sigma,
    )
    out = {
        "depth": args.depth,
        "outputs": task.n_outputs,
        "sigma": args.sigma,
        "lr": args.lr,
        **result.to_json(),
    }
    if args.plot:
        _plot_interpolation(args.plot, out)
    if args.json:
        print_json(out)
    else:
        print(f"PC at gamma_bar_last = -1, depth {args.depth}, first layer:")
        print(f"{'gamma0':>12}{'cos(PC,GD)':>14}{'cos(PC,GNT)':>14}{'cos(PC,GN)':>14}")
        for g, a, b, c in zip(
            out["gamma0"],
            out["cos_pc_gd"],
            out["cos_pc_gnt"],
            out["cos_pc_gn"],
            strict=True,
        ):
            print(f"{g:12.4g}{a:14.6f}{b:14.6f}{c:14.6f}")
    return 0


def _plot_interpolation(path: str, out: dict) -> None:
    fig, axes = _figure(1)
    axes[0].semilogx(out["gamma0"], out["cos_pc_gd"], "o-", label="cos(PC, GD)")
    axes[0].semilogx(out["gamma0"], out["cos_pc_gnt"], "^-", label="cos(PC, GNT)")
    axes[0].semilogx(
        out["gamma0"], out["cos_pc_gn"], "s--", label="cos(PC, GN end)", ms=3
    )
    axes[0].set_xlabel("gamma0  (gamma_L = gamma0 M)")
    axes[0].set_ylabel("limiting cosine, first layer")
    axes[0].set_title(f"PC interpolation, depth {out['depth']}")
    axes[0].legend()
    _save(fig, path)


# -- figures ---------------------------------------------------------------------------


def _figure(panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    return fig, list(axes[0])


def _save(fig, path: str) -> None:
    import io

    import matplotlib.pyplot as plt

    try:
        suffix = figure_format(path)
    except InvalidInputError:
        plt.close(fig)
        raise
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format=suffix)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
