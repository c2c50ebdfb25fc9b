"""Resumable sweeps: run pure cells in parallel and keep each result as it finishes.

A sweep is a task, a module-level function ``fn(**params)`` returning a JSON-able
value, and a list of cells, one dict of parameters each. Every cell has a stable key,

    key = SHA-256( canonical JSON of {task: "module:qualname", params, salt} ),

where the canonical JSON sorts keys and writes exact values (a ``Fraction`` as
``{"fraction": "p/q"}``), and ``salt`` joins the package version with the caller's
own salt.
A finished cell is written at once, atomically, to ``<cache_dir>/<key>.json``; a later
run with the same cache finds it there. So an interrupted sweep resumes where it
stopped, a repeated command computes nothing, and changing one parameter recomputes
only the cells whose parameters changed. Bump ``salt`` when a task's code changes.

Where the cells run:

- ``workers=1``: one after another in this process;
- default: a pool of ``workers`` processes (default: the usable CPUs) started with
  the ``spawn`` method, because JAX's threads do not survive ``fork``. Each worker
  imports the task's module afresh, so a script that starts a sweep must do so under
  ``if __name__ == "__main__":``. Workers exit when the sweep's process dies. With
  ``group``, cells of equal ``group(cell)`` are handed to a worker together (a group
  is split into just enough chunks to keep every worker busy), so what a worker
  process keeps between cells, such as compiled JAX code, is reused; each cell is
  still reported and stored as soon as it finishes;
- ``scheduler="tcp://host:8786"``: on an existing Dask cluster. The address is tried
  first, and an unreachable one raises ``InvalidInputError`` within
  ``connect_timeout`` seconds, before anything is written (a sweep whose cells are
  all cached never contacts the scheduler). Results come back to this process,
  which alone writes the cache, so workers need no shared file system (but must be
  able to import the task's module).

A task that raises is reported as a failed ``CellResult`` carrying the message; the
sweep goes on, and the failure is not stored, so the next run tries the cell again.
Outcomes that are results, such as a diverged training run, should be returned as
values instead, so that they are stored like any other.

Example (the task in an importable module, the call under a ``__main__`` guard)::

    def train(width: int, lr: float, seed: int) -> dict:
        return {"loss": final_loss(width, lr, seed)}

    cells = [dict(width=w, lr=lr, seed=0) for w in (64, 128) for lr in (0.1, 1.0)]
    results = run_sweep(train, cells, cache_dir=".cache/transfer", workers=2)
    losses = {(r.params["width"], r.params["lr"]): r.value["loss"] for r in results}
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

import muptheory
from muptheory.errors import InvalidInputError, MuptheoryError
from muptheory.io import atomic_write_text, writable_directory

logger = logging.getLogger(__name__)

# What a worker sends back: (value as JSON text or None, error or None, seconds,
# traceback or None, whether the error is a ``MuptheoryError``).
Outcome = tuple[str | None, str | None, float, str | None, bool]


@dataclass(frozen=True)
class CellResult:
    """The outcome of one cell.

    Attributes:
        params: the cell's parameters, as given.
        key: the cell's cache key (64 hex digits).
        value: the task's return value after a JSON round trip (so tuples come back
            as lists, NumPy scalars as floats), or None if the cell failed.
        error: ``"ExceptionType: message"`` if the task raised, else None.
        user_error: True when the task raised a ``MuptheoryError``: the cell's
            parameters are bad input, not the machine or the run at fault.
        cached: True when the value was read from the cache instead of computed.
        seconds: the task's run time (when it was computed).
    """

    params: dict[str, Any]
    key: str
    value: Any = None
    error: str | None = None
    cached: bool = False
    seconds: float = 0.0
    user_error: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


# -- keys --------------------------------------------------------------------------


def task_name(fn: Callable) -> str:
    """``"module:qualname"`` of a module-level function, the task's identity.

    Raises:
        InvalidInputError: for lambdas, nested functions and other callables that a
            worker process could not import by name.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not callable(fn) or module is None or qualname is None:
        raise InvalidInputError(f"a sweep task must be a function, got {fn!r}")
    if "<" in qualname:
        raise InvalidInputError(
            f"sweep task {qualname!r} is not a module-level function; "
            "define it at the top level of an importable module"
        )
    return f"{module}:{qualname}"


