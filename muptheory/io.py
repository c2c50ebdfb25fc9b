"""Atomic file writes: a reader sees the old file or the new one, never a part.

Each write goes to a temporary file in the target's directory, is flushed to disk,
and is renamed over the target with ``os.replace`` (atomic on POSIX and Windows
within one file system). A failed or interrupted write removes its temporary file;
only a process killed between creating and renaming it can leave one behind, named
``.<target>.<random>.tmp``.

Only regular files are replaced. A target that exists as something else (a device,
a FIFO, a socket, a directory) is refused, and a symbolic link is followed: the
new file replaces the file the link points to, and the link stays.

Example:
    >>> atomic_write_json("result.json", {"widths": [64, 128]})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from muptheory.errors import InvalidInputError

TEMP_SUFFIX = ".tmp"


def writable_directory(path: str | os.PathLike, *, what: str = "directory") -> Path:
    """Create ``path`` (with its parents) if needed and check it can be written.

    Raises:
        InvalidInputError: naming ``what`` when it cannot be created or written.
    """
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInputError(
            f"cannot create {what} {str(directory)!r}: {err.strerror or err}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{what} {str(directory)!r} is not writable")
    return directory


_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def output_target(path: str | os.PathLike) -> Path:
    """The file that writing ``path`` replaces: ``path`` itself, or the file a
    symbolic link at ``path`` points to (which need not exist yet).

    Raises:
        InvalidInputError: naming ``path`` when it exists and is not a regular file
            (a device, a FIFO, a socket, a directory), which a rename would destroy.
    """
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as err:
        raise InvalidInputError(
            f"cannot inspect output {str(path)!r}: {err.strerror or err}"
        ) from None
    if not stat.S_ISREG(mode):
        kind = next(
            (name for test, name in _NOT_REGULAR if test(mode)), "a special file"
        )
        raise InvalidInputError(
            f"output {str(path)!r} is {kind}, not a regular file; give a file name"
        )
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    A symbolic link at ``path`` is followed (see ``output_target``).

    Raises:
        InvalidInputError: if the directory does not exist or is not writable, the
            target exists but is not a regular file, or the write fails (a full
            disk).
    """
    target = output_target(path)
    directory = target.parent
    if not directory.is_dir():
        raise InvalidInputError(f"output directory {str(directory)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=directory
        )
    except OSError as err:
        raise InvalidInputError(
            f"cannot write to {str(directory)!r}: {err.strerror}"
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file private (0600); give it the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise InvalidInputError(
            f"cannot write {str(target)!r}: {err.strerror}"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf", "svg")


def figure_format(path: str | os.PathLike) -> str:
    """The figure format that ``path``'s extension names: ``png``, ``pdf`` or ``svg``.

    Raises:
        InvalidInputError: for an empty path or any other extension.
    """
    name = os.fspath(path)
    suffix = Path(name).suffix.lower().lstrip(".")
    if not name or suffix not in FIGURE_FORMATS:
        raise InvalidInputError(f"--plot must end in .png, .pdf or .svg, got {name!r}")
    return suffix


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any, *, indent: int = 2) -> None:
    """Write ``data`` as JSON, with a final newline, to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n")
