"""Exact identities of the simulator's update rules, checked in float64.

Every expected value is computed here from its formula with numpy (or jax.jacobian
for per-sample Jacobians), independently of the simulator's own code paths.
"""

from fractions import Fraction

import jax
import numpy as np
import pytest

from muptheory.methods import MethodConfig
from muptheory.parameterization import preset
from muptheory.simulate import Architecture, Simulator, precision
from muptheory.simulate.pc import infer, pc_gammas

RTOL = 1e-9


def batch(seed=0, n=7, d=5, c=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, c))


def numpy_weights(sim, state):
    return [np.asarray(W, dtype=np.float64) for W in sim.effective(state)]


def numpy_backprop_update(Ws, lrs, x, y, act="tanh"):
    """Delta W_l = -eta_l (1/B) sum_n delta_l h_{l-1}^T by hand-written backprop."""
    phi = np.tanh if act == "tanh" else (lambda u: u)
    dphi = (lambda u: 1 - np.tanh(u) ** 2) if act == "tanh" else np.ones_like
    hs, us = [x], []
    for i, W in enumerate(Ws):
        us.append(hs[-1] @ W.T)
        if i < len(Ws) - 1:
            hs.append(phi(us[-1]))
    delta = us[-1] - y
    updates = [None] * len(Ws)
    for i in reversed(range(len(Ws))):
        updates[i] = -lrs[i] * delta.T @ hs[i] / x.shape[0]
        if i > 0:
            delta = dphi(us[i - 1]) * (delta @ Ws[i])
    return updates


