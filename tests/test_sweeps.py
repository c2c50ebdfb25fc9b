"""The sweep runner: stable keys, resuming, local processes and a Dask cluster."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from muptheory.errors import InvalidInputError
from muptheory.sweeps import CellResult, canonical_json, cell_key, run_sweep

# -- tasks (module level, so that spawned workers can import them) ------------------------


def square_cell(x, marker_dir=None, sleep=0.0, fail=False):
    """x squared; leaves one marker file per call in ``marker_dir``."""
    if marker_dir is not None:
        (Path(marker_dir) / f"{x}-{uuid.uuid4().hex}").touch()
    if sleep:
        time.sleep(sleep)
    if fail:
        raise ValueError(f"cell {x} fails on purpose")
    return {"x": x, "square": x * x, "root": math.sqrt(x), "pid": os.getpid()}


def numpy_cell(n):
    values = np.arange(n, dtype=np.float32) / 3
    return {"values": values, "mean": values.mean(), "count": np.int64(n)}


def calls(marker_dir: Path, x=None) -> int:
    """How many times ``square_cell`` ran (for ``x``, or for any cell)."""
    names = [p.name for p in marker_dir.iterdir()]
    return sum(1 for n in names if x is None or n.split("-")[0] == str(x))


def numbers(results: list[CellResult]) -> list:
    return [(r.value["x"], r.value["square"], r.value["root"]) for r in results]


@pytest.fixture
def markers(tmp_path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path


# -- keys --------------------------------------------------------------------------------


def test_cell_key_is_stable_and_changes_with_every_parameter_and_the_salt():
    key = cell_key(square_cell, {"x": 3, "sleep": 0.5})
    assert key == cell_key(square_cell, {"sleep": 0.5, "x": 3})
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != cell_key(square_cell, {"x": 4, "sleep": 0.5})
    assert key != cell_key(square_cell, {"x": 3, "sleep": 0.25})
    assert key != cell_key(square_cell, {"x": 3, "sleep": 0.5}, salt="v2")
    assert key != cell_key(numpy_cell, {"x": 3, "sleep": 0.5})


def test_canonical_json_writes_fractions_exactly_and_tuples_as_lists():
    text = canonical_json({"b": Fraction(1, 2), "w": (64, 128), "a": np.float64(0.5)})
    assert text == '{"a":0.5,"b":{"fraction":"1/2"},"w":[64,128]}'


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ({"x": float("nan")}, "x is nan; must be finite"),
        ({"x": {1, 2}}, "x has type set"),
        ([("x", 1)], "must be a dict of parameters"),
    ],
)
def test_cells_without_a_stable_key_are_rejected(tmp_path, cell, message):
    with pytest.raises(InvalidInputError, match=message):
        run_sweep(square_cell, [cell], cache_dir=tmp_path, workers=1)


def test_lambda_tasks_are_rejected_because_workers_cannot_import_them(tmp_path):
    with pytest.raises(InvalidInputError, match="not a module-level function"):
        run_sweep(lambda x: x, [{"x": 1}], cache_dir=tmp_path, workers=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers must be a positive integer"),
        ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, "local runs only"),
    ],
)
def test_bad_runner_options_are_rejected(tmp_path, options, message):
    with pytest.raises(InvalidInputError, match=message):
        run_sweep(square_cell, [{"x": 1}], cache_dir=tmp_path, **options)


# -- caching and resuming -----------------------------------------------------------------


def test_a_repeated_sweep_computes_nothing_and_one_change_recomputes_one_cell(
    tmp_path, markers
):
    cells = [{"x": x, "marker_dir": str(markers)} for x in range(5)]
    first = run_sweep(square_cell, cells, cache_dir=tmp_path / "cache", workers=1)
    assert calls(markers) == 5 and not any(r.cached for r in first)

    second = run_sweep(square_cell, cells, cache_dir=tmp_path / "cache", workers=1)
    assert calls(markers) == 5 and all(r.cached for r in second)
    assert [r.value for r in second] == [r.value for r in first]

    cells[2] = {"x": 7, "marker_dir": str(markers)}
    third = run_sweep(square_cell, cells, cache_dir=tmp_path / "cache", workers=1)
    assert calls(markers) == 6 and calls(markers, 7) == 1
    assert [r.cached for r in third] == [True, True, False, True, True]
    assert third[2].value["square"] == 49


def test_cache_holds_one_record_per_cell_and_no_temporary_files(tmp_path):
    cells = [{"x": x} for x in range(6)] + [{"x": 2}]
    results = run_sweep(square_cell, cells, cache_dir=tmp_path, workers=1)

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{r.key}.json" for r in results[:6])
    record = json.loads((tmp_path / f"{results[3].key}.json").read_text())
    assert record["params"] == {"x": 3} and record["value"]["square"] == 9
    assert record["task"].endswith(":square_cell")
    # The repeated cell was computed once and reported twice, in order.
    assert results[6].key == results[2].key and results[6].value == results[2].value


def test_a_failing_cell_is_reported_not_stored_and_retried_next_time(tmp_path, markers):
    cells = [{"x": x, "marker_dir": str(markers), "fail": x == 1} for x in range(3)]
    results = run_sweep(square_cell, cells, cache_dir=tmp_path / "cache", workers=1)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == "ValueError: cell 1 fails on purpose"
    assert results[1].value is None
    assert len(list((tmp_path / "cache").iterdir())) == 2

    again = run_sweep(square_cell, cells, cache_dir=tmp_path / "cache", workers=1)
    assert [r.cached for r in again] == [True, False, True]
    assert calls(markers, 1) == 2 and calls(markers, 0) == 1


def test_an_unreadable_cache_file_is_recomputed(tmp_path, markers):
    cells = [{"x": 4, "marker_dir": str(markers)}]
    (result,) = run_sweep(square_cell, cells, cache_dir=tmp_path, workers=1)
    (tmp_path / f"{result.key}.json").write_text('{"key": "trunc')
    with pytest.warns(UserWarning, match="ignoring unreadable cache file"):
        (again,) = run_sweep(square_cell, cells, cache_dir=tmp_path, workers=1)
    assert not again.cached and again.value == result.value
    assert calls(markers) == 2


def test_progress_sees_every_cell_once_cached_ones_first(tmp_path):
    run_sweep(square_cell, [{"x": 1}], cache_dir=tmp_path, workers=1)
    seen: list[CellResult] = []
    cells = [{"x": 0}, {"x": 1}, {"x": 2}]
    run_sweep(square_cell, cells, cache_dir=tmp_path, workers=1, progress=seen.append)
    assert [(r.params["x"], r.cached) for r in seen] == [
        (1, True),
        (0, False),
        (2, False),
    ]


def test_numpy_results_come_back_as_json_values_whether_fresh_or_cached(tmp_path):
    (fresh,) = run_sweep(numpy_cell, [{"n": 4}], cache_dir=tmp_path, workers=1)
    (cached,) = run_sweep(numpy_cell, [{"n": 4}], cache_dir=tmp_path, workers=1)
    assert fresh.value == cached.value
    assert fresh.value["count"] == 4 and len(fresh.value["values"]) == 4


def test_an_unwritable_cache_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(InvalidInputError, match="cannot create cache directory"):
        run_sweep(square_cell, [{"x": 1}], cache_dir=blocker / "cache", workers=1)


# -- an interrupted sweep -----------------------------------------------------------------

KILLED_SWEEP = """
import importlib, json, sys
module, cells, cache = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
task = importlib.import_module(module).square_cell
from muptheory.sweeps import run_sweep
run_sweep(task, cells, cache_dir=cache, workers=1)
"""


def test_a_killed_sweep_resumes_and_computes_only_the_missing_cells(tmp_path, markers):
    cache = tmp_path / "cache"
    cells = [{"x": x, "marker_dir": str(markers), "sleep": 0.3} for x in range(8)]
    env = dict(os.environ)
    here = str(Path(__file__).parent)
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    sweep = subprocess.Popen(
        [sys.executable, "-c", KILLED_SWEEP, __name__, json.dumps(cells), str(cache)],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sweep.poll() is None:
            if cache.is_dir() and len(list(cache.glob("*.json"))) >= 3:
                break
            time.sleep(0.05)
        sweep.send_signal(signal.SIGKILL)
    finally:
        sweep.wait(timeout=10)
    stored = {p.name for p in cache.glob("*.json")}
    assert 3 <= len(stored) < 8
    calls_before = calls(markers)

    results = run_sweep(square_cell, cells, cache_dir=cache, workers=1)
    assert numbers(results) == [(x, x * x, math.sqrt(x)) for x in range(8)]
    assert sum(r.cached for r in results) == len(stored)
    assert calls(markers) - calls_before == 8 - len(stored)
    for result in results:
        if result.cached:
            assert calls(markers, result.params["x"]) == 1
    assert not [p for p in cache.iterdir() if not p.name.endswith(".json")]


# -- local processes and Dask ---------------------------------------------------------------


def test_a_process_pool_sweep_gives_the_serial_numbers(tmp_path):
    cells = [{"x": x, "fail": x == 3} for x in range(6)]
    serial = run_sweep(square_cell, cells, cache_dir=None, workers=1)
    pooled = run_sweep(square_cell, cells, cache_dir=tmp_path, workers=2)
    ok = [i for i, r in enumerate(serial) if r.ok]
    assert ok == [0, 1, 2, 4, 5] == [i for i, r in enumerate(pooled) if r.ok]
    assert numbers([pooled[i] for i in ok]) == numbers([serial[i] for i in ok])
    assert pooled[3].error == serial[3].error == "ValueError: cell 3 fails on purpose"
    assert all(r.value["pid"] != os.getpid() for r in pooled if r.ok)


def test_a_dask_cluster_gives_the_local_numbers(tmp_path):
    from distributed import LocalCluster

    cells = [{"x": x} for x in range(6)] + [{"x": 10, "fail": True}]
    local = run_sweep(square_cell, cells, cache_dir=tmp_path / "local", workers=1)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
    ) as cluster:
        remote = run_sweep(
            square_cell,
            cells,
            cache_dir=tmp_path / "dask",
            scheduler=cluster.scheduler_address,
        )
    assert numbers(remote[:6]) == numbers(local[:6])
    assert not remote[6].ok and remote[6].error == local[6].error
    assert sorted(p.name for p in (tmp_path / "dask").iterdir()) == sorted(
        p.name for p in (tmp_path / "local").iterdir()
    )


def unused_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_fails_fast_and_writes_nothing(tmp_path):
    address = f"tcp://127.0.0.1:{unused_loopback_port()}"
    start = time.monotonic()
    with pytest.raises(InvalidInputError, match="cannot reach Dask scheduler") as info:
        run_sweep(
            square_cell,
            [{"x": 1}],
            cache_dir=tmp_path / "cache",
            scheduler=address,
            connect_timeout=1.0,
        )
    assert time.monotonic() - start < 5
    assert address in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists()


@pytest.fixture
def garbage_listener():
    """The address of a loopback TCP server that answers every connection with an
    HTTP error, not Dask's handshake; stopped after the test."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 4)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


