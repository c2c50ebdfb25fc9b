"""Coord checks: slope fitting, measured exponents on small widths, divergence, CLI.

Expected exponents are written by hand from THEORY.md and Tensor Programs IV:

- BP/SGD under muP: every change is Theta(1) (exponent 0) and the output at init is
  a CLT sum with weights of size 1/M, exponent -1/2.
- BP/SGD under SP (c = 0), linear network, first step: the last layer's update is a
  correlated sum of M terms (exponent 1); the hidden update carries W_L^T e ~ M^{-1/2}
  times a correlated sum (exponent 1/2); the first layer sees only M^{-1/2}.
- DTP with b_L = 1: the target displacement e F^T K^{-1} H is proportional to the
  output at init, M^{-1/2}, so hidden features move like M^{-1/2} (THEORY.md 5).
"""

import json
import subprocess
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest

from muptheory.cli import main
from muptheory.errors import InvalidInputError
from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization, preset
from muptheory.simulate import CoordCheckSettings, coord_check, fit_exponent, train
from muptheory.simulate.coordcheck import (
    agrees,
    engine_predictions,
)


class Data:
    """Synthetic standardized inputs and one-hot targets (independent of data.py)."""

    def __init__(self, n=256, d=16, c=4, seed=0):
        rng = np.random.default_rng(seed)
        self.x_train = rng.standard_normal((n, d))
        self.y_train = np.eye(c)[rng.integers(0, c, n)]
        self.x_test, self.y_test = self.x_train[:64], self.y_train[:64]
        self.name = "synthetic-test"


def mup_sgd_exponents(depth):
    pred = {("f", depth): Fraction(-1, 2), ("delta_f", depth): Fraction(0)}
    for layer in range(1, depth):
        pred[("h", layer)] = pred[("delta_h", layer)] = Fraction(0)
    for layer in range(1, depth + 1):
        pred[("update", layer)] = Fraction(0)
    return pred


# -- fitting ---------------------------------------------------------------------------


def test_fit_recovers_a_known_slope_with_an_interval_over_seeds():
    rng = np.random.default_rng(0)
    widths = np.array([64, 128, 256, 512])
    values = 3.0 * widths[:, None] ** -0.5 * np.exp(0.05 * rng.standard_normal((4, 5)))
    slope, low, high = fit_exponent(widths, values)
    assert low < -0.5 < high
    assert abs(slope + 0.5) < 0.1
    assert high - low < 0.2


def test_fit_with_one_seed_uses_the_regression_error():
    widths = np.array([64, 128, 256])
    values = (widths**1.0 * np.array([1.0, 1.1, 0.95]))[:, None]
    slope, low, high = fit_exponent(widths, values)
    assert low < slope < high
    assert abs(slope - 1.0) < 0.1


def test_zero_or_nan_seeds_are_dropped_from_a_fit():
    widths = np.array([64, 128, 256])
    values = np.stack([widths**0.5, [1.0, np.nan, 2.0], [0.0, 1.0, 1.0]], axis=1)
    slope, low, high = fit_exponent(widths, values)
    assert slope == pytest.approx(0.5) and low == high == pytest.approx(0.5)
    assert fit_exponent(widths, np.full((3, 2), np.nan)) is None


def test_one_seed_at_two_widths_has_no_interval_and_is_judged_by_the_tolerance():
    widths = np.array([64, 128])
    values = (widths**0.1)[:, None]  # one seed, slope 0.1, no degree of freedom
    slope, low, high = fit_exponent(widths, values)
    assert slope == pytest.approx(0.1) and low is None and high is None
    assert agrees(slope, low, high, Fraction(0), tolerance=0.15)
    assert not agrees(slope, low, high, Fraction(-1, 2), tolerance=0.15)


def test_a_predicted_quantity_that_could_not_be_fitted_is_not_called_disagreeing():
    from muptheory.simulate.coordcheck import CoordCheckResult, QuantityFit

    unfitted = QuantityFit("h", 1, 0, None, None, None, Fraction(0), False, [64, 128])
    result = CoordCheckResult(
        config=MethodConfig.create("bp"),
        param=preset("mup"),
        settings=CoordCheckSettings(),
        data_name="digits",
        widths=[64, 128],
        sizes={},
        diverged=[],
        fits=[unfitted],
    )
    (row,) = result.table().splitlines()[2:]
    assert row.endswith("not fitted") and "DISAGREE" not in row
    assert unfitted.to_json()["agrees"] is False  # JSON keeps its meaning
    assert result.all_agree is False


