"""K-FAC and Shampoo in the simulator: closed forms in float64, and a coord check.

With one sample, A = h h^T and G = delta delta^T have the single nonzero eigenvalues
|h|^2 and |delta|^2, and h, delta are their eigenvectors, so
(G + rho_G)^(-1) delta h^T (A + rho_A)^(-1) = delta h^T / ((|delta|^2 + rho_G)
(|h|^2 + rho_A)); Shampoo's L = g g^T and R = g^T g share the eigenvalue
|delta|^2 |h|^2, so its direction is delta h^T / (|delta|^2 |h|^2 + rho)^(1/2).
Against a large damping every inverse is 1/rho: K-FAC gives g / (rho_A rho_G),
Shampoo g / rho^(1/2).
"""

from fractions import Fraction

import numpy as np
import pytest

from muptheory.data import load_dataset
from muptheory.errors import UnsupportedError
from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization
from muptheory.simulate import Architecture, CoordCheckSettings, Simulator, coord_check
from muptheory.simulate.precision import precision
from muptheory.simulate.second_order import kfac_direction, shampoo_direction

RNG = np.random.default_rng(7)


def _relative(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _one_sample(n_out=7, n_in=5):
    return RNG.normal(size=(1, n_out)), RNG.normal(size=(1, n_in))


# -- closed forms ---------------------------------------------------------------------


def test_kfac_with_one_sample_and_no_damping_is_delta_h_over_both_norms():
    delta, h = _one_sample()
    expected = np.outer(delta[0], h[0]) / (np.sum(delta**2) * np.sum(h**2))
    with precision("float64"):
        got = kfac_direction(delta, h, rho_a=1e-14, rho_g=1e-14)
    assert _relative(got, expected) < 1e-9


def test_kfac_with_one_sample_carries_the_damping_in_each_factor():
    delta, h = _one_sample()
    rho_a, rho_g = 0.3, 2.5
    expected = np.outer(delta[0], h[0]) / (
        (np.sum(delta**2) + rho_g) * (np.sum(h**2) + rho_a)
    )
    with precision("float64"):
        got = kfac_direction(delta, h, rho_a=rho_a, rho_g=rho_g)
    assert _relative(got, expected) < 1e-9


def test_shampoo_with_one_sample_and_no_damping_has_unit_spectral_norm():
    delta, h = _one_sample()
    norms = np.sqrt(np.sum(delta**2)) * np.sqrt(np.sum(h**2))
    expected = np.outer(delta[0], h[0]) / norms
    with precision("float64"):
        got = shampoo_direction(delta, h, rho=1e-30)
    assert _relative(got, expected) < 1e-9
    assert abs(np.linalg.norm(np.asarray(got), 2) - 1) < 1e-9


@pytest.mark.parametrize("batch", [4, 9])
def test_large_damping_gives_sgd_over_the_damping(batch):
    D, H = RNG.normal(size=(batch, 6)), RNG.normal(size=(batch, 5))
    g = D.T @ H / batch
    rho_a, rho_g, rho = 3e12, 5e12, 1e14
    with precision("float64"):
        kfac = kfac_direction(D, H, rho_a=rho_a, rho_g=rho_g)
        shampoo = shampoo_direction(D, H, rho=rho)
    assert _relative(np.asarray(kfac) * rho_a * rho_g, g) < 1e-9
    assert _relative(np.asarray(shampoo) * np.sqrt(rho), g) < 1e-9


def _dense_root(matrix, power):
    w, v = np.linalg.eigh(matrix)
    return (v * w**power) @ v.T


@pytest.mark.parametrize("batch", [3, 9])
def test_low_rank_steps_equal_the_dense_formulas(batch):
    # batch 3: every factor is rank-deficient; batch 9 > n_in = 5: A has full rank
    D, H = RNG.normal(size=(batch, 7)), RNG.normal(size=(batch, 5))
    g = D.T @ H / batch
    A, G = H.T @ H / batch, D.T @ D / batch
    rho_a, rho_g, rho = 0.4, 0.7, 0.25
    kfac = (
        np.linalg.inv(G + rho_g * np.eye(7)) @ g @ np.linalg.inv(A + rho_a * np.eye(5))
    )
    L, R = g @ g.T + rho * np.eye(7), g.T @ g + rho * np.eye(5)
    shampoo = _dense_root(L, -0.25) @ g @ _dense_root(R, -0.25)
    with precision("float64"):
        assert _relative(kfac_direction(D, H, rho_a=rho_a, rho_g=rho_g), kfac) < 1e-9
        assert _relative(shampoo_direction(D, H, rho=rho), shampoo) < 1e-9


# -- the Simulator's step -------------------------------------------------------------

ARCH = Architecture(width=16, depth=3, input_dim=5, n_outputs=3, activation="linear")
PARAM = Parameterization(b=("1/2", "1/2", "1"), c=("0", "1/2", "1"))


def _linear_deltas(Ws, x, y):
    """Per-sample deltas of a linear network, by hand: delta_L = f - y,
    delta_l = delta_(l+1) W_(l+1)."""
    inputs = [x, x @ Ws[0].T, x @ Ws[0].T @ Ws[1].T]
    deltas = [inputs[2] @ Ws[2].T - y]
    for W in (Ws[2], Ws[1]):
        deltas.insert(0, deltas[0] @ W)
    return deltas, inputs


@pytest.mark.parametrize("optimizer", ["kfac", "shampoo"])
def test_simulator_step_is_the_closed_form_per_layer(optimizer):
    # one sample, a damping far below every eigenvalue: each layer moves by
    # eta_l delta h^T / (|delta|^2 |h|^2) (K-FAC) or / (|delta| |h|) (Shampoo)
    config = MethodConfig.create("bp", optimizer=optimizer, damping0=1e-16)
    sim = Simulator(config, PARAM, ARCH, lr=0.1, dtype="float64")
    state = sim.init(3)
    x, y = RNG.normal(size=(1, 5)), RNG.normal(size=(1, 3))
    Ws = [np.asarray(W) for W in sim.effective(state)]
    deltas, inputs = _linear_deltas(Ws, x, y)
    update = sim.weight_update(state, x, y)
    power = 1.0 if optimizer == "kfac" else 0.5
    for layer, (d, h) in enumerate(zip(deltas, inputs, strict=True)):
        eta = 0.1 * 16.0 ** -float(PARAM.c.as_tuple()[layer])
        scale = (np.sum(d**2) * np.sum(h**2)) ** power
        expected = -eta * np.outer(d[0], h[0]) / scale
        assert _relative(update[layer], expected) < 1e-9


def test_second_order_rejects_multipliers():
    param = Parameterization(b=("1/2", "1/2", "1"), c=(0, 0, 0), a=(0, 0, 1))
    with pytest.raises(UnsupportedError, match="multipliers"):
        Simulator(MethodConfig.create("bp", optimizer="kfac"), param, ARCH, lr=0.1)


# -- coord check against the engine ---------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


SETTINGS = CoordCheckSettings(widths=(64, 128, 256, 512), seeds=3, steps=2)


@pytest.mark.parametrize(
    "optimizer, b, c",
    [
        ("kfac", ("1/2", "1/2", "1"), ("0", "0", "0")),  # K-FAC muP
        ("shampoo", ("1/2", "1/2", "1"), ("-1/2", "0", "1/2")),  # Shampoo muP
    ],
)
def test_second_order_mup_coord_check_agrees_with_the_engine_at_step_one(
    optimizer, b, c, digits
):
    config = MethodConfig.create("bp", optimizer=optimizer)
    result = coord_check(config, Parameterization(b=b, c=c), digits, settings=SETTINGS)
    _assert_first_step_agrees(result)


def test_kfac_with_standard_init_moves_features_like_one_over_root_width(digits):
    # b_L = 1/2: |delta|^2 ~ 1 swamps the derived rho_G ~ 1/M of the first and hidden
    # layers, and their steps shrink like M^(-1/2) (the kernel regime). That holds
    # once M^(-1) is below every nonzero eigenvalue of G = D^T D / B. With B > C
    # samples, the hidden deltas beyond the C directions of W_L^T e come only from
    # the spread of tanh' over samples: small eigenvalues that the damping still
    # dominates at these widths (batch 32 measures about -0.14 at widths 64..512).
    # With B <= C every eigenvalue is of |delta|^2's order.
    config = MethodConfig.create("bp", optimizer="kfac")
    param = Parameterization(b=("1/2", "1/2", "1/2"), c=(0, 0, 0))
    settings = CoordCheckSettings(widths=(64, 512), seeds=3, steps=1, batch_size=4)
    result = coord_check(config, param, digits, settings=settings)
    _assert_first_step_agrees(result)
    hidden = [f for f in result.fits if f.name == "delta_h" and f.step == 1]
    assert all(f.predicted_exponent == Fraction(-1, 2) for f in hidden)


def _assert_first_step_agrees(result) -> None:
    first = [f for f in result.fits if f.step == 1]
    assert first and not result.diverged
    assert all(f.agrees for f in first), [
        (f.name, f.layer, f.measured_exponent, f.predicted_exponent)
        for f in first
        if not f.agrees
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "kfac", "damping0": 1e300},  # inf in float32
        {"optimizer": "kfac", "damping_a": ["0", "1000", "1"]},  # overflows float
        {"optimizer": "shampoo", "damping": ["0", "-1000", "0"]},  # underflows to 0
    ],
)
def test_a_damping_the_dtype_cannot_hold_is_refused(options):
    from muptheory.errors import InvalidInputError
    from muptheory.simulate.second_order import layer_dampings

    config = MethodConfig.create("bp", **options)
    with pytest.raises(InvalidInputError, match="not a usable float32 number"):
        layer_dampings(config, width=64, depth=3, dtype="float32")
