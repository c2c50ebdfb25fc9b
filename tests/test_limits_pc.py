"""PC at equilibrium in the limit: first-order end, C_gamma, interpolation, convergence."""

import numpy as np
import pytest

from muptheory.limits import (
    input_basis,
    limit_dynamics,
    linear_teacher_task,
    maximal_update,
    pc_equilibrium,
    pc_geometry,
)
from muptheory.limits.convergence import convergence
from muptheory.limits.pc import pc_interpolation
from muptheory.methods import MethodConfig

TASK = linear_teacher_task(input_dim=6, n_outputs=4, n_train=8, n_test=4)


def test_pc_with_gamma_bar_zero_is_sgd_in_the_limit():
    # gamma_bar_last = 0: C_gamma = O(1/M) -> 0, eps_L -> -e, v -> h; the hidden and
    # first-layer updates carry gamma_l eps_l = gamma0 W^T eps_L, i.e. SGD with
    # those layers' learning rates times gamma0.
    bp = MethodConfig.create("bp")
    a = limit_dynamics(bp, maximal_update(bp), TASK, depth=3, steps=8, lr=0.1)
    pc = MethodConfig.create("pc", gamma0=1.0)
    b = limit_dynamics(pc, maximal_update(pc), TASK, depth=3, steps=8, lr=0.1)
    np.testing.assert_allclose(b.f_train, a.f_train, atol=1e-9)
    np.testing.assert_allclose(b.pc_cos_gd, 1.0, atol=1e-12)
    pc3 = MethodConfig.create("pc", gamma0=3.0)
    c = limit_dynamics(pc3, maximal_update(pc3), TASK, depth=3, steps=8, lr=0.1)
    d = limit_dynamics(
        bp, maximal_update(bp), TASK, depth=3, steps=8, lr=0.1, lr_mult=(3, 3, 1)
    )
    np.testing.assert_allclose(c.f_train, d.f_train, atol=1e-9)
    np.testing.assert_allclose(c.pc_cos_gd, 1.0, atol=1e-12)


@pytest.mark.parametrize("depth,sigma,gamma0", [(2, 1.0, 1.0), (4, 0.8, 2.5)])
def test_m_c_gamma_at_init_is_gamma0_sum_of_sigma_powers_times_identity(
    depth, sigma, gamma0
):
    # M W_{L:l+1} W_{L:l+1}^T -> sigma^{2(L-l)} I at initialization under muP.
    pc = MethodConfig.create("pc", gamma0=gamma0, gamma_bar_last=-1)
    run = limit_dynamics(
        pc, maximal_update(pc), TASK, depth=depth, steps=0, lr=0.1, sigma=sigma
    )
    expected = (
        gamma0 * sum(sigma ** (2 * (depth - k)) for k in range(1, depth)) * np.eye(4)
    )
    np.testing.assert_allclose(run.pc_c_gamma[0], expected, atol=1e-12)


def test_pc_gamma_bar_minus_one_departs_from_sgd():
    bp = MethodConfig.create("bp")
    pc = MethodConfig.create("pc", gamma0=2.0, gamma_bar_last=-1)
    a = limit_dynamics(bp, maximal_update(bp), TASK, depth=3, steps=8, lr=0.1)
    b = limit_dynamics(pc, maximal_update(pc), TASK, depth=3, steps=8, lr=0.1)
    assert np.max(np.abs(a.f_train - b.f_train)) > 0.05


def test_simulated_pc_interpolation_widths_converge_like_inverse_sqrt_width():
    # pc_cos_gd is a few numbers per step (one per layer), so it needs more seeds
    # than the outputs for a steady slope.
    pc = MethodConfig.create("pc", gamma0=2.0, gamma_bar_last=-1)
    result = convergence(
        pc,
        maximal_update(pc),
        TASK,
        depth=3,
        steps=4,
        lr=0.1,
        widths=[64, 128, 256, 512, 1024],
        seeds=32,
        quantities=("f_train", "kernels", "pc_cos_gd", "c_gamma_scaled"),
    )
    for name, slope in result.slopes.items():
        assert -0.6 <= slope <= -0.4, (name, slope, result.errors[name])