def canonical_json(value: Any) -> str:
    """The JSON text that identifies ``value``: sorted keys, no spaces, exact numbers.

    Accepts dicts with string keys, lists, tuples (written as lists), strings, ints,
    finite floats, bools, None, ``Fraction`` (written as ``{"fraction": "p/q"}``) and
    NumPy scalars.

    Raises:
        InvalidInputError: for any other type or a NaN or infinite float.
    """
    return json.dumps(
        _canonical(value, "params"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )


def _canonical(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.generic):
        return _canonical(value.item(), where)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(
                f"sweep parameter {where} is {value}; must be finite"
            )
        return value
    if isinstance(value, Fraction):
        return {"fraction": str(value)}
    if isinstance(value, list | tuple):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInputError(
                    f"sweep parameter {where} has a key {k!r} that is not a string"
                )
            out[k] = _canonical(v, f"{where}.{k}")
        return out
    raise InvalidInputError(
        f"sweep parameter {where} has type {type(value).__name__}; use str, int, "
        "float, bool, None, Fraction, or lists and dicts of them"
    )


def cell_key(fn: Callable, params: Mapping[str, Any], *, salt: str = "") -> str:
    """The stable cache key of the cell ``fn(**params)``.

    Args:
        fn: the task, a module-level function.
        params: the cell's keyword arguments.
        salt: a version string of the task's code; changing it invalidates the cache.

    Returns:
        The SHA-256 hex digest of the canonical JSON of task, parameters and salt.
    """
    identity = {
        "task": task_name(fn),
        "params": params,
        "salt": _full_salt(salt),
    }
    return hashlib.sha256(canonical_json(identity).encode("ascii")).hexdigest()


def _full_salt(salt: str) -> str:
    return f"muptheory {muptheory.__version__}|{salt}"


# -- the runner ----------------------------------------------------------------------


def run_sweep(
    fn: Callable[..., Any],
    cells: Iterable[Mapping[str, Any]],
    *,
    cache_dir: str | os.PathLike | None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[CellResult], None] | None = None,
    salt: str = "",
    connect_timeout: float = 10.0,
    group: Callable[[dict[str, Any]], Hashable] | None = None,
    jax_cache: bool = False,
) -> list[CellResult]:
    """Run ``fn(**cell)`` for every cell, reusing and extending the cache.

    Args:
        fn: the task, a module-level function returning a JSON-able value (NumPy
            scalars and arrays are converted).
        cells: the parameters of each cell; repeated cells are computed once.
        cache_dir: the directory of finished cells (created if missing), or None to
            keep nothing.
        workers: local processes; 1 runs in this process; default: usable CPUs.
        scheduler: address of a Dask scheduler to run on instead of local workers.
        progress: called with each cell's result as it becomes known, cached cells
            first (for example ``lambda result: bar.update()`` with a tqdm bar).
        salt: version string of the task's code, part of every key.
        connect_timeout: seconds allowed to reach ``scheduler``.
        group: local process pools only: cells with equal ``group(cell)`` run in
            the same worker, in the order of ``cells``, where the workers allow
            (for example the width, when cells of one width share compiled code).
            It changes where cells run, never their keys or values.
        jax_cache: local process pools with a ``cache_dir`` only: workers keep JAX's
            compiled code in ``<cache_dir>/jax`` (JAX's persistent compilation
            cache, for compilations over a second), so a worker that meets a step
            compiled by another, or by an earlier sweep, loads it instead.

    Returns:
        One ``CellResult`` per cell, in the order of ``cells``.

    Raises:
        InvalidInputError: for a task that is not a module-level function, a cell
            that is not a dict of JSON-able values, bad ``workers``, an unreachable
            ``scheduler`` or a cache directory that cannot be written.
    """
    cells = [_checked_cell(cell, i) for i, cell in enumerate(cells)]
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
    if scheduler is not None and workers is not None:
        raise InvalidInputError(
            "workers applies to local runs only; a Dask scheduler has its own"
        )
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
        raise InvalidInputError(f"scheduler must be an address, got {scheduler!r}")
    if cache_dir is not None and not os.fspath(cache_dir):
        raise InvalidInputError(
            "the cache directory is an empty path; name a directory, or keep no cache"
        )
    task = task_name(fn)
    full_salt = _full_salt(salt)
    cache = Path(cache_dir) if cache_dir is not None else None

    # -- keys, with repeated cells merged --------------------------------------------
    keys = [cell_key(fn, cell, salt=salt) for cell in cells]
    unique: dict[str, dict[str, Any]] = {}
    for key, cell in zip(keys, cells, strict=True):
        unique.setdefault(key, cell)
    copies = Counter(keys)
    done: dict[str, CellResult] = {}

    def report(result: CellResult) -> None:
        done[result.key] = result
        if progress is not None:
            for _ in range(copies[result.key]):
                progress(result)

    # -- cells already in the cache ----------------------------------------------------
    if cache is not None:
        for key, cell in unique.items():
            value = _read_cached(cache, key)
            if value is not _MISSING:
                report(CellResult(params=cell, key=key, value=value, cached=True))
    pending = {key: cell for key, cell in unique.items() if key not in done}
    logger.info(
        "sweep %s: %d cells, %d cached, %d to run",
        task,
        len(unique),
        len(done),
        len(pending),
    )

    # -- the rest, stored as they finish ------------------------------------------------
    if pending:
        client = _connect(scheduler, connect_timeout) if scheduler else None
        try:
            if cache is not None:
                _prepare_cache_dir(cache)
            n_local = _local_workers(workers, len(pending))
            if client is not None:
                outcomes = _dask_outcomes(client, fn, pending)
            elif n_local > 1:
                chunks = _chunks(pending, group, n_local)
                compiled = cache / "jax" if jax_cache and cache is not None else None
                outcomes = _process_outcomes(fn, chunks, n_local, compiled)
            else:
                outcomes = _serial_outcomes(fn, pending)
            with contextlib.closing(outcomes):
                for key, outcome in outcomes:
                    result = _finish(key, pending[key], outcome, task)
                    if result.ok and cache is not None:
                        _store(cache, result, task, full_salt)
                    report(result)
        finally:
            if client is not None:
                client.close()

    failed = [r for r in done.values() if not r.ok]
    if failed:  # the results carry the failures; callers tell the user
        logger.info(
            "sweep %s: %d of %d cells failed, the first %s with %s",
            task,
            len(failed),
            len(unique),
            failed[0].params,
            failed[0].error,
        )
    return [done[key] for key in keys]


