"""The kernel regime of BP in deep linear networks, and the neural-tangents baseline.

With b = 1/2 in every layer (fan-in convention) and learning-rate exponents c such
that no update grows with width, features stop moving as M -> infinity and the
network trains as its linearization. For f = W_L ... W_1 x with all W_l(0) of
variance sigma^2 / fan_in, the limit kernels are

    NNGP:  K(x, x')     = sigma^{2L} x.x' / d
    NTK:   Theta(x, x') = eta sigma^{2(L-1)} x.x' [ m_1 lambda_1
                                                  + sum_{l=2}^{L} m_l lambda_l / d ]

(layer l contributes its learning rate eta lambda_l M^{-c_l} times
W_{L:l+1} W_{L:l+1}^T -> sigma^{2(L-l)} I times h_{l-1}.h'_{l-1} -> x.x' for l = 1
and M sigma^{2(l-1)} x.x' / d otherwise; m_l = 1 when that product is Theta(1), 0
when it vanishes). The output at initialization is Gaussian, f_0 ~ GP(0, K x I_C),
and the training residual R_t = f_t(X) - Y evolves as

    discrete:    R_{t+1} = (I - Theta / P) R_t,
                 f_{t+1}(x) = f_t(x) - Theta(x, X) R_t / P,
    continuous:  R(t) = exp(-Theta t / P) R_0,
                 f_t(x) = f_0(x) - Theta(x, X) V diag((1 - e^{-lambda t / P}) / lambda) V^T R_0,

with Theta(X, X) = V diag(lambda) V^T. neural-tangents' ``parameterization="ntk"``
writes W = sigma w / sqrt(fan_in) and trains w, which is the ``ntk`` preset with
lambda = (sigma^2 / d, sigma^2, sigma^2) (``ntk_lr_mult``); its MSE loss averages over
outputs as well, so its learning rate is eta * C.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from muptheory.errors import InvalidInputError, UnsupportedError
from muptheory.limits.dynamics import check_sigma
from muptheory.limits.tasks import Task
from muptheory.parameterization import Parameterization

HALF = Fraction(1, 2)


@dataclass
class KernelRegime:
    """Kernel-regime limit of BP on a task.

    Attributes:
        times: the times (steps, or continuous time in units of steps).
        nngp_train, nngp_test_train: K(X, X) (P x P) and K(X*, X).
        ntk_train, ntk_test_train: Theta(X, X) and Theta(X*, X) (including eta).
        f_train, f_test: outputs (len(times), P, C) and (len(times), P*, C) for the
            given f_0 (zero: the mean over initializations).
        loss: training loss of those outputs, (len(times),).
        expected_loss: the training loss averaged over the Gaussian f_0 (only when
            f_0 was not given).
    """

    times: np.ndarray
    nngp_train: np.ndarray
    nngp_test_train: np.ndarray
    ntk_train: np.ndarray
    ntk_test_train: np.ndarray
    f_train: np.ndarray
    f_test: np.ndarray
    loss: np.ndarray
    expected_loss: np.ndarray | None


def ntk_lr_mult(input_dim: int, sigma: float = 1.0) -> tuple[float, float, float]:
    """Learning-rate prefactors that make the ``ntk`` preset train like
    neural-tangents' NTK parameterization with ``W_std = sigma``."""
    s2 = float(sigma) ** 2
    return (s2 / input_dim, s2, s2)


def kernel_masks(parameterization: Parameterization, *, depth: int) -> list[bool]:
    """Whether layer l = 1..L contributes to the limiting NTK (see module docstring).

    Raises:
        UnsupportedError: b is not 1/2 everywhere, or some layer's contribution
            grows with width (an unstable parameterization).
    """
    param = parameterization.without_multipliers().to_fan_in()
    for group in ("first", "hidden", "last"):
        if param.b[group] != HALF:
            raise UnsupportedError(
                "the kernel-regime limit needs b = 1/2 in every layer (fan-in "
                f"convention); got b_{group} = {param.b[group]}. Feature-learning "
                "parameterizations go to limit_dynamics"
            )
    masks = []
    for layer in range(1, depth + 1):
        group = "first" if layer == 1 else ("last" if layer == depth else "hidden")
        exponent = -param.c[group] + (0 if layer == 1 else 1)
        if exponent > 0:
            raise UnsupportedError(
                f"layer {layer}'s NTK contribution grows like M^{exponent} under "
                f"c_{group} = {param.c[group]}: the parameterization is unstable"
            )
        masks.append(exponent == 0)
    return masks