def _state(depth, steps, sigma=0.5):
    bp = MethodConfig.create("bp")
    task = linear_teacher_task(n_outputs=10)
    run = limit_dynamics(
        bp, maximal_update(bp), task, depth=depth, steps=steps, lr=0.05, sigma=sigma
    )
    return run.state, task, task.x_train @ input_basis(task)


def test_first_layer_cosines_follow_the_one_hidden_layer_closed_form():
    # L = 2: the first-layer update is sum_p (B_1 a_p) x_p^T, so with C_hat = B_1^T B_1
    # and K = X X^T, <G_a, G_b> = tr(A^T C_hat B K) and
    # cos(PC, GD) = tr(A^T C E K) / sqrt(tr(A^T C A K) tr(E^T C E K)) with
    # A = (I + gamma0 C)^{-1} E, and the GN end replaces E by C^{-1} E.
    state, task, z = _state(2, 20)
    geo = pc_geometry(state)
    chat = geo.kernels[0]
    E = geo.output @ z.T - task.y_train.T
    K = z @ z.T
    config = MethodConfig.create("pc", gamma_bar_last=-1)

    def cos(a, b):
        inner = lambda u, v: np.trace(u.T @ chat @ v @ K)  # noqa: E731
        return inner(a, b) / np.sqrt(inner(a, a) * inner(b, b))

    for gamma0 in (0.01, 0.3, 1.0, 7.0, 100.0):
        eq = pc_equilibrium(state, config, z, task.y_train, gamma0=gamma0, with_gn=True)
        A = np.linalg.solve(np.eye(10) + gamma0 * chat, E)
        assert eq.cos_gd[0] == pytest.approx(cos(A, E), abs=1e-10)
        assert eq.cos_gn[0] == pytest.approx(
            cos(A, np.linalg.solve(chat, E)), abs=1e-10
        )
        np.testing.assert_allclose(eq.c_gamma_scaled, gamma0 * chat, atol=1e-12)


@pytest.mark.parametrize("depth", [2, 3])
def test_interpolation_end_points(depth):
    result = pc_interpolation(
        linear_teacher_task(n_outputs=10),
        depth=depth,
        gamma0=[1e-7, 1.0, 1e7],
        sigma=0.5,
    )
    np.testing.assert_allclose(result.cos_gd[0], 1.0, atol=1e-5)
    np.testing.assert_allclose(result.cos_gn[-1], 1.0, atol=1e-5)
    # the two ends differ at this trained (anisotropic) state
    assert result.cos_gd[-1, 0] < 0.97
    assert result.cos_gn[0, 0] < 0.97


def test_interpolation_is_monotone_for_one_hidden_layer():
    # For L = 2, cos(PC, GD) = E_mu[s] / sqrt(E_mu[s^2]) with s_i = 1/(1 + gamma0 c_i)
    # in the eigenbasis of C_hat, non-increasing in gamma0 by Cauchy-Schwarz
    # (E[s^2]^2 <= E[s] E[s^3]); the same argument in 1/gamma0 makes cos(PC, GN)
    # non-decreasing.
    result = pc_interpolation(
        linear_teacher_task(n_outputs=10),
        depth=2,
        gamma0=np.logspace(-3, 3, 30),
        sigma=0.5,
    )
    assert np.all(np.diff(result.cos_gd[:, 0]) <= 1e-12)
    assert np.all(np.diff(result.cos_gn[:, 0]) >= -1e-12)
    assert result.cos_gd[-1, 0] < 0.97


def test_at_initialization_every_first_layer_direction_coincides():
    result = pc_interpolation(
        linear_teacher_task(n_outputs=10),
        depth=3,
        gamma0=[0.01, 1.0, 100.0],
        train_steps=0,
    )
    np.testing.assert_allclose(result.cos_gd[:, 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(result.cos_gn[:, 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(
        result.gn_matrix_eigs, result.gn_matrix_eigs[0], atol=1e-12
    )
