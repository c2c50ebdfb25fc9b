"""BP's exact limit: a hand-derived closed form, and finite widths converging to it.

Closed form (one hidden layer, one training point x, muP: W_1 ~ N(0, sigma^2/d),
W_2 ~ N(0, sigma^2/M^2), learning rates eta M and eta/M). With R = M W_2, h = W_1 x,
f = R h / M, G = R R^T / M and q = |h|^2 / M, one SGD step on (1/2)|f - y|^2 is

    f' = f - eta |x|^2 G e - eta q e + eta^2 |x|^2 (f.e) e
    G' = G - eta (e f^T + f e^T) + eta^2 q e e^T
    q' = q - 2 eta |x|^2 (f.e) + eta^2 |x|^4 e^T G e,        e = f - y,

exactly at every width. As M -> infinity, G_0 -> sigma^2 I, q_0 -> sigma^2 |x|^2/d,
f_0 -> 0, which gives the limit.
"""

import numpy as np
import pytest

from muptheory.limits import Task, limit_dynamics, maximal_update
from muptheory.limits.convergence import convergence
from muptheory.limits.finite import finite_dynamics
from muptheory.methods import MethodConfig
from muptheory.parameterization import preset

BP = MethodConfig.create("bp")


def closed_form(f, G, q, x2, y, eta, steps):
    outputs = [f.copy()]
    for _ in range(steps):
        e = f - y
        fe = f @ e
        f, G, q = (
            f - eta * x2 * G @ e - eta * q * e + eta**2 * x2 * fe * e,
            G - eta * (np.outer(e, f) + np.outer(f, e)) + eta**2 * q * np.outer(e, e),
            q - 2 * eta * x2 * fe + eta**2 * x2**2 * e @ G @ e,
        )
        outputs.append(f.copy())
    return np.array(outputs)


def one_point_task(d=4, C=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, d))
    y = rng.normal(size=(1, C))
    return Task(x, y, np.zeros((0, d)), np.zeros((0, C)))


@pytest.mark.parametrize("sigma,eta", [(1.0, 0.05), (0.8, 0.1)])
def test_one_hidden_layer_one_point_matches_closed_form(sigma, eta):
    task = one_point_task()
    d, C = 4, 3
    x2 = float(task.x_train[0] @ task.x_train[0])
    run = limit_dynamics(
        BP, preset("mup"), task, depth=2, steps=15, lr=eta, sigma=sigma
    )
    expected = closed_form(
        np.zeros(C),
        sigma**2 * np.eye(C),
        sigma**2 * x2 / d,
        x2,
        task.y_train[0],
        eta,
        15,
    )
    np.testing.assert_allclose(run.f_train[:, 0, :], expected, atol=1e-10, rtol=0)
    # the loss actually moves: the closed form is not trivially satisfied
    assert run.loss[-1] < 0.5 * run.loss[0]


def test_closed_form_is_exact_at_finite_width_with_finite_initial_values():
    task = one_point_task()
    M, eta, C, d = 300, 0.05, 3, 4
    fin = finite_dynamics(BP, preset("mup"), task, depth=2, width=M, steps=10, lr=eta)
    # rebuild the same initial weights to read G_0, q_0, f_0 at this width
    rng = np.random.default_rng(0)
    W1 = rng.normal(0.0, 1.0 / np.sqrt(d), (M, d))
    W2 = rng.normal(0.0, 1.0 / M, (C, M))
    h, R = W1 @ task.x_train[0], M * W2
    x2 = float(task.x_train[0] @ task.x_train[0])
    expected = closed_form(
        R @ h / M, R @ R.T / M, h @ h / M, x2, task.y_train[0], eta, 10
    )
    np.testing.assert_allclose(fin.f_train[:, 0, :], expected, atol=1e-10, rtol=0)


def test_simulated_bp_mup_widths_converge_like_inverse_sqrt_width():
    # Outputs and kernels: maxima over many entries, steady with 32 seeds.
    from muptheory.limits import linear_teacher_task

    task = linear_teacher_task(input_dim=6, n_outputs=4, n_train=8, n_test=4)
    result = convergence(
        BP,
        preset("mup"),
        task,
        depth=3,
        steps=5,
        lr=0.1,
        widths=[64, 128, 256, 512, 1024],
        seeds=32,
        quantities=("f_train", "f_test", "kernels"),
    )
    for name, slope in result.slopes.items():
        assert -0.6 <= slope <= -0.4, (name, slope, result.errors[name])


def test_simulated_bp_loss_converges_like_inverse_sqrt_width():
    # The loss error is one number per step, L_M - L = (f - y).df / P + |df|^2 / 2P,
    # close to |Gaussian| per seed (sd / mean ~ 0.75): 128 seeds over six widths
    # give a slope standard error of ~0.02. With one hidden layer a seed costs O(M).
    from muptheory.limits import linear_teacher_task

    task = linear_teacher_task(input_dim=6, n_outputs=4, n_train=8, n_test=4)
    result = convergence(
        BP,
        preset("mup"),
        task,
        depth=2,
        steps=4,
        lr=0.1,
        widths=[128, 256, 512, 1024, 2048, 4096],
        seeds=128,
        quantities=("loss", "f_train"),
    )
    for name, slope in result.slopes.items():
        assert -0.6 <= slope <= -0.4, (name, slope, result.errors[name])


def test_mup_limit_learns_features_and_fits_the_task():
    from muptheory.limits import linear_teacher_task

    run = limit_dynamics(
        BP, maximal_update(BP), linear_teacher_task(), depth=4, steps=100, lr=0.05
    )
    assert run.loss[-1] < 1e-3 * run.loss[0]
    change = np.linalg.norm(run.kernels[-1] - run.kernels[0], axis=(1, 2))
    assert np.all(change > 0.1)


def test_slope_standard_error_is_the_delta_method_sum():
    # x = log M = 0, 1, 2; at every width the seeds' errors are 1 and 3 (mean 2,
    # sd sqrt(2)), so Var log(mean) = (sqrt(2)/2)^2 / 2 = 1/4 and the slope's
    # variance is sum (x - 1)^2 / 4 / (sum (x - 1)^2)^2 = 1/8.
    from muptheory.limits.convergence import fit_slope, slope_error

    widths = np.exp([0.0, 1.0, 2.0])
    assert slope_error(widths, [[1.0, 3.0]] * 3) == pytest.approx(np.sqrt(1 / 8))
    x = np.arange(5.0)
    assert fit_slope(np.exp(x), np.exp(-0.5 * x)) == pytest.approx(-0.5)
