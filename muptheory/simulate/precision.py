"""Floating-point precision of simulations: float32 by default, float64 on request.

JAX creates 64-bit arrays only while its ``x64`` flag is on. Rather than flip the
global flag (which would change every other JAX user in the process), the simulator
enters ``jax.experimental.enable_x64()`` around each float64 computation, tracing and
compiling included; float32 runs leave the flag as it is.

Example:
    >>> with precision("float64"):
    ...     jnp.zeros(2).dtype
    dtype('float64')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64

from muptheory.errors import InvalidInputError

DTYPES: tuple[str, ...] = ("float32", "float64")


def dtype_name(dtype) -> str:
    """Normalize ``dtype`` (a name, numpy or jax dtype) to ``float32``/``float64``."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise InvalidInputError(f"unknown dtype {dtype!r}; use float32 or float64")
    return name


@contextlib.contextmanager
def precision(dtype) -> Iterator[jnp.dtype]:
    """Context in which arrays of ``dtype`` can be created and computed with."""
    name = dtype_name(dtype)
    if name == "float64":
        with enable_x64():
            yield jnp.float64
    else:
        yield jnp.float32
