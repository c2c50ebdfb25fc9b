"""The limit and interpolation commands: the documented JSON, errors, import cost."""

import json
import subprocess
import sys

import numpy as np


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "muptheory", *args], capture_output=True, text=True
    )


def test_interpolation_depth_3_json_has_the_promised_lists():
    result = run_cli("interpolation", "--depth", "3", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    gamma0, gd, gn = data["gamma0"], data["cos_pc_gd"], data["cos_pc_gn"]
    gnt = data["cos_pc_gnt"]
    assert len(gamma0) == len(gd) == len(gn) == len(gnt) > 2
    assert all(isinstance(v, float) for v in gamma0 + gd + gn + gnt)
    assert len(data["cos_pc_gnt_by_layer"][0]) == 3
    assert data["outputs"] == 10 and data["train_steps"] > 0
    # from the first-order end to the Gauss-Newton end
    assert gd[0] > 0.9999 and gn[-1] > 0.9999
    assert gd[-1] < 0.97 and gn[0] < 0.97
    # with two hidden layers the GNT update is neither end
    assert gnt[0] < 0.97 and gnt[-1] < 0.99
    assert np.all(np.diff(gamma0) > 0)


def test_limit_json_and_plot(tmp_path):
    plot = tmp_path / "limit.png"
    result = run_cli(
        "limit",
        "pc",
        "--param",
        "limit-mup",
        "--gamma-bar-last",
        "-1",
        "--gamma0",
        "2",
        "--depth",
        "3",
        "--steps",
        "3",
        "--samples",
        "6",
        "--widths",
        "32,64",
        "--seeds",
        "1",
        "--json",
        "--plot",
        str(plot),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["loss"]) == 4
    assert data["parameterization"]["c"] == {"first": "0", "hidden": "1", "last": "1"}
    assert set(data["convergence"]["errors"]) == {
        "f_train",
        "f_test",
        "loss",
        "kernels",
        "pc_cos_gd",
        "pc_cos_gnt",
        "c_gamma_scaled",
        "pc_output_error",
        "pc_update_norms",
    }
    assert set(data["convergence"]["slope_errors"]) == set(
        data["convergence"]["errors"]
    )
    assert plot.stat().st_size > 1000


def test_limit_of_ntk_preset_uses_the_kernel_regime():
    result = run_cli("limit", "bp", "--param", "ntk", "--steps", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["regime"] == "kernel"


def test_bad_inputs_are_one_line_exit_2():
    for args in (
        ("limit", "bp", "--param", "limit-mup", "--depth", "1"),
        ("limit", "bp", "--param", "limit-mup", "--activation", "tanh"),
        ("limit", "bp", "--param", "sp"),
        ("limit", "bp", "--param", "nonsense"),
        ("limit", "gnt", "--param", "limit-mup"),
        ("limit", "bp", "--param", "limit-mup", "--gamma0", "2"),
        ("limit", "bp", "--param", "limit-mup", "--lr", "50", "--steps", "50"),
        ("interpolation", "--gamma0", "-1"),
    ):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_importing_muptheory_stays_light():
    code = (
        "import sys, muptheory, muptheory.cli, muptheory.limits;"
        "print(any(m.split('.')[0] in ('neural_tangents', 'jax', 'tensorflow')"
        " for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.stdout.strip() == "False", result.stderr
