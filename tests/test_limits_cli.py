"""The limit and interpolation commands: the documented JSON, errors, import cost."""

import json
import subprocess
import sys

import numpy as np
import pytest


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
    assert data["gamma_bar_last"] == -1 and data["gamma_bar_hidden"] == 0
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


def one_line_error(*args):
    """Run the CLI, check it failed as a user error, return the message."""
    result = run_cli(*args)
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (args, result.stderr)
    return lines[0]


def no_nan_json(text):
    def refuse(token):
        raise AssertionError(f"JSON has a {token} token")

    return json.loads(text, parse_constant=refuse)


def test_negative_seeds_are_refused_by_both_commands():
    for args in (
        ("limit", "pc", "--param", "mup", "--steps", "3", "--seed", "-1"),
        ("interpolation", "--gamma0", "1", "--steps", "3", "--seed", "-1"),
    ):
        assert "non-negative integer" in one_line_error(*args)


def test_library_refuses_negative_seeds():
    from muptheory.errors import InvalidInputError
    from muptheory.limits.dynamics import limit_dynamics
    from muptheory.limits.scaling import maximal_update
    from muptheory.limits.tasks import linear_teacher_task
    from muptheory.methods import MethodConfig

    with pytest.raises(InvalidInputError, match="non-negative"):
        linear_teacher_task(seed=-1)
    bp = MethodConfig.create("bp")
    with pytest.raises(InvalidInputError, match="non-negative"):
        limit_dynamics(
            bp,
            maximal_update(bp),
            linear_teacher_task(),
            depth=2,
            steps=1,
            lr=0.05,
            seed=-3,
        )


def test_widths_must_be_two_or_more_distinct_integers():
    base = ("limit", "pc", "--param", "mup", "--steps", "3", "--seeds", "2")
    assert "distinct" in one_line_error(*base, "--widths", "16,16")
    assert "empty item" in one_line_error(*base, "--widths", "16,,32")
    assert "two distinct widths" in one_line_error(*base, "--widths", "16")
    assert "'x'" in one_line_error(*base, "--widths", "16,x")


def test_slope_fits_refuse_repeated_widths():
    from muptheory.errors import InvalidInputError
    from muptheory.limits.convergence import check_widths, fit_slope, slope_error

    with pytest.raises(InvalidInputError):
        fit_slope([16, 16], [0.1, 0.2])
    with pytest.raises(InvalidInputError):
        slope_error([16, 16], [[0.1, 0.2], [0.3, 0.1]])
    with pytest.raises(InvalidInputError, match="distinct"):
        check_widths([16, 32, 16])
    assert check_widths([32, 16]) == [32, 16]


def test_convergence_json_writes_null_for_undefined_numbers():
    from muptheory.limits.convergence import Convergence

    conv = Convergence(
        [16, 32],
        {"loss": [0.1, float("nan")]},
        {"loss": float("inf")},
        2,
        {"loss": float("nan")},
    )
    text = json.dumps(conv.to_json())
    data = no_nan_json(text)
    assert data["errors"]["loss"] == [0.1, None]
    assert data["slopes"]["loss"] is None and data["slope_errors"]["loss"] is None


def test_widths_given_with_spaces_and_one_seed_give_null_standard_errors():
    result = run_cli(
        "limit",
        "bp",
        "--param",
        "mup",
        "--steps",
        "2",
        "--samples",
        "4",
        "--widths",
        "16",
        "32",
        "--seeds",
        "1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    conv = no_nan_json(result.stdout)["convergence"]
    assert conv["widths"] == [16, 32]
    assert all(conv["slopes"][name] is not None for name in conv["slopes"])
    assert set(conv["slope_errors"].values()) == {None}


def test_a_problem_too_large_for_memory_is_refused_up_front():
    message = one_line_error(
        "limit", "pc", "--param", "mup", "--samples", "100000", "--steps", "3"
    )
    assert "GiB" in message and "fewer samples" in message
    assert "GiB" in one_line_error("interpolation", "--steps", "100000000")


def test_running_out_of_memory_is_a_one_line_error(monkeypatch, capsys):
    import muptheory.limits.dynamics
    from muptheory.cli import main

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(muptheory.limits.dynamics, "limit_dynamics", exhausted)
    assert main(["limit", "bp", "--param", "mup", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory" in err[0]


def test_options_the_run_does_not_use_are_refused():
    pc = ("limit", "pc", "--param", "mup", "--steps", "2")
    assert "TP/DTP" in one_line_error(*pc, "--beta", "2")
    assert "--widths" in one_line_error(*pc, "--seeds", "4")
    result = run_cli("limit", "tp", "--param", "mup", "--steps", "2", "--beta", "2")
    assert result.returncode == 0, result.stderr


def test_extreme_sigma_messages_name_the_scale_not_a_cosine():
    big = one_line_error("limit", "pc", "--param", "mup", "--sigma", "1e200")
    assert "overflows" in big and "cosine" not in big
    small = one_line_error("interpolation", "--gamma0", "1", "--sigma", "1e-300")
    assert "too small" in small and "cosine" not in small
    kernel = one_line_error("limit", "bp", "--param", "ntk", "--sigma", "1e200")
    assert "overflows" in kernel


def test_unknown_activation_is_not_called_nonlinear():
    base = ("limit", "bp", "--param", "mup", "--steps", "2")
    assert "unknown activation 'bogus'" in one_line_error(
        *base, "--activation", "bogus"
    )
    assert "not supported" in one_line_error(*base, "--activation", "tanh")


def test_a_loss_too_large_at_initialization_blames_sigma_not_the_learning_rate():
    message = one_line_error("limit", "tp", "--param", "mup", "--sigma", "1e20")
    assert "initialization" in message and "sigma" in message
    assert "learning rate" not in message
