"""Defects a probe of the command line found: each test pins the fixed behaviour.

Blown-up transfer runs (wide table cells, finite losses of 1e31 picked as the best
rate, diverged runs that kept computing), warnings and errors that printed more
than one line, a parser that imported JAX, options that were silently ignored,
and JSON that dropped what the text showed.
"""

import json
import subprocess
import sys
import warnings
from fractions import Fraction

import pytest

from muptheory.cli import main
from muptheory.errors import InvalidInputError
from muptheory.methods import MethodConfig, config_from_options
from muptheory.transfer import (
    BLOWUP_LOSS,
    TransferGrid,
    TransferResult,
    best_learning_rates,
    seed_scores,
)


def cell(width, lr, loss, *, accuracy=0.5):
    return {
        "width": width,
        "lr": lr,
        "seed": 0,
        "train_loss": loss,
        "test_accuracy": accuracy,
        "diverged": False,
        "cached": True,
    }


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )


# -- transfer: blown-up runs ------------------------------------------------------------


def test_a_finite_blown_up_run_is_never_a_widths_best_rate():
    cells = [
        cell(64, 0.25, 0.81),
        cell(64, 0.5, 0.74),
        cell(256, 0.25, 8.6e31),  # finite, but the network has blown up
        cell(256, 0.5, float("nan")),
    ]
    with pytest.warns(UserWarning, match="width 256"):
        best = best_learning_rates(cells, widths=(64, 256))
    assert best == {64: 0.5, 256: None}
    assert seed_scores(cells, metric="train_loss")[(256, 0.25)] is None


def test_a_blown_up_run_also_loses_when_the_metric_is_accuracy():
    cells = [
        cell(64, 0.25, 0.8, accuracy=0.6),
        cell(64, 0.5, 2 * BLOWUP_LOSS, accuracy=0.9),
    ]
    assert best_learning_rates(cells, metric="test_accuracy") == {64: 0.25}


def test_the_blowup_threshold_is_far_above_a_fresh_networks_loss():
    # 10 one-hot classes, output coordinates of size 100: loss 5e4.
    assert 0.5 * 10 * 100**2 < BLOWUP_LOSS
    assert best_learning_rates([cell(64, 0.1, 5e4)]) == {64: 0.1}


def test_transfer_table_keeps_its_columns_for_huge_losses(capsys):
    from muptheory.cli.sweeps import _print_table

    grid = TransferGrid(widths=(64, 256), lrs=(0.25, 0.5, 1.0))
    cells = [
        cell(64, 0.25, 0.8137274077990244),
        cell(64, 0.5, 123456.789),
        cell(64, 1.0, 0.5),
        cell(256, 0.25, 8.6e31),
        cell(256, 0.5, 987654.3),
        cell(256, 1.0, 0.25),
    ]
    result = TransferResult(
        method="pc",
        param="sp",
        data="digits",
        metric="train_loss",
        grid=grid,
        cells=cells,
        best_lr=best_learning_rates(cells, widths=grid.widths),
    )
    _print_table(result)
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[1], lines[2:4]
    for row in rows:
        assert len(row) == len(header) - len("best lr") + len(row.split()[-1])
    assert rows[0].split() == ["64", "0.8137", "1.235e+05", "0.5", "1"]
    assert rows[1].split() == ["256", "div", "9.877e+05", "0.25", "1"]


# -- training: a diverged run stops computing -----------------------------------------


def _plain_epoch(sim):
    """The epoch scan without the dead-run skip (the code before the fix)."""
    import jax
    import jax.numpy as jnp

    def run(state, xs, ys, rates):
        def body(state, batch):
            new, info = sim.update_fn(state, *batch, rates)
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(w)) for w in new.weights]))
            return new, (info.loss, finite)

        return jax.lax.scan(body, state, (xs, ys))

    return jax.jit(run)


def _simulator(method, param_name, lr):
    from muptheory.cli.common import resolve_parameterization
    from muptheory.simulate.network import Architecture
    from muptheory.simulate.step import Simulator

    config = MethodConfig.create(method)
    param = resolve_parameterization(param_name, config)
    arch = Architecture(width=32, depth=3, input_dim=64, n_outputs=10)
    return Simulator(config, param, arch, lr=lr)


def _batches(steps):
    import jax.numpy as jnp

    from muptheory.data import load_dataset

    data = load_dataset("digits", seed=0, n_train=32 * steps)
    xs = jnp.asarray(data.x_train, jnp.float32).reshape(steps, 32, -1)
    ys = jnp.asarray(data.y_train, jnp.float32).reshape(steps, 32, -1)
    return xs, ys


@pytest.mark.parametrize("method", ["bp", "pc"])
def test_an_epoch_that_does_not_diverge_gives_the_plain_scans_numbers(method):
    import numpy as np

    from muptheory.simulate.train import epoch_runner

    sim = _simulator(method, "mup", 0.5)
    xs, ys = _batches(6)
    state, rates = sim.init(0), sim.rates()
    new, (losses, finite) = epoch_runner(sim)(state, xs, ys, rates)
    old, (old_losses, old_finite) = _plain_epoch(sim)(state, xs, ys, rates)
    assert np.all(np.asarray(finite))
    np.testing.assert_array_equal(np.asarray(losses), np.asarray(old_losses))
    for w, w_old in zip(new.weights, old.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(w), np.asarray(w_old))


