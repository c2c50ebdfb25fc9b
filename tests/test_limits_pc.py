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


def test_simulated_pc_depth_three_converges_like_inverse_sqrt_width():
    # Quantities with many entries per step: outputs, kernels, M C_gamma and the
    # output error (I + C_gamma)^{-1} e; 48 seeds give slopes within about 0.03.
    pc = MethodConfig.create("pc", gamma0=2.0, gamma_bar_last=-1)
    result = convergence(
        pc,
        maximal_update(pc),
        TASK,
        depth=3,
        steps=4,
        lr=0.1,
        widths=[32, 64, 128, 256, 512],
        seeds=48,
        quantities=(
            "f_train",
            "f_test",
            "kernels",
            "c_gamma_scaled",
            "pc_output_error",
        ),
    )
    for name, slope in result.slopes.items():
        assert -0.6 <= slope <= -0.4, (name, slope, result.errors[name])


def test_simulated_pc_loss_and_update_geometry_converge_like_inverse_sqrt_width():
    # The loss and the per-layer cosines and update norms are a few numbers per
    # step: each seed's error is close to |Gaussian| (sd / mean ~ 0.75), so the seed
    # mean needs ~128 seeds for a slope standard error of ~0.02. One hidden layer
    # makes a seed cost O(M), so the widths can reach 4096; the cosines need that
    # wide end (over 32..1024 at depth 3 a faster-decaying part still bends their
    # fit to about -0.6, see docs/limits.md section 7).
    pc = MethodConfig.create("pc", gamma0=2.0, gamma_bar_last=-1)
    result = convergence(
        pc,
        maximal_update(pc),
        TASK,
        depth=2,
        steps=4,
        lr=0.1,
        widths=[128, 256, 512, 1024, 2048, 4096],
        seeds=128,
        quantities=(
            "loss",
            "f_test",
            "pc_cos_gd",
            "pc_cos_gnt",
            "pc_update_norms",
            "pc_output_error",
        ),
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
        eq = pc_equilibrium(
            state, config, z, task.y_train, gamma0=gamma0, with_gn=True, with_gnt=True
        )
        A = np.linalg.solve(np.eye(10) + gamma0 * chat, E)
        assert eq.cos_gd[0] == pytest.approx(cos(A, E), abs=1e-10)
        gn = cos(A, np.linalg.solve(chat, E))
        assert eq.cos_gn[0] == pytest.approx(gn, abs=1e-10)
        # one hidden layer: GNT's first-layer target h - B (B^T B)^{-1} e is the GN
        # end, and its output target f - e makes its last-layer step BP's
        assert eq.cos_gnt[0] == pytest.approx(gn, abs=1e-10)
        assert eq.cos_gnt[1] == pytest.approx(eq.cos_gd[1], abs=1e-12)
        np.testing.assert_allclose(eq.c_gamma_scaled, gamma0 * chat, atol=1e-12)
        np.testing.assert_allclose(eq.output_error, A, atol=1e-12)


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
    # one hidden layer: the GNT update's first layer is the GN end
    np.testing.assert_allclose(result.cos_gnt[:, 0], result.cos_gn[:, 0], atol=1e-12)
    assert result.cos_gd[-1, 0] < 0.97
    # continuous: neighbours five per decade apart move the cosines by little
    assert np.max(np.abs(np.diff(result.cos_gd[:, 0]))) < 0.03
    assert np.max(np.abs(np.diff(result.cos_gn[:, 0]))) < 0.03


def test_output_error_shrinks_monotonically_with_gamma0():
    # (I + gamma0 S)^{-1} e with S positive definite: every eigencomponent of e is
    # divided by 1 + gamma0 s_i, so |output error| does not increase with gamma0,
    # at any depth; gamma0 -> 0 gives e.
    state, task, z = _state(3, 20)
    config = MethodConfig.create("pc", gamma_bar_last=-1)
    geo = pc_geometry(state)
    norms = [
        np.linalg.norm(
            pc_equilibrium(
                state, config, z, task.y_train, gamma0=g, geometry=geo
            ).output_error
        )
        for g in np.logspace(-3, 3, 13)
    ]
    assert np.all(np.diff(norms) < 0)
    e = geo.output @ z.T - task.y_train.T
    assert norms[0] == pytest.approx(np.linalg.norm(e), rel=1e-2)


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


def _frobenius_cos(K_back, a, b, K_in):
    """cos of sum_p (B a_p) u_p^T and sum_p (B b_p) u_p^T given <B a, B b> =
    a^T K_back b and <u_p, u_q> = K_in[p, q]."""

    def inner(u, v):
        return np.trace(u.T @ K_back @ v @ K_in)

    return inner(a, b) / np.sqrt(inner(a, a) * inner(b, b))


def test_depth_three_gnt_end_points_follow_closed_forms():
    # Per layer l < L, with K_l = B_l^T B_l, E = [e_p] and H the feature kernel of
    # layer l-1: GD moves along sum_p (B_l e_p) h_p^T, GNT along
    # sum_p (B_l K_l^{-1} e_p) h_p^T, so
    #   cos(GD, GNT) = tr(E^T E H) / sqrt(tr(E^T K_l E H) tr(E^T K_l^{-1} E H));
    # gamma0 -> 0 is the GD end, so cos(PC, GNT) tends to it. As gamma0 -> infinity
    # PC's first layer moves along sum_p (B_1 S^{-1} e_p) z_p^T, S = sum_l K_l.
    state, task, z = _state(3, 20)
    geo = pc_geometry(state)
    E = geo.output @ z.T - task.y_train.T
    feature = [z @ z.T] + [
        state.inner(k, geo.forward[k] @ z.T, geo.forward[k] @ z.T) for k in (1, 2)
    ]
    config = MethodConfig.create("pc", gamma_bar_last=-1)
    small = pc_equilibrium(state, config, z, task.y_train, gamma0=1e-9, with_gnt=True)
    for layer in (1, 2):
        K = geo.kernels[layer - 1]
        expected = _frobenius_cos(K, E, np.linalg.solve(K, E), feature[layer - 1])
        assert small.cos_gnt[layer - 1] == pytest.approx(expected, abs=1e-7)
    assert small.cos_gnt[2] == pytest.approx(1.0, abs=1e-7)  # last layer: GNT = GD
    np.testing.assert_allclose(small.output_error, E, atol=1e-7)

    large = pc_equilibrium(state, config, z, task.y_train, gamma0=1e9, with_gnt=True)
    S = sum(geo.kernels)
    K1 = geo.kernels[0]
    expected = _frobenius_cos(
        K1, np.linalg.solve(S, E), np.linalg.solve(K1, E), feature[0]
    )
    assert large.cos_gnt[0] == pytest.approx(expected, abs=1e-7)
    # gamma0 (I + gamma0 S)^{-1} e -> S^{-1} e
    np.testing.assert_allclose(
        1e9 * large.output_error, np.linalg.solve(S, E), rtol=1e-6, atol=1e-8
    )
    # in depth 3 the GNT update is not PC's Gauss-Newton end
    assert expected < 0.999


def test_pc_output_error_at_initialization_is_the_error_over_one_plus_gamma0_s():
    # At initialization under muP, M W_{L:l+1} W_{L:l+1}^T -> sigma^{2(L-l)} I and
    # f -> 0, so (I + C_gamma)^{-1} e = -y / (1 + gamma0 sum_l sigma^{2(L-l)}).
    depth, sigma, gamma0 = 3, 0.8, 2.5
    pc = MethodConfig.create("pc", gamma0=gamma0, gamma_bar_last=-1)
    run = limit_dynamics(
        pc, maximal_update(pc), TASK, depth=depth, steps=0, lr=0.1, sigma=sigma
    )
    s = sum(sigma ** (2 * (depth - k)) for k in range(1, depth))
    np.testing.assert_allclose(
        run.pc_output_error[0], -TASK.y_train / (1 + gamma0 * s), atol=1e-12
    )


def test_pc_update_norms_at_initialization_follow_closed_forms():
    # L = 2 at initialization (f = 0, e = -y, B_1 = sigma omega, <h_p, h_q> =
    # sigma^2 x_p.x_q / d, <h, B eps> = 0): eps_p = y_p / (1 + gamma0 sigma^2) and
    #   first: |Delta W_1| / sqrt(M) = (eta gamma0 sigma / P) |sum_p eps_p x_p^T|_F
    #   last:  sqrt(M) |Delta W_2| = (eta / P) sqrt(sum_pq (eps_p.eps_q)
    #          (sigma^2 x_p.x_q / d + gamma0^2 sigma^2 eps_p.eps_q))
    # with v_1 = h_1 + gamma0 B_1 eps the activities the last layer's update uses.
    sigma, gamma0, lr = 0.9, 1.5, 0.1
    pc = MethodConfig.create("pc", gamma0=gamma0, gamma_bar_last=-1)
    run = limit_dynamics(
        pc, maximal_update(pc), TASK, depth=2, steps=0, lr=lr, sigma=sigma
    )
    X, P, d = TASK.x_train, TASK.x_train.shape[0], TASK.input_dim
    eps = TASK.y_train / (1 + gamma0 * sigma**2)
    first = lr * gamma0 * sigma / P * np.linalg.norm(eps.T @ X)
    ee = eps @ eps.T
    last = (
        lr
        / P
        * np.sqrt(np.sum(ee * (sigma**2 * X @ X.T / d + gamma0**2 * sigma**2 * ee)))
    )
    np.testing.assert_allclose(run.pc_update_norms[0], [first, last], rtol=1e-12)