def _checked_cell(cell: Any, index: int) -> dict[str, Any]:
    if not isinstance(cell, Mapping):
        raise InvalidInputError(
            f"sweep cell {index} must be a dict of parameters, got {type(cell).__name__}"
        )
    cell = dict(cell)
    canonical_json(cell)  # raises for values that have no stable key
    return cell


def _local_workers(workers: int | None, n_pending: int) -> int:
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            workers = os.cpu_count() or 1
    return max(1, min(workers, n_pending))


def _chunks(
    pending: dict[str, dict[str, Any]],
    group: Callable[[dict[str, Any]], Hashable] | None,
    workers: int,
) -> list[list[tuple[str, dict[str, Any]]]]:
    """Split the pending cells into the tasks a worker runs in one go.

    Without ``group`` every cell is its own task. With it, each group (in the order
    of its first cell) is cut into ceil(workers / groups) contiguous chunks of near
    equal size, so that there are at least as many tasks as workers.
    """
    items = list(pending.items())
    if group is None:
        return [[item] for item in items]
    groups: dict[Hashable, list[tuple[str, dict[str, Any]]]] = {}
    for key, cell in items:
        groups.setdefault(group(cell), []).append((key, cell))
    per_group = max(1, math.ceil(workers / len(groups)))
    chunks = []
    for members in groups.values():
        n = min(per_group, len(members))
        bounds = [round(i * len(members) / n) for i in range(n + 1)]
        chunks += [members[a:b] for a, b in itertools.pairwise(bounds)]
    return chunks


