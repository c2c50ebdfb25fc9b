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
