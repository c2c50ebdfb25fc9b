"""`muptheory regenerate`: its pieces, its index, its verdicts and its bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from muptheory.cli import main
from muptheory.derivations import PIECES
from muptheory.derivations.common import (
    FULL,
    QUICK,
    Context,
    Finding,
    save_findings,
)
from muptheory.derivations.index import render_index
from muptheory.derivations.pc_equilibrium import c_gamma_matrix, closed_form_errors
from muptheory.derivations.transfer import judge
from muptheory.transfer import TransferGrid, TransferResult

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_every_package_directory_is_installed():
    declared = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "muptheory").rglob("__init__.py")
    }
    assert found | {"muptheory.derivations"} == declared


def test_table_and_interpolation_pieces_write_their_files(tmp_path, capsys):
    code = main(
        ["regenerate", "--out", str(tmp_path), "--only", "table", "interpolation"]
    )
    assert code == 0
    for name in ("table.md", "table.tex", "table.json", "interpolation.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "interpolation.png").read_bytes().startswith(PNG_MAGIC)
    index = (tmp_path / "index.md").read_text()
    assert "![PC interpolates" in index
    assert "Not run yet: pc_equilibrium, tp_alignment, coordchecks, transfer." in index
    table = json.loads((tmp_path / "table.json").read_text())
    rows = {row["label"]: row["fan_in"] for row in table["rows"]}
    # the caption's anchors, from the written table
    assert rows["PC, gamma_bar_L = 0"]["c"] == rows["BP, SGD"]["c"]
    assert rows["PC, gamma_bar_L = -1"]["c"] == rows["GNT, lambda ~ M^-1"]["c"]
    assert rows["TP, ridge mu ~ 1"]["b"]["last"] == "1/2"
    # no temporary file is left behind
    assert not list(tmp_path.glob(".*.tmp"))


def test_index_lists_findings_in_piece_order_with_verdicts(tmp_path):
    ctx = Context(out=tmp_path)
    save_findings(
        ctx,
        "transfer",
        [Finding("transfer", "T", "Two. Sentences.", agrees=False, figure="t.png")],
    )
    save_findings(ctx, "table", [Finding("table", "A", "One. Two.", agrees=True)])
    text = render_index(tmp_path)
    assert text.index("## A") < text.index("## T")
    assert "1 of 2 findings agree with theory; disagreeing: T." in text
    assert "![T](t.png)" in text
    assert "does not agree" in text
    assert "Sizes: quick." in text and "Mixed sizes" not in text


def test_index_says_when_findings_of_quick_and_full_runs_mix(tmp_path):
    save_findings(
        Context(out=tmp_path), "table", [Finding("table", "A", "One. Two.", True)]
    )
    save_findings(
        Context(out=tmp_path, sizes=FULL),
        "transfer",
        [Finding("transfer", "T", "One. Two.", True)],
    )
    text = render_index(tmp_path)
    assert "Mixed sizes: these findings come from full and quick runs" in text
    assert "Sizes: full." in text and "Sizes: quick." in text


def test_unwritable_output_directory_is_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = main(["regenerate", "--out", str(blocker / "out"), "--only", "table"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "cannot create output directory" in err


def test_unreachable_scheduler_is_rejected_before_anything_is_written(tmp_path, capsys):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    code = main(
        ["regenerate", "--out", str(out), "--scheduler", f"tcp://127.0.0.1:{port}"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reach Dask scheduler" in err and err.count("\n") == 1
    assert not out.exists()


def test_unknown_piece_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["regenerate", "--out", str(tmp_path), "--only", "figure9"])
    assert exit_info.value.code == 2


def test_a_piece_runs_alone_as_a_script(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "derivations" / "index.py"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Not run yet: " + ", ".join(PIECES) in (tmp_path / "index.md").read_text()


# -- the verdicts -----------------------------------------------------------------


def _result(best_lr: dict, cells: list | None = None) -> TransferResult:
    widths = tuple(best_lr)
    return TransferResult(
        method="pc",
        param="x",
        data="digits",
        metric="train_loss",
        grid=TransferGrid(widths=widths, lrs=(0.125, 0.25, 0.5, 1.0)),
        cells=cells or [],
        best_lr=best_lr,
    )


def test_one_grid_step_counts_as_transfer_two_do_not():
    flat_sp = _result({64: 0.5, 512: 0.5})
    assert judge(_result({64: 0.25, 512: 0.5}), flat_sp)["mup_transfers"]
    assert not judge(_result({64: 0.125, 512: 0.5}), flat_sp)["mup_transfers"]
    assert not judge(_result({64: 0.25, 512: None}), flat_sp)["mup_transfers"]


def test_sp_fails_by_drift_or_by_divergence_at_the_narrow_optimum():
    mup = _result({64: 0.5, 512: 0.5})
    assert not judge(mup, _result({64: 0.5, 512: 0.5}))["sp_fails"]
    assert judge(mup, _result({64: 1.0, 512: 0.25}))["sp_fails"]
    diverged = [
        {"width": 512, "lr": 0.5, "diverged": True, "error": None},
        {"width": 512, "lr": 0.25, "diverged": False, "error": None},
    ]
    verdict = judge(mup, _result({64: 0.5, 512: 0.25}, diverged))
    assert verdict["sp_wide_diverges_at_narrow_best"] and verdict["sp_fails"]
    blown = [
        {"width": 512, "lr": 0.5, "diverged": False, "error": None, "train_loss": 1e30}
    ]
    assert judge(mup, _result({64: 0.5, 512: 0.25}, blown))[
        "sp_wide_diverges_at_narrow_best"
    ]


# -- the PC equilibrium closed form ------------------------------------------------


def test_closed_form_errors_are_stationary_points_of_the_energy():
    rng = np.random.default_rng(0)
    Ws = [rng.normal(size=s) / np.sqrt(s[1]) for s in ((7, 4), (7, 7), (3, 7))]
    gammas = (0.5, 2.0, 5.0)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    eps = closed_form_errors(Ws, gammas, x, y)
    # activities v_l = W_l v_{l-1} + eps_l with v_0 = x and the top clamped at y
    v = [x]
    for W, e in zip(Ws[:-1], eps[:-1], strict=True):
        v.append(v[-1] @ W.T + e)
    top = y - v[-1] @ Ws[-1].T
    np.testing.assert_allclose(top, eps[-1], atol=1e-12)
    # dE/dv_l = gamma_l eps_l - gamma_{l+1} W_{l+1}^T eps_{l+1} = 0
    for layer in range(2):
        grad = (
            gammas[layer] * eps[layer]
            - gammas[layer + 1] * eps[layer + 1] @ Ws[layer + 1]
        )
        np.testing.assert_allclose(grad, 0.0, atol=1e-12)
    c = c_gamma_matrix(Ws, gammas)
    np.testing.assert_allclose(c, c.T, atol=1e-14)
    assert np.all(np.linalg.eigvalsh(c) > 0)


def test_quick_sizes_fit_the_issue():
    assert len(QUICK.coord_widths) >= 6
    assert len(QUICK.alignment_widths) >= 5
    assert QUICK.data == "digits" and not QUICK.dask


def test_a_scheduler_that_accepts_but_never_answers_is_rejected_in_time(
    tmp_path, capsys
):
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    threading.Thread(
        target=lambda: accepted.append(server.accept()), daemon=True
    ).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    start = time.perf_counter()
    try:
        code = main(
            ["regenerate", "--out", str(tmp_path / "o"), "--scheduler", address]
        )
    finally:
        server.close()
    assert code == 2
    assert time.perf_counter() - start < 30
    assert "cannot reach Dask scheduler" in capsys.readouterr().err


def test_stale_temporary_files_are_swept_and_corrupt_findings_ignored(tmp_path, capsys):
    (tmp_path / ".table.json.abc.tmp").write_text("half")
    (tmp_path / "findings").mkdir()
    (tmp_path / "findings" / "interpolation.json").write_text('{"piece": "interp')
    code = main(["regenerate", "--out", str(tmp_path), "--only", "table"])
    assert code == 0
    assert "ignoring unreadable findings file" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*.tmp"))
    index = (tmp_path / "index.md").read_text()
    assert "Not run yet: pc_equilibrium, interpolation" in index


def test_index_marks_files_that_went_missing(tmp_path):
    ctx = Context(out=tmp_path)
    save_findings(
        ctx, "table", [Finding("table", "A", "x.", agrees=True, files=["gone.md"])]
    )
    assert "Missing (rerun the piece): gone.md." in render_index(tmp_path)


def test_full_mode_sweeps_on_a_local_dask_cluster_sized_by_workers(tmp_path):
    from muptheory.derivations.common import FULL, sweep_cluster

    ctx = Context(out=tmp_path, sizes=FULL, workers=1)
    with sweep_cluster(ctx, needed=True) as running:
        # run_sweep refuses workers together with a scheduler
        assert running.scheduler.startswith("tcp://127.0.0.1:")
        assert running.workers is None
    with sweep_cluster(ctx, needed=False) as idle:
        assert idle.scheduler is None
