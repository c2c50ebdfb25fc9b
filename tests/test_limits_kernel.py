"""The kernel regime against neural-tangents and finite widths; muP departs from it."""

import numpy as np
import pytest

from muptheory.limits import limit_dynamics, linear_teacher_task, maximal_update
from muptheory.limits.convergence import fit_slope
from muptheory.limits.kernel import (
    kernel_regime_limit,
    neural_tangents_baseline,
    ntk_lr_mult,
)
from muptheory.limits.simulated import simulated_dynamics
from muptheory.methods import MethodConfig
from muptheory.parameterization import preset

TASK = linear_teacher_task(input_dim=6, n_outputs=4, n_train=8, n_test=4)
TIMES = [0.0, 1.0, 3.5, 10.0, 40.0]


@pytest.fixture(scope="session")
def nt_baseline():
    import neural_tangents  # noqa: F401  (the test extra pins it)

    return {
        (depth, sigma): neural_tangents_baseline(
            TASK, depth=depth, sigma=sigma, lr=0.05, times=TIMES
        )
        for depth, sigma in ((2, 1.0), (4, 1.3))
    }


@pytest.mark.parametrize("depth,sigma", [(2, 1.0), (4, 1.3)])
def test_kernel_regime_agrees_with_neural_tangents(nt_baseline, depth, sigma):
    ours = kernel_regime_limit(
        preset("ntk"),
        TASK,
        depth=depth,
        times=TIMES,
        lr=0.05,
        sigma=sigma,
        lr_mult=ntk_lr_mult(TASK.input_dim, sigma),
        continuous=True,
    )
    theirs = nt_baseline[(depth, sigma)]
    for key in ("nngp_train", "nngp_test_train", "ntk_train", "ntk_test_train"):
        np.testing.assert_allclose(getattr(ours, key), theirs[key], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.f_train, theirs["f_train"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.f_test, theirs["f_test"], atol=1e-6, rtol=0)


def test_mup_limit_departs_from_the_kernel_regime():
    # Same network, data and learning rate, and the same NTK at initialization
    # (muP and the ntk preset share it); the muP limit's features move, so its
    # training curve leaves the kernel-regime one (which agrees with neural-tangents,
    # test above).
    bp = MethodConfig.create("bp")
    mup = limit_dynamics(bp, maximal_update(bp), TASK, depth=3, steps=40, lr=0.05)
    kernel = kernel_regime_limit(preset("ntk"), TASK, depth=3, times=range(41), lr=0.05)
    np.testing.assert_allclose(mup.f_test[:2], kernel.f_test[:2], atol=1e-12)
    assert np.max(np.abs(mup.f_test - kernel.f_test)) > 0.05
    assert kernel.loss[-1] > 2 * mup.loss[-1]
    assert np.linalg.norm(mup.kernels[-1, 0] - mup.kernels[0, 0]) > 0.1


def test_kernel_regime_steps_are_the_limit_of_simulated_ntk_networks():
    # the simulator's networks, each compared with the kernel-regime curve started
    # from that network's own f_0 (random and Theta(1) under b_L = 1/2)
    widths, errors = [128, 256, 512, 1024, 2048], []
    lr_mult = ntk_lr_mult(TASK.input_dim)
    for width in widths:
        per_seed = []
        runs = simulated_dynamics(
            MethodConfig.create("bp"),
            preset("ntk"),
            TASK,
            depth=3,
            width=width,
            steps=10,
            lr=0.3,
            lr_mult=lr_mult,
            seeds=range(8),
        )
        for fin in runs:
            lim = kernel_regime_limit(
                preset("ntk"),
                TASK,
                depth=3,
                times=range(11),
                lr=0.3,
                lr_mult=lr_mult,
                f0_train=fin.f_train[0],
                f0_test=fin.f_test[0],
            )
            per_seed.append(np.max(np.abs(fin.f_train - lim.f_train)))
        errors.append(np.mean(per_seed))
    assert -0.6 <= fit_slope(widths, errors) <= -0.4, errors


def test_kernel_regime_expected_loss_adds_the_nngp_variance():
    result = kernel_regime_limit(preset("ntk"), TASK, depth=3, times=[0], lr=0.1)
    P, C = TASK.y_train.shape
    expected0 = 0.5 * (np.sum(TASK.y_train**2) + C * np.trace(result.nngp_train)) / P
    assert result.expected_loss[0] == pytest.approx(expected0)
