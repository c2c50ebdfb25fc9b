"""Gaussian directions of a linear Tensor Program: the algebra behind the limit.

In a deep linear network of width M every hidden vector that training ever computes
is, as M -> infinity, a finite linear combination of independent standard Gaussian
coordinate vectors ("directions"). A hidden vector u is therefore stored as its
coefficient vector a_u (one entry per direction of its layer's ``Space``), and

    <u, v> := lim (1/M) u . v = a_u . a_v

because the directions are i.i.d. N(0, 1) per coordinate. The only operations that
create directions are the products with a square Gaussian matrix W (entries
N(0, sigma^2 / M)) and with its transpose. Yang's master theorem for linear
programs gives, for u in the input space and v in the output space of W,

    W u   = sigma * hat(a_u)  +  sigma * sum_k a_u[B_k] p_k,
    W^T v = sigma * hat'(a_v) +  sigma * sum_j a_v[F_j] q_j,

where hat is a linear isometry: W keeps an orthonormal system q_1, q_2, ... of the
input vectors it has been applied to and gives each a fresh output direction F_j, so
hat(a_u) = sum_j <q_j, u> F_j and Cov(hat Wu, hat Wu') = sigma^2 <u, u'>. For W^T,
an orthonormal system p_k of output vectors with fresh input directions B_k plays the
same role. The second terms (Yang's "Z-dot" terms) send the components of u along
W's own transposed directions B_k back to the output vectors p_k they came from:
u[B_k] is d Z^u / d hat(Z^{W^T p_k}) / sigma. Fresh directions are made only for the
part of a new vector outside the span already mapped, so a layer gains at most as
many directions per step as vectors are pushed through it, and the number of
directions grows linearly with the number of training steps.

Convention: coefficient arrays have shape (n, k): column j is one vector, row i its
coefficient on direction i. Arrays made before a space grew are padded with zeros.
"""

from __future__ import annotations

import numpy as np

_EMPTY = np.zeros(0, dtype=np.int64)


def pad(a: np.ndarray, n: int) -> np.ndarray:
    """Pad a coefficient array (rows = directions) with zero rows up to ``n`` rows."""
    if a.shape[0] == n:
        return a
    out = np.zeros((n,) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of two coefficient arrays of the same space made at different sizes."""
    n = max(a.shape[0], b.shape[0])
    return pad(a, n) + pad(b, n)


class Space:
    """The coordinate space of one hidden layer: a growing list of directions.

    Attributes:
        name: a label for messages (``"layer 2"``).
        size: the number of directions allocated so far.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.size = 0

    def allocate(self, count: int) -> np.ndarray:
        """Allocate ``count`` fresh i.i.d. directions; returns their indices."""
        start = self.size
        self.size += int(count)
        return np.arange(start, self.size, dtype=np.int64)

    def zeros(self, k: int) -> np.ndarray:
        return np.zeros((self.size, k))

    def inner(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The limiting normalized inner products a^T b (matrix of <u_i, v_j>)."""
        return pad(a, self.size).T @ pad(b, self.size)


class GaussianMatrix:
    """A square hidden weight matrix at initialization, W_l(0), in the limit.

    Entries N(0, sigma^2 / M) (the b = 1/2 hidden layer). ``forward`` applies W and
    ``backward`` applies W^T, both with the master-theorem rule of the module
    docstring.
    """

    # Residual norms below this fraction of a vector's norm count as in the span:
    # well above rounding (so new directions are truly new), far below the
    # M^{-1/2} effects the engine is compared with.
    RANK_TOL = 1e-9

    def __init__(self, space_in: Space, space_out: Space, sigma: float) -> None:
        self.space_in = space_in
        self.space_out = space_out
        self.sigma = float(sigma)
        # forward: orthonormal input vectors (columns) and their fresh output dirs
        self._q = np.zeros((0, 0))
        self._q_dirs = _EMPTY.copy()
        # backward: orthonormal output vectors and their fresh input dirs
        self._p = np.zeros((0, 0))
        self._p_dirs = _EMPTY.copy()

    def forward(self, a: np.ndarray) -> np.ndarray:
        """Coefficients of W u for the columns u of ``a`` (input-space array)."""
        a = pad(np.asarray(a, dtype=float), self.space_in.size)
        self._q, self._q_dirs = _extend_system(self._q, self._q_dirs, a, self.space_out)
        q = pad(self._q, self.space_in.size)
        out = np.zeros((self.space_out.size, a.shape[1]))
        out[self._q_dirs] += self.sigma * (q.T @ a)
        if self._p_dirs.size:
            p = pad(self._p, self.space_out.size)
            out += self.sigma * (p @ a[self._p_dirs])
        return out

    def backward(self, a: np.ndarray) -> np.ndarray:
        """Coefficients of W^T v for the columns v of ``a`` (output-space array)."""
        a = pad(np.asarray(a, dtype=float), self.space_out.size)
        self._p, self._p_dirs = _extend_system(self._p, self._p_dirs, a, self.space_in)
        p = pad(self._p, self.space_out.size)
        out = np.zeros((self.space_in.size, a.shape[1]))
        out[self._p_dirs] += self.sigma * (p.T @ a)
        if self._q_dirs.size:
            q = pad(self._q, self.space_in.size)
            out += self.sigma * (q @ a[self._q_dirs])
        return out


def _extend_system(
    system: np.ndarray, dirs: np.ndarray, a: np.ndarray, target: Space
) -> tuple[np.ndarray, np.ndarray]:
    """Add to an orthonormal system the part of a's columns outside its span.

    Each new orthonormal vector gets a fresh direction of ``target`` (allocated
    after ``a`` was padded, so new directions never appear in ``a`` itself).
    """
    n = a.shape[0]
    system = pad(system, n) if system.size else np.zeros((n, 0))
    residual = a - system @ (system.T @ a)
    residual -= system @ (system.T @ residual)  # second pass for orthogonality
    scale = max(float(np.max(np.linalg.norm(a, axis=0), initial=0.0)), 1e-300)
    u, s, _ = np.linalg.svd(residual, full_matrices=False)
    new = u[:, s > GaussianMatrix.RANK_TOL * scale]
    if new.shape[1] == 0:
        return system, dirs
    # re-orthogonalize the normalized new vectors against the system (CGS2)
    new -= system @ (system.T @ new)
    new, _ = np.linalg.qr(new)
    fresh = target.allocate(new.shape[1])
    return np.hstack([system, new]), np.concatenate([dirs, fresh])