def test_a_listener_that_is_not_dask_is_named_as_such(tmp_path, garbage_listener):
    with pytest.raises(InvalidInputError) as info:
        run_sweep(
            square_cell,
            [{"x": 1}],
            cache_dir=None,
            scheduler=garbage_listener,
            connect_timeout=3.0,
        )
    message = str(info.value)
    assert "did not answer as a Dask scheduler" in message
    assert garbage_listener in message and "allocate" not in message


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_a_scheduler_port_outside_1_to_65535_is_an_invalid_port(port):
    with pytest.raises(InvalidInputError, match=f"invalid port '{port}'"):
        run_sweep(
            square_cell,
            [{"x": 1}],
            cache_dir=None,
            scheduler=f"tcp://127.0.0.1:{port}",
            connect_timeout=1.0,
        )


def test_an_empty_cache_directory_path_is_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError, match="cache directory is an empty path"):
        run_sweep(square_cell, [{"x": 1}], cache_dir="", workers=1)
    assert list(tmp_path.iterdir()) == []


def failing_cell(kind):
    if kind == "project":
        raise InvalidInputError("depth must be at least 2, got 1")
    raise ValueError("some other failure")


def test_a_cell_that_raises_a_project_error_is_marked_as_a_user_error():
    results = run_sweep(
        failing_cell,
        [{"kind": "project"}, {"kind": "other"}],
        cache_dir=None,
        workers=1,
    )
    assert [r.user_error for r in results] == [True, False]
    assert results[0].error == "InvalidInputError: depth must be at least 2, got 1"


