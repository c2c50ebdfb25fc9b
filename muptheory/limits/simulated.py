"""Finite-width trajectories from the JAX simulator, measured as the limit reports them.

The finite-width side of ``muptheory.limits.convergence``. ``simulated_dynamics``
builds one ``muptheory.simulate.Simulator`` at width M with the same learning rule,
parameterization, init scale sigma, base learning rate, PC energy coefficients
gamma_l and TP ridge constant mu as ``limit_dynamics`` (linear activation, float64,
full batch of the task's P training points), trains one network per seed, and reads
off at every step t = 0..T, from the simulator's own state:

    f_train, f_test   outputs on the training and test inputs,
    loss              (1/2P) sum_p ||f_p - y_p||^2,
    kernels           K_l = H_l H_l^T / M, hidden layers l = 1..L-1 (rows: samples),
    pc_cos_gd         per layer, the Frobenius cosine of the update Delta W_l the
                      simulator's PC step makes and minus the gradient of the
                      simulator's BP at the same weights (PC only),
    pc_cos_gnt        per layer, the cosine of the same PC update with the update
                      of the simulator's Gauss-Newton-target rule with lambda = 0
                      (pseudo-inverse targets) at the same weights (PC only),
    pc_update_norms   per layer, the Frobenius norm of that PC update in Theta(1)
                      units: |Delta W_1|_F / sqrt(M), |Delta W_l|_F (hidden),
                      sqrt(M) |Delta W_L|_F (PC only),
    pc_output_error   (I + C_gamma)^{-1} e = -eps_L per training point, from the
                      simulator's own PC inference (``muptheory.simulate.pc.infer``
                      with the simulator's gamma_l and solver settings; PC only),
    c_gamma_scaled    M^{1+delta} C_gamma with C_gamma = sum_{l<L} (gamma_L / gamma_l)
                      W_{L:l+1} W_{L:l+1}^T and the simulator's gamma_l (PC only),

and the output map W_{L:1}(0) at initialization in the limit's input basis, which
conditions a b_L = 1/2 limit (TP/DTP) on one sampled network.

Initial weights are passed in rather than drawn by ``Simulator.init``: w_l has
i.i.d. N(0, s_l^2) entries with the simulator's own stds s_l (``sim.scales.stds``),
drawn by numpy from the seed. Drawing them with jax.random would compile a sampler
for every width (seconds each on a CPU), and the simulator's init is that same
Gaussian with the same s_l.

The simulator has one base learning rate; the limit's per-group prefactors lr_mult
(first, hidden, last) scale each layer's step of the simulator,
w_l <- w_l + k_l (w_l' - w_l), which is exact because every rule the limit covers
moves w_l by eta_l times a direction that does not depend on eta_l.

JAX is imported when ``simulated_dynamics`` runs, so ``FiniteTrajectory`` (also used by
the numpy reference ``muptheory.limits.finite``) stays light to import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from muptheory.errors import DivergedError, InvalidInputError, UnsupportedError
from muptheory.limits.dynamics import DIVERGENCE_LOSS, input_basis
from muptheory.limits.tasks import Task
from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization

# Seeds trained at once by one compiled, vmapped step (``muptheory.limits.memory``
# counts their weights).
SEED_CHUNK = 8


@dataclass
class FiniteTrajectory:
    """The finite-width counterpart of ``LimitTrajectory`` (same shapes).

    Attributes:
        width: the hidden width M.
        loss, test_loss: (T+1,).
        f_train, f_test: (T+1, P, C) and (T+1, P_test, C).
        kernels: (T+1, L-1, P, P).
        pc_cos_gd: (T+1, L), PC only (else None).
        c_gamma_scaled: M^{1+delta} C_gamma, (T+1, C, C), PC only (else None).
        pc_cos_gnt, pc_update_norms: (T+1, L), PC only (None from the numpy
            reference ``finite_dynamics``, which does not compute them).
        pc_output_error: (T+1, P, C), PC only.
        output_map0: W_{L:1}(0) U, the C x r output map at initialization in the
            limit engine's input basis U.
        weights0: the effective weights W_1..W_L at initialization, when asked for.
    """

    width: int
    loss: np.ndarray
    test_loss: np.ndarray
    f_train: np.ndarray
    f_test: np.ndarray
    kernels: np.ndarray
    pc_cos_gd: np.ndarray | None
    c_gamma_scaled: np.ndarray | None
    output_map0: np.ndarray
    weights0: list[np.ndarray] | None = None
    pc_cos_gnt: np.ndarray | None = None
    pc_update_norms: np.ndarray | None = None
    pc_output_error: np.ndarray | None = None


def simulated_dynamics(
    config: MethodConfig,
    parameterization: Parameterization,
    task: Task,
    *,
    depth: int,
    width: int,
    steps: int,
    lr: float,
    seeds: Sequence[int],
    sigma: float = 1.0,
    beta: float = 1.0,
    lr_mult: Sequence[float] = (1.0, 1.0, 1.0),
    basis: np.ndarray | None = None,
    keep_weights: bool = False,
) -> list[FiniteTrajectory]:
    """Train one simulated network per seed at ``width``; arguments as
    ``limit_dynamics``.

    Args:
        seeds: integer seeds of the initial weights (numpy), one run each.
        basis: orthonormal d x r input basis for ``output_map0`` (default:
            ``input_basis(task)``).
        keep_weights: also return each run's effective initial weights
            (``weights0``; M x M arrays, so off by default).

    Returns:
        One ``FiniteTrajectory`` per seed.

    Raises:
        UnsupportedError: rules whose step is not linear in the learning rate or
            carries state the limit does not model (Adam, trained feedback), and
            rules other than bp, pc, tp, dtp.
        DivergedError: a simulated loss overflowed or became non-finite.
    """
    from muptheory.simulate import Architecture, SimOptions, Simulator

    task = Task.of(task)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InvalidInputError(f"width must be a positive integer, got {width!r}")
    if not isinstance(steps, int) or steps < 0:
        raise InvalidInputError(f"steps must be a non-negative integer, got {steps!r}")
    if len(lr_mult) != 3 or not all(np.isfinite(k) and k >= 0 for k in lr_mult):
        raise InvalidInputError("lr_mult needs three non-negative numbers")
    _check_rule(config)
    arch = Architecture(
        width=width,
        depth=depth,
        input_dim=task.input_dim,
        n_outputs=task.n_outputs,
        activation="linear",
    )
    options = SimOptions(sigma=sigma, tp_beta=beta)
    sim = Simulator(
        config, parameterization, arch, lr=lr, dtype="float64", options=options
    )
    references = None
    if config.method == "pc":
        # BP's gradient and the GNT update (lambda = 0) at the same weights
        references = tuple(
            Simulator(
                reference,
                parameterization,
                arch,
                lr=lr,
                dtype="float64",
                options=options,
            )
            for reference in (
                MethodConfig.create("bp"),
                MethodConfig.create("gnt", lambda_zero=True),
            )
        )
    basis = input_basis(task) if basis is None else basis
    run = _Run(sim, references, task, lr_mult=lr_mult, basis=basis)
    return run.run([int(seed) for seed in seeds], steps, keep_weights=keep_weights)


def _check_rule(config: MethodConfig) -> None:
    if config.method not in ("bp", "pc", "tp", "dtp"):
        raise UnsupportedError(
            f"simulated_dynamics covers bp, pc, tp and dtp, not {config.method!r}"
        )
    if config.method == "bp" and config.optimizer != "sgd":
        raise UnsupportedError(
            f"simulated_dynamics covers BP with SGD only, not {config.optimizer!r}: "
            "the comparison with the limit and lr_mult need a step linear in eta"
        )
    if config.method in ("tp", "dtp") and config.feedback != "ridge":
        raise UnsupportedError(
            "simulated_dynamics covers TP/DTP with the ridge feedback only, not "
            "trained feedback weights"
        )


class _Run:
    """Training and measuring with one simulator, several seeds at a time.

    One jitted function per width, vmapped over seeds, takes the simulator's pure
    step (``Simulator.step_fn``) and measures the state it starts from with the
    simulator's own forward pass and effective weights; only P x P, C x C and
    per-layer numbers leave it. Seeds run in chunks of ``SEED_CHUNK`` (the last
    chunk is padded) so every chunk reuses the compiled function.
    """

    def __init__(self, sim, references, task: Task, *, lr_mult, basis: np.ndarray):
        import jax
        import jax.numpy as jnp

        from muptheory.simulate import TrainState, precision
        from muptheory.simulate.network import activation_fn, forward
        from muptheory.simulate.pc import infer

        self.sim, self.task, self.basis = sim, task, basis
        self.precision, self.train_state = precision, TrainState
        self.jax, self.jnp = jax, jnp
        self.width, self.n_train = sim.arch.width, task.x_train.shape[0]
        self.pc = sim.config.method == "pc"
        groups = [0] + [1] * (sim.arch.depth - 2) + [2]
        layer_mult = [float(lr_mult[g]) for g in groups]
        P, M, phi = self.n_train, self.width, activation_fn("linear")
        gammas = sim.gammas
        delta = float(sim.config.gamma_bar_last - sim.config.gamma_bar_hidden)
        # Delta W_l in Theta(1) units: first / sqrt(M), hidden x 1, last x sqrt(M)
        norm_units = [
            k * M ** {0: -0.5, 1: 0.0, 2: 0.5}[g]
            for k, g in zip(layer_mult, groups, strict=True)
        ]

        def step_and_measure(state, x_all, x, y):
            Ws = sim.effective_traced(state)
            passes = forward(Ws, x_all, phi)
            out = {
                "outputs": passes.output,
                "kernels": jnp.stack([h[:P] @ h[:P].T / M for h in passes.inputs[1:]]),
            }
            new, _ = sim.step_fn(state, x, y)
            if self.pc:
                moved = sim.effective_traced(new)
                for name, reference in zip(
                    ("pc_cos_gd", "pc_cos_gnt"), references, strict=True
                ):
                    ref_moved = reference.effective_traced(
                        reference.step_fn(state, x, y)[0]
                    )
                    out[name] = jnp.stack(
                        [
                            _frobenius_cos(a - w, b - w)
                            for w, a, b in zip(Ws, moved, ref_moved, strict=True)
                        ]
                    )
                out["pc_update_norms"] = jnp.stack(
                    [
                        k * jnp.sqrt(jnp.sum(jnp.square(a - w)))
                        for w, a, k in zip(Ws, moved, norm_units, strict=True)
                    ]
                )
                inference = infer(
                    Ws,
                    x,
                    y,
                    gammas=gammas,
                    activation="linear",
                    config=sim.config,
                    forward_init=sim.options.forward_init,
                    tol=sim.tol,
                    max_iter=sim.options.equilibrium_max_iter,
                )
                out["pc_output_error"] = -inference.errors[-1]
                out["c_gamma_scaled"] = _c_gamma(Ws, gammas) * M ** (1.0 + delta)
            if any(k != 1.0 for k in layer_mult):
                new = new._replace(
                    weights=tuple(
                        w + k * (w1 - w)
                        for w, w1, k in zip(
                            state.weights, new.weights, layer_mult, strict=True
                        )
                    )
                )
            return new, out

        self.step_and_measure = jax.jit(
            jax.vmap(step_and_measure, in_axes=(0, None, None, None))
        )
        with precision("float64"):
            self.x_all = jnp.asarray(np.vstack([task.x_train, task.x_test]))
            self.x = jnp.asarray(task.x_train)
            self.y = jnp.asarray(task.y_train)

    def run(
        self, seeds: Sequence[int], steps: int, *, keep_weights: bool
    ) -> list[FiniteTrajectory]:
        out = []
        for begin in range(0, len(seeds), SEED_CHUNK):
            chunk = list(seeds[begin : begin + SEED_CHUNK])
            padded = chunk + [chunk[-1]] * (SEED_CHUNK - len(chunk))
            if len(seeds) < SEED_CHUNK:
                padded = chunk
            out += self.chunk(padded, steps, keep_weights)[: len(chunk)]
        return out

    def initial_weights(self, seed: int) -> list[np.ndarray]:
        """w_l ~ N(0, s_l^2) i.i.d. with the simulator's stds, drawn from ``seed``."""
        rng = np.random.default_rng(seed)
        arch = self.sim.arch
        return [
            std * rng.standard_normal(arch.shape(layer))
            for layer, std in enumerate(self.sim.scales.stds, 1)
        ]

    def chunk(self, seeds, steps: int, keep_weights: bool) -> list[FiniteTrajectory]:
        jnp, sim = self.jnp, self.sim
        draws = [self.initial_weights(int(seed)) for seed in seeds]
        with self.precision("float64"):
            weights = tuple(
                jnp.asarray(np.stack(layer)) for layer in zip(*draws, strict=True)
            )
            keys = jnp.stack([self.jax.random.PRNGKey(int(seed)) for seed in seeds])
            zero = jnp.zeros(len(seeds), jnp.int32)
            state = self.train_state(weights, (), (), keys, zero)
            effective0 = [np.asarray(W) for W in sim.effective(state)]
            records = []
            for _ in range(steps + 1):
                state, record = self.step_and_measure(state, self.x_all, self.x, self.y)
                records.append({k: np.asarray(v) for k, v in record.items()})
        return [
            self.trajectory(i, records, [W[i] for W in effective0], keep_weights)
            for i in range(len(seeds))
        ]

    def trajectory(self, i, records, weights0, keep_weights) -> FiniteTrajectory:
        """Seed ``i``'s trajectory from the stacked records, with checks."""
        task, P, M = self.task, self.n_train, self.width
        outputs = np.stack([r["outputs"][i] for r in records])
        f, f_test = outputs[:, :P], outputs[:, P:]
        loss = 0.5 * np.sum((f - task.y_train) ** 2, axis=(1, 2)) / P
        n_test = max(task.x_test.shape[0], 1)
        test_loss = 0.5 * np.sum((f_test - task.y_test) ** 2, axis=(1, 2)) / n_test
        bad = ~(np.isfinite(loss) & (loss < DIVERGENCE_LOSS) & np.isfinite(test_loss))
        if np.any(bad):
            t = int(np.argmax(bad))
            raise DivergedError(
                f"the simulator at width {M} diverged at step {t} (loss "
                f"{loss[t]:.3g}); lower the learning rate",
                width=M,
                step=t,
            )
        cos = cgamma = None
        pc = {}
        if self.pc:
            pc = {
                name: np.stack([r[name][i] for r in records])
                for name in ("pc_cos_gnt", "pc_update_norms", "pc_output_error")
            }
            cos = np.stack([r["pc_cos_gd"][i] for r in records])
            cgamma = np.stack([r["c_gamma_scaled"][i] for r in records])
            if not (np.all(np.isfinite(cos)) and np.all(np.isfinite(pc["pc_cos_gnt"]))):
                raise InvalidInputError(
                    f"a simulated update is zero at width {M} (zero error); the "
                    "cosine with the gradient or the GNT update is undefined"
                )
        return FiniteTrajectory(
            width=M,
            loss=loss,
            test_loss=test_loss,
            f_train=f,
            f_test=f_test,
            kernels=np.stack([r["kernels"][i] for r in records]),
            pc_cos_gd=cos,
            c_gamma_scaled=cgamma,
            output_map0=_chain(weights0) @ self.basis,
            weights0=weights0 if keep_weights else None,
            **pc,
        )


def _chain(Ws: Sequence[np.ndarray]) -> np.ndarray:
    """W_{L:1} = W_L ... W_1."""
    out = Ws[0]
    for W in Ws[1:]:
        out = W @ out
    return out


def _c_gamma(Ws, gammas):
    """C_gamma = sum_{l<L} (gamma_L / gamma_l) W_{L:l+1} W_{L:l+1}^T (jax arrays)."""
    top = Ws[-1]  # W_{L:l+1}, from l = L-1 downwards
    total = 0.0
    for layer in range(len(Ws) - 1, 0, -1):
        total = total + gammas[-1] / gammas[layer - 1] * (top @ top.T)
        top = top @ Ws[layer - 1]
    return total


def _frobenius_cos(a, b):
    """<a, b> / (|a| |b|); NaN when either is zero (reported by the caller)."""
    import jax.numpy as jnp

    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