def test_agreement_rule_uses_the_interval_or_the_tolerance():
    assert agrees(0.1, 0.05, 0.15, Fraction(0), tolerance=0.15)
    assert not agrees(0.2, 0.15, 0.25, Fraction(0), tolerance=0.15)
    assert agrees(0.4, -0.1, 0.9, Fraction(0), tolerance=0.15)


# -- measured exponents ------------------------------------------------------------------


def test_bp_sgd_mup_exponents_are_width_independent():
    settings = CoordCheckSettings(
        widths=(32, 64, 128, 256), seeds=3, steps=2, depth=3, lr=0.1, fit_widths=4
    )
    result = coord_check(
        MethodConfig.create("bp"),
        preset("mup"),
        Data(),
        settings=settings,
        predicted=mup_sgd_exponents(3),
    )
    assert result.diverged == []
    assert result.all_agree, result.table()
    for fit in result.fits:  # tolerance 0.2 on every slope, tighter than "agrees"
        assert abs(fit.measured_exponent - float(fit.predicted_exponent)) < 0.2


def test_sp_with_constant_learning_rate_grows_with_the_predicted_slopes():
    settings = CoordCheckSettings(
        widths=(64, 128, 256, 512),
        seeds=3,
        steps=1,
        depth=3,
        activation="linear",
        lr=0.01,
    )
    result = coord_check(
        MethodConfig.create("bp"), preset("sp"), Data(), settings=settings, predicted={}
    )
    slope = {(f.name, f.layer): f.measured_exponent for f in result.fits}
    assert slope[("update", 3)] == pytest.approx(1.0, abs=0.2)
    assert slope[("delta_f", 3)] == pytest.approx(1.0, abs=0.2)
    assert slope[("update", 2)] == pytest.approx(0.5, abs=0.25)
    assert slope[("delta_h", 2)] == pytest.approx(0.5, abs=0.25)
    assert slope[("update", 1)] == pytest.approx(-0.5, abs=0.3)


def test_sp_engine_predicts_the_first_step_and_leaves_later_steps_unjudged():
    # The engine's first-step exponents for SP with c = 0 are the ones written by
    # hand in the module docstring; after that step the output error is ~M, not the
    # Theta(1) the engine sizes later steps with, so later changes are not judged.
    config, param = MethodConfig.create("bp"), preset("sp")
    predicted, notes = engine_predictions(config, param, depth=3)
    assert predicted[("update", 3, 1)] == 1
    assert predicted[("delta_f", 3, 1)] == 1
    assert predicted[("update", 2, 1)] == Fraction(1, 2)
    assert predicted[("delta_h", 2, 1)] == Fraction(1, 2)
    assert predicted[("update", 1, 1)] == Fraction(-1, 2)
    assert ("delta_f", 3) not in predicted and ("update", 3) not in predicted
    assert predicted[("f", 3)] == 0 and predicted[("h", 2)] == 0
    (note,) = notes
    assert "update of layer 3 grows like M^(1)" in note
    assert engine_predictions(config, preset("mup"), depth=3)[1] == []

    settings = CoordCheckSettings(
        widths=(32, 64), seeds=2, steps=2, activation="linear", lr=0.01
    )
    result = coord_check(config, param, Data(), settings=settings)
    assert result.notes == [note]
    by_step = {(f.name, f.layer, f.step): f for f in result.fits}
    assert by_step[("delta_f", 3, 2)].predicted_exponent is None
    assert not by_step[("delta_f", 3, 2)].judged
    assert by_step[("delta_f", 3, 1)].predicted_exponent == 1
    assert result.to_json()["notes"] == [note]