def parity(cell):
    """The group of a cell: its x modulo 2."""
    return cell["x"] % 2


def test_grouped_cells_share_a_worker_and_keep_their_keys_and_numbers(tmp_path):
    cells = [{"x": x, "sleep": 0.05} for x in range(8)]
    serial = run_sweep(square_cell, cells, cache_dir=tmp_path / "serial", workers=1)
    grouped = run_sweep(
        square_cell, cells, cache_dir=tmp_path / "grouped", workers=2, group=parity
    )
    assert numbers(grouped) == numbers(serial)
    assert [r.key for r in grouped] == [r.key for r in serial]
    pids = {
        x % 2: {r.value["pid"] for r in grouped if r.value["x"] % 2 == x % 2}
        for x in range(2)
    }
    assert all(len(p) == 1 for p in pids.values())  # one worker per group
    assert sorted(p.name for p in (tmp_path / "grouped").iterdir()) == sorted(
        p.name for p in (tmp_path / "serial").iterdir()
    )


def test_groups_are_split_when_there_are_fewer_than_workers():
    from muptheory.sweeps import _chunks

    pending = {str(x): {"x": x} for x in range(7)}
    one_group = _chunks(pending, lambda cell: 0, 3)
    assert [len(chunk) for chunk in one_group] == [2, 3, 2]
    assert [key for chunk in one_group for key, _ in chunk] == list(pending)
    assert len(_chunks(pending, parity, 2)) == 2
    assert len(_chunks(pending, None, 2)) == 7
