"""Training sets for the limit engine: a linear teacher and a wrapper for datasets.

The default task is deliberately anisotropic: inputs x ~ N(0, I_d) and targets
y = T x / sqrt(d) from a teacher T (C x d) whose singular values decay like
2^{-k/2}, so a few output directions dominate. Training on it makes the backward
kernels C_hat_l = M W_{L:l+1} W_{L:l+1}^T anisotropic, which is what PC's
interpolation between first order and Gauss-Newton needs (see docs/limits.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from muptheory.errors import InvalidInputError


@dataclass(frozen=True, eq=False)
class Task:
    """Inputs (n, d) and targets (n, C) of a training set and a test set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self) -> None:
        for name in ("x_train", "y_train", "x_test", "y_test"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.ndim != 2:
                raise InvalidInputError(
                    f"{name} must be a 2-d array, got {value.shape}"
                )
            if not np.all(np.isfinite(value)):
                raise InvalidInputError(f"{name} has non-finite entries")
            object.__setattr__(self, name, value)
        if self.x_train.shape[0] != self.y_train.shape[0]:
            raise InvalidInputError("x_train and y_train have different lengths")
        if self.x_test.shape[0] != self.y_test.shape[0]:
            raise InvalidInputError("x_test and y_test have different lengths")
        if self.x_train.shape[0] == 0:
            raise InvalidInputError("the training set is empty")
        if self.x_test.shape[1] != self.x_train.shape[1]:
            raise InvalidInputError("train and test inputs have different dimensions")
        if self.y_test.shape[1] != self.y_train.shape[1]:
            raise InvalidInputError("train and test targets have different dimensions")

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.y_train.shape[1]

    @classmethod
    def of(cls, data) -> Task:
        """Wrap anything with x_train, y_train, x_test, y_test (a data.Dataset)."""
        if isinstance(data, Task):
            return data
        return cls(data.x_train, data.y_train, data.x_test, data.y_test)


def linear_teacher_task(
    *,
    input_dim: int = 8,
    n_outputs: int = 10,
    n_train: int = 16,
    n_test: int = 8,
    seed: int = 0,
) -> Task:
    """The anisotropic linear-teacher task of the module docstring."""
    for name, value in (
        ("input_dim", input_dim),
        ("n_outputs", n_outputs),
        ("n_train", n_train),
    ):
        if not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(n_test, int) or n_test < 0:
        raise InvalidInputError(
            f"n_test must be a non-negative integer, got {n_test!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    rank = min(input_dim, n_outputs)
    left, _ = np.linalg.qr(rng.normal(size=(n_outputs, rank)))
    right, _ = np.linalg.qr(rng.normal(size=(input_dim, rank)))
    singular = 2.0 ** (-0.5 * np.arange(rank)) * np.sqrt(n_outputs)
    teacher = (left * singular) @ right.T
    x_train = rng.normal(size=(n_train, input_dim))
    x_test = rng.normal(size=(n_test, input_dim))
    scale = 1.0 / np.sqrt(input_dim)
    return Task(
        x_train, x_train @ teacher.T * scale, x_test, x_test @ teacher.T * scale
    )