def _finish(key: str, cell: dict[str, Any], outcome: Outcome, task: str) -> CellResult:
    text, error, seconds, trace, user_error = outcome
    if error is not None:
        logger.info("sweep %s: cell %s failed: %s", task, cell, error)
        logger.debug("traceback of the failed cell:\n%s", trace)
        return CellResult(
            params=cell, key=key, error=error, seconds=seconds, user_error=user_error
        )
    return CellResult(params=cell, key=key, value=json.loads(text), seconds=seconds)


# -- the cache -------------------------------------------------------------------------

_MISSING = object()


def _cache_path(cache: Path, key: str) -> Path:
    return cache / f"{key}.json"


def _read_cached(cache: Path, key: str) -> Any:
    """The stored value of ``key``, or ``_MISSING`` if absent or unreadable."""
    path = _cache_path(cache, key)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):  # no such cell, or no cache yet
        return _MISSING
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = getattr(err, "strerror", None) or _one_line(err)
        warnings.warn(
            f"ignoring unreadable cache file {str(path)!r} ({reason}); "
            "its cell is computed again",
            stacklevel=3,
        )
        return _MISSING
    if (
        not isinstance(record, dict)
        or record.get("key") != key
        or "value" not in record
    ):
        warnings.warn(
            f"ignoring cache file {str(path)!r}: not a record of this cell; "
            "its cell is computed again",
            stacklevel=3,
        )
        return _MISSING
    return record["value"]


def _prepare_cache_dir(cache: Path) -> None:
    """Create the cache directory and check that it can be written."""
    writable_directory(cache, what="cache directory")


def _store(cache: Path, result: CellResult, task: str, salt: str) -> None:
    record = {
        "key": result.key,
        "task": task,
        "salt": salt,
        "params": json.loads(canonical_json(result.params)),
        "seconds": result.seconds,
        "value": result.value,
    }
    atomic_write_text(_cache_path(cache, result.key), json.dumps(record, indent=1))


# -- running one cell (in whichever process) ------------------------------------------


def _execute(fn: Callable[..., Any], params: dict[str, Any]) -> Outcome:
    """Run one cell; a raised exception becomes an error message, never escapes."""
    start = time.perf_counter()
    try:
        text = json.dumps(fn(**params), default=_json_default)
    except Exception as err:
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        seconds = time.perf_counter() - start
        user_error = isinstance(err, MuptheoryError)
        return None, message, seconds, traceback.format_exc(), user_error
    return text, None, time.perf_counter() - start, None, False


def _json_default(value: Any) -> Any:
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, np.generic | np.ndarray) or hasattr(value, "__array__"):
        array = np.asarray(value)  # NumPy and JAX arrays alike
        return array.item() if array.ndim == 0 else array.tolist()
    raise TypeError(f"a sweep result must be JSON-able; got {type(value).__name__}")


# -- executors: each yields (key, outcome) as cells finish -----------------------------


def _serial_outcomes(fn, pending: dict[str, dict]) -> Iterator[tuple[str, Outcome]]:
    for key, cell in pending.items():
        yield key, _execute(fn, cell)


def _process_outcomes(
    fn, chunks: list[list[tuple[str, dict]]], workers: int, jax_cache: Path | None
) -> Iterator[tuple[str, Outcome]]:
    """Run each chunk in a pool worker; yield every cell's outcome once it is known.

    A worker posts each cell's outcome on a queue as soon as it has it, and returns
    all of its chunk's outcomes at the end; whichever arrives first is used.
    """
    context = multiprocessing.get_context("spawn")
    finished = context.SimpleQueue()
    stop = context.Event()  # set when the sweep ends early: start no further cell
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(
            os.getpid(),
            finished,
            stop,
            None if jax_cache is None else str(jax_cache),
        ),
    )
    seen: set[str] = set()

    def fresh(outcomes) -> Iterator[tuple[str, Outcome]]:
        for key, outcome in outcomes:
            if key not in seen:
                seen.add(key)
                yield key, outcome

    try:
        futures = {pool.submit(_execute_chunk, fn, chunk): chunk for chunk in chunks}
        waiting = set(futures)
        while waiting:
            done, waiting = concurrent.futures.wait(
                waiting, timeout=0.1, return_when=concurrent.futures.FIRST_COMPLETED
            )
            posted = []
            while not finished.empty():
                posted.append(finished.get())
            yield from fresh(posted)
            for future in done:
                try:
                    outcomes = future.result()
                except Exception as err:  # the worker died or the task did not pickle
                    failure = (None, f"worker process failed: {_one_line(err)}", 0.0)
                    outcomes = [
                        (key, (*failure, None, False)) for key, _ in futures[future]
                    ]
                yield from fresh(outcomes)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        finished.close()


