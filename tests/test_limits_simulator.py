"""The JAX simulator, as the limit comparison runs it, against the numpy reference.

``muptheory.limits.simulated`` trains ``muptheory.simulate.Simulator`` networks and
measures them the way the limit reports; ``muptheory.limits.finite`` implements the
same rules independently in numpy (PC's equilibrium in closed form, TP's ridge solves
written out). Started from the same weights they must agree at every step.
"""

import numpy as np
import pytest

from muptheory.errors import UnsupportedError
from muptheory.limits import linear_teacher_task, maximal_update
from muptheory.limits.finite import finite_dynamics
from muptheory.limits.simulated import simulated_dynamics
from muptheory.methods import MethodConfig

TASK = linear_teacher_task(input_dim=6, n_outputs=4, n_train=8, n_test=4)
FIELDS = ("loss", "test_loss", "f_train", "f_test", "kernels")


@pytest.mark.parametrize(
    "method,options,lr_mult",
    [
        ("bp", {}, (0.5, 1.0, 2.0)),
        ("pc", {"gamma0": 2.0, "gamma_bar_last": -1}, (1.0, 1.0, 1.0)),
        ("tp", {}, (1.0, 1.0, 1.0)),
        ("dtp", {"mu0": 0.3}, (1.0, 1.0, 1.0)),
    ],
)
def test_simulator_and_numpy_reference_agree_step_by_step(method, options, lr_mult):
    config = MethodConfig.create(method, **options)
    param = maximal_update(config)
    common = dict(depth=3, width=40, steps=4, lr=0.1, sigma=0.9, lr_mult=lr_mult)
    runs = simulated_dynamics(
        config, param, TASK, seeds=[3, 4], keep_weights=True, **common
    )
    for sim in runs:
        ref = finite_dynamics(config, param, TASK, weights=sim.weights0, **common)
        pc_fields = (
            "pc_cos_gd",
            "c_gamma_scaled",
            "pc_cos_gnt",
            "pc_update_norms",
            "pc_output_error",
        )
        fields = FIELDS + (pc_fields if method == "pc" else ())
        for name in fields:
            np.testing.assert_allclose(
                getattr(sim, name), getattr(ref, name), atol=1e-10, rtol=0, err_msg=name
            )
        np.testing.assert_allclose(sim.output_map0, ref.output_map0, atol=1e-12)
        # the runs train: the comparison is not between two frozen networks
        assert sim.loss[-1] < 0.9 * sim.loss[0]


def test_different_seeds_draw_different_networks():
    config = MethodConfig.create("bp")
    a, b = simulated_dynamics(
        config,
        maximal_update(config),
        TASK,
        depth=2,
        width=16,
        steps=1,
        lr=0.1,
        seeds=[0, 1],
    )
    assert np.max(np.abs(a.f_train - b.f_train)) > 1e-3


def test_rules_outside_the_comparison_are_refused():
    config = MethodConfig.create("bp", optimizer="adam")
    with pytest.raises(UnsupportedError, match="SGD only"):
        simulated_dynamics(
            config,
            maximal_update(MethodConfig.create("bp")),
            TASK,
            depth=3,
            width=8,
            steps=1,
            lr=0.1,
            seeds=[0],
        )