def test_dtp_with_last_layer_b_one_shrinks_feature_changes():
    def hidden_change_slopes(b_last):
        param = Parameterization(b=("1/2", "1/2", b_last), c=(0, 1, 1))
        settings = CoordCheckSettings(
            widths=(64, 128, 256, 512), seeds=6, steps=1, depth=3, activation="linear"
        )
        result = coord_check(
            MethodConfig.create("dtp"), param, Data(), settings=settings, predicted={}
        )
        return [f.measured_exponent for f in result.fits if f.name == "delta_h"]

    for slope in hidden_change_slopes("1/2"):
        assert slope == pytest.approx(0.0, abs=0.2)
    for slope in hidden_change_slopes("1"):
        assert slope == pytest.approx(-0.5, abs=0.25)


def test_an_unstable_initialization_is_predicted_at_init_only_and_not_under_tanh():
    # fan-in b_l = 0: u_l ~ M^(1/2). A linear (or ReLU) layer keeps that size; tanh
    # saturates at Theta(1), which the calculus does not model, so nothing is said
    config = MethodConfig.create("bp")
    param = Parameterization(b=("1/2", "0", "1"), c=(-1, 0, 1))
    linear, _ = engine_predictions(config, param, depth=3, activation="linear")
    assert linear == {
        ("h", 1): 0,
        ("h", 2): Fraction(1, 2),
        ("f", 3): 0,
        ("h", 1, 1): 0,
        ("h", 2, 1): Fraction(1, 2),
        ("f", 3, 1): 0,
    }
    tanh, (note,) = engine_predictions(config, param, depth=3, activation="tanh")
    assert tanh == {}
    assert note.startswith("nothing is predicted (tanh saturates")


def test_b_last_one_shrinks_tp_targets_but_plain_tp_keeps_a_reconstruction_bias():
    # THEORY.md 5: with b_L = 1 the targets' error-driven displacement -Q_L e shrinks
    # like M^{-1/2}. Plain TP's ridge map also moves the target by the reconstruction
    # bias Q_L f - u_(L-1) = -mu U (F^T F + mu)^{-1}, Theta(1) once F^T F ~ 1/M << mu,
    # so plain TP's hidden layer keeps moving by Theta(1); DTP's difference removes it.
    from muptheory.simulate import Architecture, Simulator
    from muptheory.simulate.network import activation_fn, forward
    from muptheory.simulate.precision import precision
    from muptheory.simulate.tp import ridge_targets
    from muptheory.symbolic import coord_exponents

    data, widths = Data(n=16, d=16, c=4), [64, 128, 256, 512, 1024]
    param = Parameterization(b=("1/2", "1/2", "1"), c=(0, 1, 1))
    for method, bias_exponent in (("tp", 0.0), ("dtp", None)):
        config = MethodConfig.create(method)
        predicted = coord_exponents(config, param, depth=3, step=1)
        assert predicted[("delta_h", 2)] == (0 if method == "tp" else Fraction(-1, 2))
        driven, bias = np.zeros((len(widths), 4)), np.zeros((len(widths), 4))
        for i, width in enumerate(widths):
            arch = Architecture(width=width, depth=3, input_dim=16, n_outputs=4)
            sim = Simulator(config, param, arch, lr=0.1, dtype="float64")
            for seed in range(4):
                with precision("float64"):
                    Ws = sim.effective(sim.init(seed))
                    ff = forward(Ws, data.x_train, activation_fn("tanh"))
                    difference = method == "dtp"
                    with_error = ridge_targets(
                        ff, data.y_train, mu=sim.mu, difference=difference
                    )[-2]
                    # y = f: no error, so only the map's own bias moves the target
                    no_error = ridge_targets(
                        ff, ff.pre[-1], mu=sim.mu, difference=difference
                    )[-2]
                driven[i, seed] = np.sqrt(np.mean((with_error - no_error) ** 2))
                bias[i, seed] = np.sqrt(np.mean((no_error - ff.pre[-2]) ** 2))
        slope, low, high = fit_exponent(widths, driven)
        assert slope == pytest.approx(-0.5, abs=0.1), (method, slope)
        if bias_exponent is None:
            np.testing.assert_allclose(bias, 0.0, atol=1e-12)
        else:
            slope, low, high = fit_exponent(widths, bias)
            assert slope == pytest.approx(bias_exponent, abs=0.05), slope
            assert bias.min() > 0.3  # Theta(1), the size of u_(L-1) itself


