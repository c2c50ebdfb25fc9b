"""TP/DTP with ridge feedback in the limit, and the engine's refusals."""

import numpy as np
import pytest

from muptheory.errors import DivergedError, InvalidInputError, UnsupportedError
from muptheory.limits import limit_dynamics, linear_teacher_task, maximal_update
from muptheory.limits.convergence import convergence
from muptheory.limits.dynamics import _ridge_solve
from muptheory.methods import MethodConfig
from muptheory.parameterization import preset

TASK = linear_teacher_task(input_dim=6, n_outputs=4, n_train=8, n_test=4)


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_simulated_tp_widths_converge_to_the_coupled_limit_like_inverse_sqrt(method):
    # 16 seeds over 64..1024 left a slope standard error of ~0.045 (f_test came out
    # at -0.43 for one seed set); 32 seeds over 48..768 cost about the same and
    # give ~0.03
    config = MethodConfig.create(method)
    result = convergence(
        config,
        maximal_update(config),
        TASK,
        depth=3,
        steps=5,
        lr=0.1,
        widths=[48, 96, 192, 384, 768],
        seeds=32,
        quantities=("f_train", "f_test", "kernels"),
    )
    for name, slope in result.slopes.items():
        assert -0.6 <= slope <= -0.4, (name, slope, result.errors[name])


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_simulated_tp_loss_converges_like_inverse_sqrt_width(method):
    # One number per step: 128 seeds (see the BP loss test); one hidden layer.
    config = MethodConfig.create(method)
    result = convergence(
        config,
        maximal_update(config),
        TASK,
        depth=2,
        steps=4,
        lr=0.1,
        widths=[128, 256, 512, 1024, 2048, 4096],
        seeds=128,
        quantities=("loss",),
    )
    assert -0.6 <= result.slopes["loss"] <= -0.4, result.errors["loss"]


def test_tp_keeps_standard_output_scale_and_learns():
    # TP's muP has b_L = 1/2: the output at initialization is a random O(1) readout.
    config = MethodConfig.create("tp")
    run = limit_dynamics(
        config, maximal_update(config), TASK, depth=3, steps=30, lr=0.1
    )
    assert np.max(np.abs(run.f_train[0])) > 0.1
    assert run.loss[-1] < 0.5 * run.loss[0]


def test_tp_readout_is_fixed_by_the_output_map_at_initialization():
    config = MethodConfig.create("tp")
    F0 = np.arange(24.0).reshape(4, 6) / 10
    run = limit_dynamics(
        config, maximal_update(config), TASK, depth=3, steps=0, lr=0.1, output_map0=F0
    )
    np.testing.assert_allclose(run.f_train[0], TASK.x_train @ F0.T, atol=1e-12)


def test_ridge_limit_is_singular_when_the_right_side_leaves_the_range():
    gram = np.diag([1.0, 0.0])
    np.testing.assert_allclose(
        _ridge_solve(gram, 0.0, np.array([[2.0], [0.0]]), layer=2), [[2.0], [0.0]]
    )
    with pytest.raises(InvalidInputError, match="singular"):
        _ridge_solve(gram, 0.0, np.array([[1.0], [1.0]]), layer=2)


def test_nonlinear_activation_is_refused():
    config = MethodConfig.create("bp")
    with pytest.raises(UnsupportedError, match="linear networks only"):
        limit_dynamics(
            config, preset("mup"), TASK, depth=3, steps=1, lr=0.1, activation="tanh"
        )


def test_unstable_parameterization_is_refused():
    config = MethodConfig.create("pc", gamma_bar_last=-1)
    with pytest.raises(UnsupportedError, match="grows like M"):
        limit_dynamics(config, preset("mup"), TASK, depth=3, steps=1, lr=0.1)


def test_diverging_steps_raise_instead_of_returning_nan():
    config = MethodConfig.create("bp")
    with pytest.raises(DivergedError):
        limit_dynamics(config, preset("mup"), TASK, depth=3, steps=60, lr=5.0)


def test_results_are_finite():
    for method in ("bp", "pc", "tp", "dtp"):
        config = MethodConfig.create(method)
        run = limit_dynamics(
            config, maximal_update(config), TASK, depth=3, steps=5, lr=0.1
        )
        for value in (run.loss, run.f_train, run.f_test, run.kernels):
            assert np.all(np.isfinite(value))


def test_numerically_singular_ridge_feedback_is_a_clear_error():
    config = MethodConfig.create("tp", mu0=1e-300)
    task = linear_teacher_task(n_train=16)
    with pytest.raises(InvalidInputError, match="numerically singular"):
        limit_dynamics(config, maximal_update(config), task, depth=3, steps=3, lr=0.1)