def deep_linear_kernels(
    x1: np.ndarray,
    x2: np.ndarray,
    *,
    depth: int,
    sigma: float,
    lr: float,
    lr_mult: Sequence[float],
    masks: Sequence[bool],
) -> tuple[np.ndarray, np.ndarray]:
    """NNGP and NTK (times eta) between the rows of x1 and x2."""
    d = x1.shape[1]
    dot = x1 @ x2.T
    nngp = sigma ** (2 * depth) * dot / d
    weight = 0.0
    for layer in range(1, depth + 1):
        if not masks[layer - 1]:
            continue
        group = 0 if layer == 1 else (2 if layer == depth else 1)
        weight += lr_mult[group] * (1.0 if layer == 1 else 1.0 / d)
    ntk = lr * sigma ** (2 * (depth - 1)) * weight * dot
    return nngp, ntk


def kernel_regime_limit(
    parameterization: Parameterization,
    task: Task,
    *,
    depth: int,
    times: Sequence[float],
    lr: float,
    sigma: float = 1.0,
    lr_mult: Sequence[float] = (1.0, 1.0, 1.0),
    continuous: bool = False,
    f0_train: np.ndarray | None = None,
    f0_test: np.ndarray | None = None,
) -> KernelRegime:
    """BP's kernel-regime limit (module docstring); ``times`` are step counts when
    ``continuous`` is False (integers) and gradient-flow times otherwise."""
    task = Task.of(task)
    if depth < 2:
        raise InvalidInputError(f"depth must be at least 2, got {depth}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise InvalidInputError(f"sigma must be a positive number, got {sigma!r}")
    check_sigma(sigma, depth)
    masks = kernel_masks(parameterization, depth=depth)
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or np.any(times < 0) or not np.all(np.isfinite(times)):
        raise InvalidInputError("times must be a list of non-negative numbers")
    if not continuous and np.any(times != np.round(times)):
        raise InvalidInputError("discrete times must be whole steps")
    x, y, xs = task.x_train, task.y_train, task.x_test
    P = x.shape[0]
    kw = dict(depth=depth, sigma=sigma, lr=lr, lr_mult=lr_mult, masks=masks)
    nngp, ntk = deep_linear_kernels(x, x, **kw)
    nngp_st, ntk_st = deep_linear_kernels(xs, x, **kw)
    given = f0_train is not None
    f0 = np.zeros_like(y) if f0_train is None else np.asarray(f0_train, dtype=float)
    f0s = (
        np.zeros_like(task.y_test)
        if f0_test is None
        else np.asarray(f0_test, dtype=float)
    )
    if f0.shape != y.shape or f0s.shape != task.y_test.shape:
        raise InvalidInputError("f0_train / f0_test must have the targets' shapes")
    values, vectors = np.linalg.eigh(ntk)
    values = np.maximum(values, 0.0)
    if continuous:
        f_train, f_test = _flow(values, vectors, ntk_st, f0, f0s, y, times, P)
        propagators = [
            vectors @ np.diag(np.exp(-values * t / P)) @ vectors.T for t in times
        ]
    else:
        f_train, f_test, propagators = _steps(ntk, ntk_st, f0, f0s, y, times, P)
    loss = 0.5 * np.sum((f_train - y) ** 2, axis=(1, 2)) / P
    expected = None
    if not given:
        C = y.shape[1]
        expected = np.array(
            [
                0.5 * (np.sum((U @ y) ** 2) + C * np.trace(U @ nngp @ U.T)) / P
                for U in propagators
            ]
        )
    return KernelRegime(
        times, nngp, nngp_st, ntk, ntk_st, f_train, f_test, loss, expected
    )


def _steps(ntk, ntk_st, f0, f0s, y, times, P):
    if ntk.size and np.max(np.linalg.eigvalsh(ntk)) / P >= 2.0:
        raise UnsupportedError(
            "the kernel-regime steps diverge: the largest NTK eigenvalue / P is at "
            "least 2; lower the learning rate"
        )
    last = int(max(times, default=0))
    wanted = {int(t) for t in times}
    f, fs = f0.copy(), f0s.copy()
    U = np.eye(ntk.shape[0])
    step = np.eye(ntk.shape[0]) - ntk / P
    out_f, out_fs, out_u = {}, {}, {}
    for t in range(last + 1):
        if t in wanted:
            out_f[t], out_fs[t], out_u[t] = f.copy(), fs.copy(), U.copy()
        residual = f - y
        fs = fs - ntk_st @ residual / P
        f = f - ntk @ residual / P
        U = step @ U
    keys = [int(t) for t in times]
    return (
        np.stack([out_f[k] for k in keys]),
        np.stack([out_fs[k] for k in keys]),
        [out_u[k] for k in keys],
    )


def _flow(values, vectors, ntk_st, f0, f0s, y, times, P):
    residual0 = vectors.T @ (f0 - y)
    f_train, f_test = [], []
    for t in times:
        decay = np.exp(-values * t / P)
        f_train.append(y + vectors @ (decay[:, None] * residual0))
        safe = np.where(values > 0, values, 1.0)
        integral = np.where(values > 0, -np.expm1(-values * t / P) / safe, t / P)
        f_test.append(f0s - ntk_st @ vectors @ (integral[:, None] * residual0))
    return np.stack(f_train), np.stack(f_test)


def neural_tangents_baseline(
    task: Task,
    *,
    depth: int,
    sigma: float,
    lr: float,
    times: Sequence[float],
    f0_train: np.ndarray | None = None,
    f0_test: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """NNGP, NTK and the gradient-flow prediction from neural-tangents (float64).

    The architecture is ``depth`` stax.Dense layers without biases in NTK
    parameterization with W_std = sigma; the prediction uses
    ``nt.predict.gradient_descent_mse`` with learning rate lr * C (neural-tangents
    averages the MSE over outputs too). Imports neural-tangents (and TensorFlow) on
    first call, so keep it out of hot paths.

    Returns:
        dict with "nngp_train", "nngp_test_train", "ntk_train", "ntk_test_train"
        and "f_train", "f_test" of shape (len(times), P, C) / (len(times), P*, C).
    """
    task = Task.of(task)
    try:
        import jax
        import jax.numpy as jnp
        import neural_tangents as nt
        from jax.experimental import enable_x64
        from neural_tangents import stax
    except ImportError as err:  # pragma: no cover - depends on the install
        raise UnsupportedError(
            f"neural-tangents is not installed ({err}); install the test extra: "
            'pip install -e ".[test]"'
        ) from None
    C = task.n_outputs
    with enable_x64():
        layers = [
            stax.Dense(64, W_std=sigma, b_std=None, parameterization="ntk")
            for _ in range(depth - 1)
        ]
        layers.append(stax.Dense(C, W_std=sigma, b_std=None, parameterization="ntk"))
        _, _, kernel_fn = stax.serial(*layers)
        x = jnp.asarray(task.x_train, dtype=jnp.float64)
        xs = jnp.asarray(task.x_test, dtype=jnp.float64)
        y = jnp.asarray(task.y_train, dtype=jnp.float64)
        k_train = kernel_fn(x, None, ("nngp", "ntk"))
        k_test = kernel_fn(xs, x, ("nngp", "ntk"))
        predict = nt.predict.gradient_descent_mse(k_train.ntk, y, learning_rate=lr * C)
        f0 = jnp.zeros_like(y) if f0_train is None else jnp.asarray(f0_train)
        f0s = (
            jnp.zeros((xs.shape[0], C), dtype=jnp.float64)
            if f0_test is None
            else jnp.asarray(f0_test)
        )
        f_train, f_test = predict(
            jnp.asarray(times, dtype=jnp.float64), f0, f0s, k_test.ntk
        )
        out = {
            "nngp_train": k_train.nngp,
            "nngp_test_train": k_test.nngp,
            "ntk_train": k_train.ntk * lr,
            "ntk_test_train": k_test.ntk * lr,
            "f_train": f_train,
            "f_test": f_test,
        }
        out = {
            k: np.asarray(jax.device_get(v), dtype=np.float64) for k, v in out.items()
        }
    return out
