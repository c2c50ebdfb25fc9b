"""Learning-rate transfer: best-rate selection, the JSON contract, the cache, bad input.

The real runs are tiny (synthetic teacher data, 64 training samples, two steps per
cell, one process) so that the whole file runs in well under a minute.
"""

import json
import socket
import subprocess
import sys
import warnings

import pytest

from muptheory.cli import main
from muptheory.errors import InvalidInputError
from muptheory.transfer import TransferGrid, best_learning_rates, seed_scores

TINY = [
    "--data", "synthetic", "--n-train", "64", "--batch-size", "32",
    "--widths", "16", "32", "--lrs", "0.05", "0.1", "--no-progress",
]  # fmt: skip
LOCAL = ["--workers", "1"]


def cell(width, lr, loss, *, seed=0, diverged=False, accuracy=None):
    return {
        "width": width,
        "lr": lr,
        "seed": seed,
        "train_loss": None if diverged else loss,
        "test_accuracy": None if diverged else accuracy,
        "diverged": diverged,
    }


# -- choosing the best learning rate ----------------------------------------------------


def test_best_rate_is_the_lowest_train_loss_and_a_diverged_rate_never_wins():
    cells = [
        cell(64, 0.1, 0.5),
        cell(64, 0.2, 0.3),
        cell(64, 0.4, 0.0, diverged=True),  # its loss would win were it counted
        cell(128, 0.1, 0.4),
        cell(128, 0.2, 0.2),
        cell(128, 0.4, 0.1),
    ]
    assert best_learning_rates(cells, metric="train_loss") == {64: 0.2, 128: 0.4}


def test_a_width_where_every_rate_diverged_warns_with_what_was_swept():
    cells = [cell(64, 0.1, 0.5), cell(128, 0.1, 0.0, diverged=True)]
    with pytest.warns(UserWarning, match=r"pc \(gamma_bar_last=-1\), sp: every"):
        best = best_learning_rates(cells, label="pc (gamma_bar_last=-1), sp")
    assert best == {64: 0.1, 128: None}


def test_best_rate_by_accuracy_prefers_the_highest_and_ties_go_to_the_smaller_rate():
    cells = [
        cell(64, 0.1, 0.9, accuracy=0.7),
        cell(64, 0.2, 0.1, accuracy=0.8),
        cell(64, 0.4, 0.2, accuracy=0.8),
    ]
    assert best_learning_rates(cells, metric="test_accuracy") == {64: 0.2}


def test_one_diverged_seed_makes_the_rate_count_as_diverged():
    cells = [
        cell(64, 0.1, 0.5, seed=0),
        cell(64, 0.1, 0.5, seed=1),
        cell(64, 0.2, 0.1, seed=0),
        cell(64, 0.2, 0.0, seed=1, diverged=True),
    ]
    assert seed_scores(cells, metric="train_loss") == {(64, 0.1): 0.5, (64, 0.2): None}
    assert best_learning_rates(cells) == {64: 0.1}


def test_a_failed_cell_counts_as_worst():
    cells = [cell(64, 0.1, 0.5), {**cell(64, 0.2, 0.1), "error": "ValueError: x"}]
    assert best_learning_rates(cells) == {64: 0.1}


def test_a_width_where_every_rate_diverged_has_no_best_rate_and_warns():
    cells = [cell(64, 0.1, 0.5, diverged=True), cell(128, 0.1, 0.5)]
    with pytest.warns(UserWarning, match="width 64"):
        assert best_learning_rates(cells, widths=(64, 128)) == {64: None, 128: 0.1}


@pytest.mark.parametrize(
    "axes, message",
    [
        (dict(lrs=()), "learning-rate list is empty"),
        (dict(lrs=(0.1, -0.1)), "must be positive"),
        (dict(lrs=(float("nan"),)), "must be positive"),
        (dict(widths=(64, 0)), "width must be a positive integer"),
        (dict(seeds=0), "seeds must be a positive integer"),
    ],
)
def test_bad_grids_are_rejected_with_a_message_that_names_the_axis(axes, message):
    with pytest.raises(InvalidInputError, match=message):
        TransferGrid(**axes)


# -- a tiny real run ------------------------------------------------------------------