def test_a_diverged_epoch_skips_its_remaining_steps_and_reports_the_same_step():
    import numpy as np

    from muptheory.simulate.train import epoch_runner

    sim = _simulator("bp", "sp", 1e4)  # overflows within a few steps
    xs, ys = _batches(12)
    state, rates = sim.init(0), sim.rates()
    new, (losses, finite) = epoch_runner(sim)(state, xs, ys, rates)
    _, (old_losses, old_finite) = _plain_epoch(sim)(state, xs, ys, rates)
    ok = np.isfinite(np.asarray(losses)) & np.asarray(finite)
    old_ok = np.isfinite(np.asarray(old_losses)) & np.asarray(old_finite)
    first = int(np.argmin(ok))
    assert not ok.all() and first == int(np.argmin(old_ok)) and first < 11
    # the state stopped at the first bad step: later steps computed nothing
    assert int(new.step) == first + 1
    assert not ok[first:].any()


def test_train_reports_the_diverged_step_of_a_nan_run():
    from muptheory.data import load_dataset
    from muptheory.parameterization import preset
    from muptheory.simulate.train import train

    data = load_dataset("digits", seed=0, n_train=256)
    run = train(
        MethodConfig.create("bp"),
        preset("sp"),
        width=64,
        depth=3,
        data=data,
        lr=64.0,
        epochs=2,
        batch_size=32,
        seed=1,
    )
    # pinned from the run before the skip was added
    assert (run.diverged, run.diverged_step, run.steps) == (True, 7, 6)
    assert len(run.step_losses) == 6 and run.train_loss == []


# -- one line on stderr -----------------------------------------------------------------


def test_the_all_diverged_warning_is_one_clean_line(monkeypatch, capsys):
    import muptheory.cli.sweeps as sweeps_cli

    def sweep(args, config, param, grid):
        cells = [{**cell(16, 0.1, None), "diverged": True}]
        return TransferResult(
            method="bp",
            param="sp",
            data="synthetic",
            metric="train_loss",
            grid=grid,
            cells=cells,
            best_lr=best_learning_rates(cells, widths=grid.widths),
        )

    monkeypatch.setattr(sweeps_cli, "_sweep", sweep)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code = main(["transfer", "bp", "--param", "sp", "--widths", "16"])
    assert code == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "muptheory transfer: warning: every learning rate diverged or failed at "
        "width 16; it has no best learning rate"
    ]


def test_a_cache_dir_that_is_a_file_is_one_error_line(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "muptheory", "transfer", "bp", "--param", "sp"]
        + ["--data", "synthetic", "--n-train", "64", "--widths", "16"]
        + ["--lrs", "0.1", "--workers", "1", "--no-progress"]
        + ["--cache-dir", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"muptheory transfer: error: cache directory {str(path)!r} is a file"
    ]


# -- the parser does not import JAX ---------------------------------------------------