# In a pool worker: where cells' outcomes are posted, and the sweep's stop signal.
_finished_queue = None
_stop = None


def _execute_chunk(
    fn: Callable[..., Any], chunk: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, Outcome]]:
    """Run a chunk's cells in order, posting each outcome as it is known; stop early
    when the sweep has ended."""
    outcomes = []
    for key, cell in chunk:
        if _stop is not None and _stop.is_set():
            break
        outcome = _execute(fn, cell)
        if _finished_queue is not None:
            _finished_queue.put((key, outcome))
        outcomes.append((key, outcome))
    return outcomes


def _init_worker(parent_pid: int, finished, stop, jax_cache: str | None) -> None:
    """In a pool worker: keep the outcome queue and stop signal, point JAX's
    persistent compilation cache at ``jax_cache`` (if given), and exit when the
    sweep's process dies (say, killed -9)."""
    global _finished_queue, _stop
    _finished_queue, _stop = finished, stop
    if jax_cache is not None:
        import jax

        jax.config.update("jax_compilation_cache_dir", jax_cache)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def check_scheduler(address: str, timeout: float = 10.0) -> None:
    """Raise ``InvalidInputError`` unless a Dask scheduler answers at ``address``
    within ``timeout`` seconds (a port that accepts and stays silent included).

    The message tells apart a malformed address (a port outside 1..65535), an
    address where nothing answers, and a listener that is not a Dask scheduler (it
    closes the connection or sends something other than Dask's handshake).
    """
    import asyncio

    from distributed.comm import connect
    from distributed.comm.core import CommClosedError

    _check_port(address)

    async def probe() -> None:
        comm = await connect(address, timeout=timeout)
        await comm.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), timeout))
    except TimeoutError:
        raise InvalidInputError(
            f"cannot reach Dask scheduler {address!r}: no answer within {timeout:g} s"
        ) from None
    except CommClosedError:
        raise InvalidInputError(
            f"{address!r} did not answer as a Dask scheduler: it closed the "
            "connection during Dask's handshake"
        ) from None
    except OSError as err:
        raise InvalidInputError(
            f"cannot reach Dask scheduler {address!r}: {_one_line(err)}"
        ) from None
    except Exception:  # garbage read as a Dask frame: a huge length, bad bytes
        raise InvalidInputError(
            f"{address!r} did not answer as a Dask scheduler: what it sent is not "
            "Dask's handshake"
        ) from None


def _check_port(address: str) -> None:
    """Reject an address whose port is not a number in 1..65535."""
    location = address.split("://", 1)[-1]
    host, sep, port = location.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        return  # no port (the protocol's default), or a bare IPv6 address
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise InvalidInputError(
            f"invalid port {port!r} in Dask scheduler address {address!r}; "
            "a port is a number from 1 to 65535"
        )


def _connect(address: str, timeout: float):
    """A Dask client of the scheduler at ``address``, tried with a short probe."""
    from distributed import Client

    # Probing first keeps a failed Client (which lingers and times out again on
    # garbage collection) from ever being made.
    check_scheduler(address, timeout)
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except Exception as err:
        raise InvalidInputError(
            f"cannot reach Dask scheduler {address!r}: {_one_line(err)}"
        ) from None


def _dask_outcomes(
    client, fn, pending: dict[str, dict]
) -> Iterator[tuple[str, Outcome]]:
    from distributed import as_completed

    futures = {
        client.submit(_execute, fn, cell, key=f"muptheory-cell-{key}", pure=False): key
        for key, cell in pending.items()
    }
    try:
        for future in as_completed(futures, loop=client.loop):
            try:
                outcome = future.result()
            except Exception as err:  # a lost worker, or the task did not import
                failure = f"dask task failed: {_one_line(err)}"
                outcome = (None, failure, 0.0, None, False)
            yield futures[future], outcome
    finally:
        client.cancel(list(futures))


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