def test_json_has_the_documented_keys_and_a_repeated_run_computes_nothing(
    tmp_path, capsys
):
    args = ["transfer", "bp", "--param", "mup", *TINY, *LOCAL, "--json"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--plot", str(tmp_path / "t.png")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    first = json.loads(capsys.readouterr().out)

    assert first["widths"] == [16, 32]
    assert first["lrs"] == [0.05, 0.1]
    assert first["metric"] == "train_loss"
    # what was swept, beyond the names: BP/SGD's options and BP's muP exponents
    assert first["options"]["optimizer"] == "sgd"
    assert first["parameterization"]["b"] == {
        "first": "1/2",
        "hidden": "1/2",
        "last": "1",
    }
    assert set(first["best_lr"]) == {"16", "32"}
    assert all(lr in (0.05, 0.1) for lr in first["best_lr"].values())
    assert len(first["cells"]) == 4
    for record in first["cells"]:
        assert {
            "width",
            "lr",
            "seed",
            "train_loss",
            "test_accuracy",
            "diverged",
        } <= set(record)
        assert record["steps"] == 2 and not record["diverged"]
        assert 0 < record["train_loss"] < 10 and 0 <= record["test_accuracy"] <= 1
    assert [c["cached"] for c in first["cells"]] == [False] * 4
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4

    # Same command: every cell comes from the cache, with the same numbers.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert [c["cached"] for c in second["cells"]] == [True] * 4
    assert second["best_lr"] == first["best_lr"]
    losses = [c["train_loss"] for c in second["cells"]]
    assert losses == [c["train_loss"] for c in first["cells"]]

    # One more width: only its two cells are computed.
    wider = [*args, "--widths", "16", "32", "48"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(wider) == 0
    third = json.loads(capsys.readouterr().out)
    assert sum(not c["cached"] for c in third["cells"]) == 2


# -- bad input on the command line ----------------------------------------------------


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "muptheory", "transfer", "bp", "--param", "sp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lrs"], "learning-rate list is empty"),
        (["--widths", "16", "0"], "width must be a positive integer"),
        (["--lrs", "0.1", "0"], "rates must be positive"),
        (["--plot", "missing/t.png"], "does not exist"),
        (["--scheduler", "tcp://127.0.0.1:{port}"], "cannot reach Dask scheduler"),
        (["--scheduler", "tcp://127.0.0.1:99999"], "invalid port '99999'"),
        (["--depth", "1"], "depth must be at least 2"),
        (["--n-train", "3"], "batch_size 32 exceeds n_train 3"),
        (["--batch-size", "1000"], "batch_size 1000 exceeds n_train 64"),
        (["--widths", "16", "1000000000000"], "width 1000000000000 is too large"),
        (["--plot", "t.txt"], "--plot must end in .png, .pdf or .svg"),
        (["--plot", ""], "--plot must end in .png, .pdf or .svg, got ''"),
        (["--cache-dir", ""], "cache directory is an empty path"),
    ],
    ids=[
        "empty-lrs",
        "zero-width",
        "zero-lr",
        "unwritable-plot",
        "no-scheduler",
        "bad-port",
        "depth-1",
        "tiny-n-train",
        "batch-over-n-train",
        "huge-width",
        "plot-txt",
        "plot-empty",
        "cache-dir-empty",
    ],
)
def test_bad_input_is_one_stderr_line_exit_2_and_no_files(tmp_path, extra, message):
    extra = [a.format(port=free_loopback_port()) for a in extra]
    local = [] if "--scheduler" in extra else LOCAL
    proc = run_cli(*TINY, *local, "--cache-dir", "cache", *extra, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert lines[0].startswith("muptheory transfer: error:")
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_cell_that_rejects_its_input_is_an_error_not_a_divergence(monkeypatch):
    import muptheory.transfer as transfer
    from muptheory.errors import MuptheoryError
    from muptheory.methods import MethodConfig
    from muptheory.parameterization import preset

    # Skip the up-front check, so that only the cells meet the oversized batch.
    monkeypatch.setattr(transfer, "check_grid", lambda grid, data: None)
    grid = TransferGrid(widths=(16,), lrs=(0.1,), batch_size=4096, n_train=None)
    with pytest.raises(MuptheoryError, match="batch_size 4096 exceeds") as info:
        transfer.transfer_sweep(
            MethodConfig.create("bp"),
            preset("sp"),
            grid,
            data="digits",
            cache_dir=None,
            workers=1,
        )
    assert "width 16, lr 0.1, seed 0" in str(info.value)


def test_a_batch_larger_than_the_whole_training_set_is_refused_up_front():
    from muptheory.transfer import check_grid

    grid = TransferGrid(widths=(16,), lrs=(0.1,), batch_size=4096, n_train=None)
    with pytest.raises(InvalidInputError, match="batch_size 4096 exceeds the 1438"):
        check_grid(grid, data="digits")
