"""The infinite-width state of a deep linear network: weights as Gaussian algebra.

Layer l has weights W_l(t) = W_l(0) + Delta W_l(t). In the limit (units of
``muptheory.limits.scaling``), each accumulated update is a finite sum of outer
products, Delta W_l = sum_k left_k right_k^T, acting as

    forward:   Delta W_l u      = sum_k left_k  <right_k, u>
    backward:  M Delta W_l^T r  = sum_k right_k <left_k, r>     (r in g_hat units)

where <.,.> is the limiting normalized inner product of the layer's space (plain dot
products in the input space R^r and the output space R^C). W_1(0) maps the input
basis to r fresh directions with coefficient sigma / sqrt(d); hidden W_l(0) are
``GaussianMatrix`` objects; W_L(0) reads out along the C row directions omega
(b_L = 1), along Gaussian vectors Xi per direction (b_L = 1/2) or not at all.

Inputs are written in an orthonormal basis U (d x r) of the span of all train and
test inputs, z = U^T x, which is exact because every first-layer update is built
from training inputs.
"""

from __future__ import annotations

import numpy as np

from muptheory.errors import InvalidInputError, UnsupportedError
from muptheory.limits.program import GaussianMatrix, Space, add, pad
from muptheory.limits.scaling import LimitScales