def assert_close(actual, expected, rtol=RTOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = np.max(np.abs(expected))
    assert scale > 0
    assert np.max(np.abs(actual - expected)) <= rtol * scale


def simulator(method, arch, *, param=None, lr=0.3, **options):
    config = MethodConfig.create(method, **options)
    return Simulator(config, param or preset("mup"), arch, lr=lr, dtype="float64")


# -- PC = BP ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [3, 4])
def test_pc_forward_init_fpa_single_sweep_is_bp(depth):
    arch = Architecture(width=24, depth=depth, input_dim=5, n_outputs=3)
    x, y = batch(depth)
    pc = simulator("pc", arch, inference="sequential", fpa=True, inference_rate=1.0)
    bp = simulator("bp", arch)
    state = bp.init(depth)
    expected = numpy_backprop_update(numpy_weights(bp, state), bp.scales.lrs, x, y)
    for actual_pc, actual_bp, want in zip(
        pc.weight_update(state, x, y),
        bp.weight_update(state, x, y),
        expected,
        strict=True,
    ):
        assert actual_pc.dtype == np.float64
        assert_close(actual_pc, want)
        assert_close(actual_bp, want)


def test_pc_without_fpa_is_not_bp_at_finite_width():
    # without FPA the sweep moves the inputs of the upper layers
    arch = Architecture(width=8, depth=3, input_dim=5, n_outputs=3)
    x, y = batch(1)
    pc = simulator("pc", arch, inference="sequential", inference_rate=1.0)
    bp = simulator("bp", arch)
    state = bp.init(1)
    top_pc = np.asarray(pc.weight_update(state, x, y)[-1])
    top_bp = np.asarray(bp.weight_update(state, x, y)[-1])
    assert np.max(np.abs(top_pc - top_bp)) > 1e-6 * np.max(np.abs(top_bp))


# -- linear PC at equilibrium: THEORY.md section 6 ---------------------------------


def closed_form_equilibrium(Ws, gammas, x, y):
    """eps_L = (I + C_gamma)^{-1} (y - W_{L:1} x), eps_l = (g_L/g_l) W_{L:l+1}^T eps_L."""
    L = len(Ws)

    def chain(lo, hi):  # W_hi ... W_lo (1-based, inclusive)
        out = np.eye(Ws[lo - 1].shape[1])
        for k in range(lo, hi + 1):
            out = Ws[k - 1] @ out
        return out

    C = sum(
        gammas[-1] / gammas[k - 1] * chain(k + 1, L) @ chain(k + 1, L).T
        for k in range(1, L)
    )
    residual = y - x @ chain(1, L).T
    eps_top = np.linalg.solve(np.eye(C.shape[0]) + C, residual.T).T
    errors = [
        gammas[-1] / gammas[k - 1] * eps_top @ chain(k + 1, L) for k in range(1, L)
    ]
    return errors + [eps_top]


@pytest.mark.parametrize("last_layer_gamma", [False, True])
def test_linear_pc_equilibrium_matches_closed_form(last_layer_gamma):
    arch = Architecture(
        width=16, depth=4, input_dim=5, n_outputs=3, activation="linear"
    )
    x, y = batch(2)
    options = dict(
        gamma_bar_hidden="1/2",
        gamma_bar_last="-1",
        last_layer_gamma=last_layer_gamma,
        inference="equilibrium",
    )
    config = MethodConfig.create("pc", **options)
    config = config.with_options(gamma0=2.5)
    sim = Simulator(config, preset("mup"), arch, lr=0.2, dtype="float64")
    gammas = pc_gammas(config, width=16, depth=4)
    assert gammas == pytest.approx((0.25, 0.25, 0.25, 40.0))
    state = sim.init(3)
    Ws = numpy_weights(sim, state)
    errors = closed_form_equilibrium(Ws, gammas, x, y)

    with precision("float64"):
        result = infer(
            sim.effective(state),
            x,
            y,
            gammas=gammas,
            activation="linear",
            config=config,
        )
    for actual, want in zip(result.errors, errors, strict=True):
        assert_close(actual, want)

    # weight updates: Delta W_l = eta_l g_l mean(eps_l v_{l-1}^T), v_l = W_l v_{l-1} + eps_l
    activities = [x]
    for W, e in zip(Ws[:-1], errors[:-1], strict=True):
        activities.append(activities[-1] @ W.T + e)
    top = gammas[-1] if last_layer_gamma else 1.0
    factors = list(gammas[:-1]) + [top]
    for k, actual in enumerate(sim.weight_update(state, x, y)):
        want = sim.scales.lrs[k] * factors[k] * errors[k].T @ activities[k] / x.shape[0]
        assert_close(actual, want)


@pytest.mark.parametrize("gamma_bar_last, rtol", [("0", 1e-9), ("-1", 1e-5)])
def test_nonlinear_pc_equilibrium_is_stationary(gamma_bar_last, rtol):
    # gamma_L = M makes the energy strongly nonlinear: the damped Gauss-Newton solver
    # converges linearly there, so its tolerance is looser
    arch = Architecture(width=32, depth=3, input_dim=5, n_outputs=3, activation="tanh")
    x, y = batch(4)
    config = MethodConfig.create("pc", gamma_bar_last=gamma_bar_last)
    sim = Simulator(config, preset("mup"), arch, lr=0.1, dtype="float64")
    gammas = pc_gammas(config, width=32, depth=3)
    state = sim.init(0)
    with precision("float64"):
        Ws = sim.effective(state)
        result = infer(Ws, x, y, gammas=gammas, activation="tanh", config=config)
        Ws = [np.asarray(W) for W in Ws]

    # the energy gradient, written out by hand, vanishes at the returned activities
    v = [np.asarray(a) for a in result.activities]
    inputs = [x, np.tanh(v[0]), np.tanh(v[1])]
    tops = [v[0], v[1], y]
    eps = [t - a @ W.T for t, a, W in zip(tops, inputs, Ws, strict=True)]
    for i in range(2):
        pull = gammas[i + 1] * (1 - np.tanh(v[i]) ** 2) * (eps[i + 1] @ Ws[i + 1])
        grad = gammas[i] * eps[i] - pull
        assert np.max(np.abs(grad)) <= rtol * np.max(np.abs(pull))
        assert np.max(np.abs(pull)) > 1e-3


def test_iterative_inference_converges_to_the_equilibrium():
    arch = Architecture(width=16, depth=3, input_dim=5, n_outputs=3, activation="tanh")
    x, y = batch(5)
    state = simulator("bp", arch).init(0)
    equilibrium = simulator("pc", arch, inference="equilibrium")
    iterative = simulator(
        "pc", arch, inference="iterative", inference_steps=400, inference_rate=0.3
    )
    for a, b in zip(
        equilibrium.weight_update(state, x, y),
        iterative.weight_update(state, x, y),
        strict=True,
    ):
        assert_close(b, a)


# -- GNT ---------------------------------------------------------------------------


def pinv_targets(Ws, x, y):
    """u_l - J_l^T (J_l J_l^T)^+ e with J_l = df/du_l from jax.jacobian, per sample."""
    L = len(Ws)

    def output_from(layer, u):  # f as a function of u_layer, one sample
        h = jax.numpy.tanh(u)
        for k in range(layer + 1, L + 1):
            u = h @ Ws[k - 1].T
            h = jax.numpy.tanh(u)
        return u

    pre = []
    h = x
    for W in Ws:
        pre.append(h @ W.T)
        h = np.tanh(pre[-1])
    e = pre[-1] - y
    targets = []
    for k in range(1, L):
        rows = []
        for n in range(x.shape[0]):
            J = np.asarray(
                jax.jacobian(lambda u, k=k: output_from(k, u))(pre[k - 1][n])
            )
            rows.append(pre[k - 1][n] - J.T @ np.linalg.pinv(J @ J.T) @ e[n])
        targets.append(np.array(rows))
    return pre, targets


def test_gnt_with_vanishing_damping_gives_pseudo_inverse_targets():
    arch = Architecture(width=12, depth=3, input_dim=5, n_outputs=3, activation="tanh")
    x, y = batch(6)
    exact = simulator("gnt", arch, lambda_zero=True)
    tiny = simulator("gnt", arch, lambda_bar="30")  # lambda = 12^-30 ~ 1e-32
    state = exact.init(0)
    with precision("float64"):
        pre, targets = pinv_targets(numpy_weights(exact, state), x, y)
    for sim in (exact, tiny):
        update = sim.signals(state, x, y)
        for k in range(2):
            assert_close(pre[k] - np.asarray(update.signals[k]), targets[k])
        # output layer: target f - e, so its signal is e
        assert_close(update.signals[-1], pre[-1] - y)


def test_gnt_damping_scales_with_width():
    arch = Architecture(width=64, depth=3, input_dim=5, n_outputs=3)
    sim = simulator("gnt", arch, lambda_bar="1")
    assert sim.damping == pytest.approx(1 / 64)
    assert simulator("gnt", arch, lambda_zero=True).damping is None


# -- TP ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_tp_ridge_feedback_matches_its_formula(method):
    width, mu = 10, 0.7
    arch = Architecture(width=width, depth=4, input_dim=5, n_outputs=3)
    x, y = batch(7, n=6)
    config = MethodConfig.create(method, mu_bar="0").with_options(mu0=mu)
    sim = Simulator(config, preset("sp"), arch, lr=0.1, dtype="float64")
    state = sim.init(0)
    Ws = numpy_weights(sim, state)

    # columns of H are the batch's pre-activations
    H, h = [], x.T
    for W in Ws:
        H.append(W @ h)
        h = np.tanh(H[-1])
    t = H[-1] - (H[-1] - y.T)  # beta = 1
    expected = [t]
    for k in range(len(Ws) - 1, 0, -1):
        Q = (
            H[k - 1]
            @ np.linalg.inv(H[k].T @ H[k] + mu * np.eye(H[k].shape[1]))
            @ H[k].T
        )
        t = Q @ t if method == "tp" else H[k - 1] + Q @ (t - H[k])
        expected.insert(0, t)

    update = sim.signals(state, x, y)
    for k in range(len(Ws)):
        actual_targets = H[k].T - np.asarray(update.signals[k])
        assert_close(actual_targets, expected[k].T)


def test_trained_feedback_learns_to_reconstruct():
    arch = Architecture(
        width=32, depth=3, input_dim=5, n_outputs=3, activation="linear"
    )
    x, _ = batch(8, n=64)
    config = MethodConfig.create("dtp", feedback="trained", feedback_c="0")
    sim = Simulator(config, preset("sp"), arch, lr=0.05, dtype="float64")
    state = sim.init(0)
    Ws = numpy_weights(sim, state)
    W2 = Ws[1]

    from muptheory.simulate.tp import feedback_update

    with precision("float64"):
        Vs = state.feedback
        key = jax.random.PRNGKey(0)

        # in a linear net DTP's difference loss drives V_2 W_2 towards the identity
        def misfit(V):
            return np.linalg.norm(np.asarray(V) @ W2 - np.eye(32))

        before = misfit(Vs[0])
        for _ in range(300):
            key, sub = jax.random.split(key)
            Vs = feedback_update(
                sim.effective(state),
                Vs,
                x,
                sub,
                activation="linear",
                difference=True,
                noise=0.3,
                lr=0.5,
            )
        assert misfit(Vs[0]) < 0.5 * before


def test_feedback_init_follows_its_own_exponent():
    for b, width in [(Fraction(1, 2), 64), (Fraction(1), 256)]:
        arch = Architecture(width=width, depth=3, input_dim=5, n_outputs=3)
        sim = simulator(
            "tp", arch, param=preset("sp"), feedback="trained", feedback_b=b
        )
        V_hidden = np.asarray(sim.init(0).feedback[0])
        assert V_hidden.shape == (width, width)
        assert np.std(V_hidden) == pytest.approx(width ** -float(b), rel=0.05)


# -- BP optimizers -------------------------------------------------------------------


def test_first_adam_step_is_a_signed_step():
    # bias correction makes Adam's first step -eta g / (|g| + eps) elementwise
    arch = Architecture(width=16, depth=3, input_dim=5, n_outputs=3)
    x, y = batch(9)
    adam = simulator("bp", arch, optimizer="adam", lr=0.01)
    state = adam.init(0)
    assert adam.scales.multipliers == (1.0, 1.0, 1.0)
    expected = numpy_backprop_update(
        numpy_weights(adam, state), [1.0, 1.0, 1.0], x, y
    )  # = -gradient
    for k, actual in enumerate(adam.weight_update(state, x, y)):
        g = -expected[k]
        want = -adam.scales.lrs[k] * g / (np.abs(g) + 1e-8)
        assert_close(actual, want, rtol=1e-9)


# -- the learning rate as an argument ---------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "method, options",
    [
        ("bp", {}),
        ("bp", {"optimizer": "adam"}),
        ("pc", {"inference": "iterative", "inference_steps": 4}),
        ("tp", {"feedback": "trained"}),
    ],
    ids=["bp-sgd", "bp-adam", "pc", "tp-trained"],
)
def test_a_step_with_traced_rates_equals_the_step_with_rates_built_in(
    method, options, dtype
):
    import jax.numpy as jnp

    arch = Architecture(width=24, depth=3, input_dim=5, n_outputs=3)
    config = MethodConfig.create(method, **options)
    other = Simulator(config, preset("mup"), arch, lr=0.05, dtype=dtype)
    sim = Simulator(config, preset("mup"), arch, lr=0.3, dtype=dtype)
    assert other.static_key == sim.static_key
    x, y = batch()
    with precision(dtype) as jdtype:
        state = sim.init(1)
        xs, ys = jnp.asarray(x, jdtype), jnp.asarray(y, jdtype)
        built_in, _ = jax.jit(sim.step_fn)(state, xs, ys)
        rates = jax.tree.map(lambda v: jnp.asarray(v, jdtype), sim.rates())
        # the other simulator's compiled step, given this one's rates
        traced, _ = jax.jit(other.update_fn)(state, xs, ys, rates)
    for a, b in zip(jax.tree.leaves(built_in), jax.tree.leaves(traced), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_runs_differing_in_learning_rate_share_one_compiled_epoch():
    from muptheory.simulate.train import epoch_runner

    arch = Architecture(width=16, depth=3, input_dim=5, n_outputs=3)
    slow, fast = (simulator("bp", arch, lr=lr) for lr in (0.1, 0.2))
    wide = simulator("bp", Architecture(width=32, depth=3, input_dim=5, n_outputs=3))
    assert epoch_runner(slow) is epoch_runner(fast)
    assert epoch_runner(wide) is not epoch_runner(slow)