def test_building_the_parser_does_not_import_jax():
    proc = run_python(
        "import muptheory.cli, sys; muptheory.cli.build_parser(); "
        "print('jax' in sys.modules)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_importing_the_package_and_deriving_exponents_do_not_import_jax():
    proc = run_python(
        "import sys, muptheory; before = 'jax' in sys.modules\n"
        "from muptheory.cli import main\n"
        "code = main(['exponents', 'bp', '--json'])\n"
        "print(before, code, 'jax' in sys.modules, file=sys.stderr)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.split() == ["False", "0", "False"]
    assert json.loads(proc.stdout)["method"] == "bp"


def test_the_coordcheck_defaults_the_parser_shows_are_the_engines():
    from muptheory.cli import simulate as cli
    from muptheory.simulate import coordcheck

    assert cli.DEFAULT_WIDTHS == coordcheck.DEFAULT_WIDTHS
    assert cli.DEFAULT_CACHE_DIR == coordcheck.DEFAULT_CACHE_DIR


# -- method options: config_from_options and options that do not apply ----------------


def test_transfer_and_coordcheck_rebuild_configs_with_the_methods_function():
    import muptheory.simulate.coordcheck as coordcheck
    import muptheory.transfer as transfer

    assert transfer.config_from_options is config_from_options
    assert coordcheck.config_from_options is config_from_options


@pytest.mark.parametrize(
    "method, options",
    [
        ("bp", {"optimizer": "adam"}),
        ("gnt", {}),
        ("gnt", {"lambda_zero": True}),
        ("pc", {}),
        ("pc", {"inference": "sequential", "inference_rate": 0.5}),
        ("pc", {"inference": "iterative", "inference_steps": 5, "fpa": True}),
        ("tp", {"mu_bar": "1/2"}),
        ("dtp", {"feedback": "trained", "feedback_b": "1", "feedback_c": "1/2"}),
    ],
)
def test_options_round_trip_through_config_from_options(method, options):
    config = MethodConfig.create(method, **options)
    assert config_from_options(method, config.options()) == config


@pytest.mark.parametrize(
    "method, options, message",
    [
        ("pc", {"inference_steps": 5}, "--inference-steps applies only with "),
        ("pc", {"inference_rate": 0.5}, "--inference sequential"),
        (
            "pc",
            {"inference": "sequential", "inference_steps": 3},
            "not with --inference sequential",
        ),
        ("tp", {"feedback_b": "1"}, "--feedback-b applies only with --feedback"),
        ("dtp", {"feedback_c": "0"}, "--feedback-c applies only with"),
        ("tp", {"feedback": "trained", "mu_bar": "1"}, "--mu-bar applies only"),
        ("gnt", {"lambda_zero": True, "lambda0": 2.0}, "--lambda0 does not apply"),
    ],
)
def test_an_option_switched_off_by_another_choice_is_an_error(method, options, message):
    with pytest.raises(InvalidInputError, match=message):
        MethodConfig.create(method, **options)


def test_options_that_apply_are_accepted():
    config = MethodConfig.create("pc", inference="iterative", inference_steps=5)
    assert config.inference_steps == 5
    trained = MethodConfig.create("tp", feedback="trained", feedback_b="1")
    assert trained.feedback_b == Fraction(1)


def test_an_option_that_does_not_apply_on_the_command_line_is_one_error_line(capsys):
    assert main(["exponents", "pc", "--inference-steps", "5"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--inference-steps applies only with" in err[0]


# -- JSON keeps what the text shows ----------------------------------------------------


def test_exponents_json_with_explain_carries_the_explanation(capsys):
    assert main(["exponents", "pc", "--json", "--explain"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["explanation"], list) and len(out["explanation"]) > 5
    assert all(isinstance(line, str) for line in out["explanation"])
    assert main(["exponents", "pc", "--json"]) == 0
    assert "explanation" not in json.loads(capsys.readouterr().out)


def test_classify_json_with_explain_carries_the_explanation(capsys):
    args = ["classify", "bp", "--b", "0", "1/2", "1", "--c", "0", "0", "0"]
    assert main([*args, "--json", "--explain"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["explanation"] and all(isinstance(x, str) for x in out["explanation"])


def test_a_quantity_without_prediction_is_not_judged_and_says_so():
    from muptheory.parameterization import preset
    from muptheory.simulate.coordcheck import (
        CoordCheckResult,
        CoordCheckSettings,
        QuantityFit,
    )

    fits = [
        QuantityFit("h", 1, 0, 0.01, -0.1, 0.1, None, None, [64, 128]),
        QuantityFit("h", 2, 0, 0.02, -0.1, 0.1, Fraction(0), True, [64, 128]),
    ]
    result = CoordCheckResult(
        config=MethodConfig.create("bp"),
        param=preset("mup"),
        settings=CoordCheckSettings(),
        data_name="digits",
        widths=[64, 128],
        sizes={},
        diverged=[],
        fits=fits,
    )
    unjudged, judged = (f.to_json() for f in fits)
    assert unjudged["agrees"] is False and unjudged["judged"] is False
    assert judged["agrees"] is True and judged["judged"] is True
    rows = result.table().splitlines()[2:]
    assert rows[0].endswith("no prediction") and rows[1].endswith("agree")


# -- atomic writes: only regular files are replaced ---------------------------------------


def test_an_atomic_write_refuses_a_fifo_and_leaves_it_in_place(tmp_path):
    import os
    import stat

    from muptheory.io import atomic_write_bytes

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="pipe.png.*FIFO"):
        atomic_write_bytes(fifo, b"png bytes")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.png"]


def test_an_atomic_write_refuses_a_directory(tmp_path):
    from muptheory.io import atomic_write_text

    (tmp_path / "out.json").mkdir()
    with pytest.raises(InvalidInputError, match="out.json.*directory"):
        atomic_write_text(tmp_path / "out.json", "{}")


def test_an_atomic_write_through_a_symlink_replaces_its_target_and_keeps_the_link(
    tmp_path,
):
    from muptheory.io import atomic_write_bytes

    real = tmp_path / "real" / "plot.png"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_bytes() == b"new"


def test_an_atomic_write_through_a_dangling_symlink_creates_the_target(tmp_path):
    from muptheory.io import atomic_write_bytes

    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "later.png")
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and (tmp_path / "later.png").read_bytes() == b"new"


def test_a_symlink_to_a_fifo_is_refused(tmp_path):
    import os

    from muptheory.io import atomic_write_bytes

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.png").symlink_to(tmp_path / "fifo")
    with pytest.raises(InvalidInputError, match="FIFO"):
        atomic_write_bytes(tmp_path / "link.png", b"x")
    assert (tmp_path / "link.png").is_symlink()