class LimitState:
    """Weights of the limiting network, the spaces they act on, and the inputs.

    Args:
        depth: number of weight layers L >= 2.
        input_dim: d (sets W_1's initial scale sigma / sqrt(d)).
        n_outputs: C.
        basis: U, an orthonormal (d, r) basis of the inputs.
        scales: what the limit keeps (``limit_scales``).
        sigma: the initialization scale of every layer.
        rng: draws the Gaussian readout Xi when b_L = 1/2.
        output_map0: the C x r output map at initialization, W_L(0)..W_1(0) U,
            fixes Xi (b_L = 1/2 only); if None Xi is drawn from ``rng``.
    """

    def __init__(
        self,
        *,
        depth: int,
        input_dim: int,
        n_outputs: int,
        basis: np.ndarray,
        scales: LimitScales,
        sigma: float,
        rng: np.random.Generator,
        output_map0: np.ndarray | None = None,
    ) -> None:
        if depth < 2:
            raise InvalidInputError(f"depth must be at least 2, got {depth}")
        self.depth = depth
        self.input_dim = input_dim
        self.n_outputs = n_outputs
        self.basis = basis
        self.rank = basis.shape[1]
        self.scales = scales
        self.sigma = float(sigma)
        self._rng = rng
        # spaces[l] for hidden layers l = 1..L-1 (index 0 unused)
        self.spaces = [None] + [Space(f"layer {k}") for k in range(1, depth)]
        self.mats = {
            k: GaussianMatrix(self.spaces[k - 1], self.spaces[k], sigma)
            for k in range(2, depth)
        }
        first = self.spaces[1].allocate(self.rank)
        self._a1 = np.zeros((self.rank, self.rank))
        self._a1[first, np.arange(self.rank)] = sigma / np.sqrt(input_dim)
        top = self.spaces[depth - 1]
        self._omega = top.allocate(n_outputs) if scales.output_init == "omega" else None
        self._xi = np.zeros((0, n_outputs))
        # accumulated updates: layer -> [left, right] arrays (columns = pairs)
        self._left: dict[int, np.ndarray | None] = {
            k: None for k in range(1, depth + 1)
        }
        self._right: dict[int, np.ndarray | None] = {
            k: None for k in range(1, depth + 1)
        }
        if scales.output_init == "xi" and output_map0 is not None:
            self._fix_xi(np.asarray(output_map0, dtype=float))

    # -- sizes and inner products ---------------------------------------------------

    def n(self, layer: int) -> int:
        """Number of directions of hidden layer ``layer``'s space (r for layer 0)."""
        return self.rank if layer == 0 else self.spaces[layer].size

    def inner(self, layer: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """<a_i, b_j> in layer ``layer`` (0: input space, L: output space)."""
        if layer == 0 or layer == self.depth:
            return a.T @ b
        return self.spaces[layer].inner(a, b)

    def basis_sizes(self) -> list[int]:
        return [self.spaces[k].size for k in range(1, self.depth)]

    # -- weights --------------------------------------------------------------------

    def add_update(self, layer: int, left: np.ndarray, right: np.ndarray) -> None:
        """Delta W_layer += left right^T (columns paired, limit units)."""
        old_left, old_right = self._left[layer], self._right[layer]
        if old_left is not None:
            n_left = max(old_left.shape[0], left.shape[0])
            n_right = max(old_right.shape[0], right.shape[0])
            left = np.hstack([pad(old_left, n_left), pad(left, n_left)])
            right = np.hstack([pad(old_right, n_right), pad(right, n_right)])
        self._left[layer], self._right[layer] = left, right

    def _delta_forward(self, layer: int, u: np.ndarray) -> np.ndarray | None:
        left, right = self._left[layer], self._right[layer]
        if left is None:
            return None
        return left @ self.inner(layer - 1, right, u)

    def _delta_backward(self, layer: int, r: np.ndarray) -> np.ndarray | None:
        left, right = self._left[layer], self._right[layer]
        if left is None:
            return None
        return right @ self.inner(layer, left, r)

    def apply(self, layer: int, u: np.ndarray) -> np.ndarray:
        """W_layer(t) u for the columns u (layer-1 space); layer >= 2."""
        if layer == self.depth:
            out = self._readout(u)
        else:
            out = self.mats[layer].forward(u)
        delta = self._delta_forward(layer, u)
        if delta is not None:
            out = add(out, delta)
        return out

    def apply_transpose(self, layer: int, r: np.ndarray) -> np.ndarray:
        """M W_layer(t)^T r in g_hat units, for columns r of the layer's space."""
        if layer == self.depth:
            if self._omega is None:
                raise UnsupportedError(
                    "multiplying by W_L^T needs b_last = 1 in the exact engine"
                )
            out = np.zeros((self.n(layer - 1), r.shape[1]))
            out[self._omega] = self.sigma * r
        else:
            out = self.mats[layer].backward(r)
        delta = self._delta_backward(layer, r)
        if delta is not None:
            out = add(out, delta)
        return out

    def _readout(self, u: np.ndarray) -> np.ndarray:
        """W_L(0) u in the limit."""
        mode = self.scales.output_init
        if mode == "omega":
            return self.sigma * pad(u, self.n(self.depth - 1))[self._omega]
        if mode == "xi":
            n = u.shape[0]
            if self._xi.shape[0] < n:
                fresh = self._rng.normal(size=(n - self._xi.shape[0], self.n_outputs))
                self._xi = np.vstack([self._xi, fresh])
            return self.sigma * self._xi[:n].T @ u
        return np.zeros((self.n_outputs, u.shape[1]))

    def _fix_xi(self, output_map0: np.ndarray) -> None:
        if output_map0.shape != (self.n_outputs, self.rank):
            raise InvalidInputError(
                f"output_map0 must have shape {(self.n_outputs, self.rank)}, "
                f"got {output_map0.shape}"
            )
        a = self.forward_maps()[0][self.depth - 1]
        if a.shape[0] != self.rank or abs(np.linalg.det(a)) < 1e-300:
            raise InvalidInputError("output_map0 does not determine the readout")
        self._xi = np.linalg.solve(a.T, output_map0.T) / self.sigma

    # -- passes ---------------------------------------------------------------------

    def forward_maps(self) -> tuple[list[np.ndarray], np.ndarray]:
        """A_l (n_l x r), the images of the input basis, for l = 0..L-1, and the
        output map F (C x r) with f(x) = F U^T x."""
        maps = [np.eye(self.rank)]
        a1 = self._a1.copy()
        delta = self._delta_forward(1, maps[0])
        if delta is not None:
            a1 = add(a1, delta)
        maps.append(a1)
        for layer in range(2, self.depth):
            maps.append(self.apply(layer, maps[-1]))
        output = self.apply(self.depth, maps[-1])
        return maps, output

    def backward_maps(self) -> list[np.ndarray | None]:
        """B_l = M W_{L:l+1}(t)^T (n_l x C) for l = 1..L-1, index L holds I_C."""
        maps: list[np.ndarray | None] = [None] * (self.depth + 1)
        maps[self.depth] = np.eye(self.n_outputs)
        for layer in range(self.depth, 1, -1):
            maps[layer - 1] = self.apply_transpose(layer, maps[layer])
        return maps
