"""The ``muptheory`` command line.

Each sub-command lives in its own module under ``muptheory.cli`` and exposes
``register(subparsers)``; the module imports its engine only when the command runs,
so that ``muptheory --help`` stays fast (no JAX). User errors (``MuptheoryError``) and
bad arguments print one line on stderr and exit with code 2; a warning from an engine
(``warnings.warn``) prints one line too, without the source line that Python's
default display adds.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings

from muptheory.errors import MuptheoryError

# Modules that register sub-commands, in the order --help lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "muptheory.cli.theory",
    "muptheory.cli.simulate",
    "muptheory.cli.limits",
    "muptheory.cli.sweeps",
    "muptheory.cli.regenerate",
)


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr and exit code 2, and
    which reads negative fractions such as ``-1/2`` as values, not as options."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+/\d+$")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="muptheory",
        description="Infinite-width theory calculator for local learning rules.",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    _terminate_as_interrupt()
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning(f"muptheory {args.command}")
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        code = args.run(args)
    except MuptheoryError as err:
        print(f"muptheory {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a command that stopped reading
        return 0
    except KeyboardInterrupt:
        print("muptheory: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _one_line_warning(prefix: str):
    """A ``warnings.showwarning`` that writes ``<prefix>: warning: <message>``."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        try:
            # tqdm.write clears any progress bar first and redraws it after, so the
            # warning gets a line of its own
            from tqdm import tqdm

            tqdm.write(f"{prefix}: warning: {text}", file=file or sys.stderr)
        except OSError:  # stderr closed: nothing to tell
            pass

    return show


def _terminate_as_interrupt() -> None:
    """Let SIGTERM stop a command like Ctrl-C does, so that atomic writes clean up
    their temporary files and the exit is the same one line and code 130."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _version() -> str:
    from muptheory import __version__

    return f"muptheory {__version__}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