def test_divergence_is_reported_and_kept_out_of_fits():
    settings = CoordCheckSettings(
        widths=(32, 64, 128, 256), seeds=2, steps=4, activation="linear", lr=100.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer than two widths" where all diverged
        result = coord_check(
            MethodConfig.create("bp"),
            preset("sp"),
            Data(),
            settings=settings,
            predicted=mup_sgd_exponents(3),
        )
    assert result.diverged, "SP with a huge learning rate should overflow"
    for event in result.diverged:
        assert set(event) == {"width", "seed", "step"}
        for fit in result.fits:
            if fit.step >= event["step"]:
                assert event["width"] not in fit.widths
    json.dumps(result.to_json(), allow_nan=False)


def test_train_reports_divergence_with_width_and_step():
    data = Data()
    ok = train(
        MethodConfig.create("bp"),
        preset("mup"),
        width=64,
        depth=3,
        data=data,
        lr=0.05,
        epochs=2,
        batch_size=32,
    )
    assert not ok.diverged and len(ok.test_accuracy) == 2
    assert ok.train_loss[-1] < ok.train_loss[0]
    bad = train(
        MethodConfig.create("bp"),
        preset("sp"),
        width=256,
        depth=3,
        data=data,
        lr=50.0,
        epochs=3,
        batch_size=32,
    )
    assert bad.diverged and bad.diverged_at == (256, bad.diverged_step)
    assert all(np.isfinite(bad.step_losses))


# -- the sweep: cache, resume, worker processes --------------------------------------------

SMALL = CoordCheckSettings(widths=(16, 32, 64), seeds=2, steps=2, depth=3, lr=0.1)


def small_check(data, **sweep):
    return coord_check(
        MethodConfig.create("bp"),
        preset("mup"),
        data,
        settings=SMALL,
        predicted=mup_sgd_exponents(3),
        **sweep,
    )


def test_a_repeated_coord_check_with_a_cache_computes_nothing_and_gives_the_same_json(
    tmp_path,
):
    first = small_check(Data(), cache_dir=tmp_path)
    assert first.n_computed == 3 and len(list(tmp_path.glob("*.json"))) == 3
    second = small_check(Data(), cache_dir=tmp_path)
    assert second.n_computed == 0
    assert second.to_json() == first.to_json()


def test_cached_sizes_equal_sizes_measured_in_process(tmp_path):
    fresh = small_check(Data())
    small_check(Data(), cache_dir=tmp_path)
    cached = small_check(Data(), cache_dir=tmp_path)
    assert cached.n_computed == 0 and fresh.n_computed == 3
    for key, values in fresh.sizes.items():
        np.testing.assert_array_equal(cached.sizes[key], values)
    assert json.dumps(cached.to_json()) == json.dumps(fresh.to_json())


def test_an_interrupted_coord_check_resumes_with_the_missing_widths(tmp_path):
    narrow = CoordCheckSettings(widths=(16, 32), seeds=2, steps=2, depth=3, lr=0.1)
    coord_check(
        MethodConfig.create("bp"),
        preset("mup"),
        Data(),
        settings=narrow,
        predicted={},
        cache_dir=tmp_path,
    )
    resumed = small_check(Data(), cache_dir=tmp_path)
    assert resumed.n_computed == 1
    assert resumed.to_json() == small_check(Data()).to_json()


def test_worker_processes_reload_named_data_and_give_the_in_process_numbers():
    from muptheory.data import load_dataset

    data = load_dataset("synthetic", seed=0)
    local = small_check(data)
    pooled = small_check(data, workers=2)
    assert pooled.to_json() == local.to_json()


def test_data_that_workers_cannot_reload_is_refused_before_any_run():
    with pytest.raises(InvalidInputError, match="workers=1"):
        small_check(Data(), workers=2)


# -- CLI -------------------------------------------------------------------------------


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "muptheory", "coordcheck", *args],
        capture_output=True,
        text=True,
    )


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (corrupt / stem).write_bytes(b"\x00\x00\x08\x03not an idx file")
    cases = {
        "width": ["bp", "--widths", "0", "64"],
        "steps": ["bp", "--steps", "-1"],
        "data name": ["bp", "--data", "no-such-data"],
        "no idx": ["bp", "--data", str(empty), "--param", "sp"],
        "corrupt idx": ["bp", "--data", str(corrupt), "--param", "sp"],
        "method": ["xp"],
        "option": ["bp", "--gamma-bar-last", "-1"],
    }
    for what, args in cases.items():
        result = run_cli(*args)
        assert result.returncode == 2, (what, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (what, result.stderr)
        assert "error" in lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--widths", "1000000000000", "16"], "width 1000000000000 is too large"),
        (["--depth", "1"], "depth must be at least 2"),
        (["--plot", "out.txt"], "--plot must end in .png, .pdf or .svg"),
        (["--plot", ""], "--plot must end in .png, .pdf or .svg, got ''"),
        (["--cache-dir", ""], "cache directory is an empty path"),
        (["--data", "{flat}"], "have no pixels"),
    ],
    ids=["huge-width", "depth-1", "plot-txt", "plot-empty", "cache-empty", "no-pixels"],
)
def test_bad_settings_are_one_line_before_any_training(tmp_path, args, message):
    flat = tmp_path / "flat"  # IDX images of shape (0, 5): no pixels
    flat.mkdir()
    for split, n in (("train", 40), ("t10k", 8)):
        head = bytes([0, 0, 0x08, 3]) + b"".join(
            x.to_bytes(4, "big") for x in (n, 0, 5)
        )
        (flat / f"{split}-images-idx3-ubyte").write_bytes(head)
        labels = bytes([0, 0, 0x08, 1]) + n.to_bytes(4, "big") + bytes(n)
        (flat / f"{split}-labels-idx1-ubyte").write_bytes(labels)
    args = [a.format(flat=flat) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "muptheory", "coordcheck", "bp", "--param", "sp"]
        + ["--widths", "16", "32", "--steps", "1", "--no-progress", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat"]


def test_cli_with_one_seed_and_two_widths_says_so_and_writes_a_pdf(
    monkeypatch, capsys, tmp_path
):
    import muptheory.cli.simulate as cli_simulate
    import muptheory.data as data_module

    monkeypatch.setattr(
        cli_simulate,
        "_predictions",
        lambda config, param, settings: (mup_sgd_exponents(settings.depth), []),
    )
    monkeypatch.setattr(data_module, "load_dataset", lambda name, seed=0: Data())
    args = ["coordcheck", "bp", "--param", "mup", "--widths", "32", "64"]
    args += ["--steps", "1", "--seeds", "1", "--no-progress", "--workers", "1"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--plot", str(tmp_path / "panels.pdf")]) == 0
    text = capsys.readouterr().out
    assert text.rstrip().endswith("(fit on all 2 widths)")
    assert "[+" not in text and "[-" not in text  # no zero-width intervals
    assert (tmp_path / "panels.pdf").read_bytes()[:5] == b"%PDF-"

    assert main([*args, "--json"]) == 0
    quantities = json.loads(capsys.readouterr().out)["quantities"]
    assert all(q["ci_low"] is None and q["ci_high"] is None for q in quantities)


def test_cli_json_has_the_documented_fields(monkeypatch, capsys, tmp_path):
    import muptheory.cli.simulate as cli_simulate
    import muptheory.data as data_module

    monkeypatch.setattr(
        cli_simulate,
        "_predictions",
        lambda config, param, settings: (mup_sgd_exponents(settings.depth), []),
    )
    monkeypatch.setattr(data_module, "load_dataset", lambda name, seed=0: Data())
    args = [
        "coordcheck",
        "bp",
        "--param",
        "mup",
        "--widths",
        "32",
        "64",
        "128",
        "--steps",
        "1",
        "--seeds",
        "2",
        "--json",
        "--no-progress",
        "--workers",
        "1",
        "--cache-dir",
        str(tmp_path),
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["widths"] == [32, 64, 128]
    assert out["quantities"]
    for q in out["quantities"]:
        assert isinstance(q["name"], str) and isinstance(q["layer"], int)
        assert isinstance(q["step"], int) and isinstance(q["measured_exponent"], float)
        assert Fraction(q["predicted_exponent"]) in (Fraction(0), Fraction(-1, 2))
        assert isinstance(q["agrees"], bool)
    assert main(args) == 0  # every width from the cache, the same JSON
    assert json.loads(capsys.readouterr().out) == out
