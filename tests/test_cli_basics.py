"""The CLI's contract for every command: one-line errors and exit code 2."""

import subprocess
import sys


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "muptheory", *args], capture_output=True, text=True
    )


def test_unknown_command_is_one_line_exit_2():
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid choice" in result.stderr


def test_coordcheck_rejects_a_bad_plot_path_before_training(tmp_path):
    for plot in (str(tmp_path), str(tmp_path / "missing" / "x.png")):
        result = run_cli("coordcheck", "bp", "--param", "mup", "--plot", plot)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_classify_takes_kfac_damping_from_the_command_line():
    base = ("classify", "bp", "--optimizer", "kfac", "--b", "1/2", "1/2", "1")
    derived = run_cli(*base, "--c", "0", "0", "0", "--json")
    assert derived.returncode == 0, derived.stderr
    assert '"feature_learning"' in derived.stdout
    assert "damping at the derived muP exponents" in derived.stdout
    given = run_cli(*base, "--c", "0", "0", "0", "--damping-a", "0", "3", "1")
    assert given.returncode == 0, given.stderr
    assert "rho_A ~ M^(0, 3, 1) (given)" in given.stdout


def test_bad_damping_on_the_command_line_is_one_line_exit_2():
    base = ("classify", "bp", "--b", "1/2", "1/2", "1", "--c", "0", "0", "0")
    for args, message in (
        (("--optimizer", "kfac", "--damping-a", "0", "1"), "three exponents"),
        (("--optimizer", "shampoo", "--damping", "0", "x", "1"), "not a rational"),
        (("--damping-g", "0", "1", "1"), "applies only with --optimizer kfac"),
    ):
        result = run_cli(*base, *args)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert message in result.stderr
    derive = run_cli(
        "exponents", "bp", "--optimizer", "shampoo", "--damping", "0", "0", "0"
    )
    assert derive.returncode == 2
    assert "what the derivation finds" in derive.stderr


def test_param_mup_with_given_damping_is_the_derived_mup():
    from fractions import Fraction

    from muptheory.cli.common import resolve_parameterization
    from muptheory.methods import MethodConfig

    config = MethodConfig.create("bp", optimizer="kfac", damping_a=["0", "3", "1"])
    param = resolve_parameterization("mup", config)
    assert param.b.as_tuple() == (Fraction(1, 2), Fraction(1, 2), Fraction(1))
    assert param.c.as_tuple() == (0, 0, 0)


def test_param_mup_with_given_feedback_exponents_is_the_derived_mup():
    from fractions import Fraction

    from muptheory.cli.common import resolve_parameterization
    from muptheory.methods import MethodConfig

    config = MethodConfig.create("tp", feedback="trained", feedback_c="0")
    param = resolve_parameterization("mup", config)
    # TP's muP (THEORY.md 5), whatever the feedback maps' own learning rates
    assert param.b.as_tuple() == (Fraction(1, 2), Fraction(1, 2), Fraction(1, 2))
    assert param.c.as_tuple() == (0, 1, 1)
