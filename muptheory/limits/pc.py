"""PC at the inference equilibrium in the limit, and its first-order / GN interpolation.

For a linear network with energy E = sum_l (gamma_l / 2) ||v_l - W_l v_{l-1}||^2,
v_0 = x and v_L = y, stationarity gives eps_l = (gamma_L / gamma_l) W_{L:l+1}^T eps_L
and (I + C_gamma) eps_L = -e with C_gamma = sum_{l<L} (gamma_L / gamma_l)
W_{L:l+1} W_{L:l+1}^T (THEORY section 6). With gamma_L / gamma_l = gamma0 M^{-delta}
and B_l = M W_{L:l+1}^T (Theta(1) coordinates under b_L = 1):

    M^{1+delta} C_gamma  ->  C_hat := gamma0 sum_{l<L} B_l^T B_l          (C x C)
    eps_L -> -(I + [delta = -1] C_hat)^{-1} e
    v_l - h_l -> gamma0 [delta = -1] T_l eps_L,  T_1 = B_1,  T_l = W_l T_{l-1} + B_l

PC's weight update of layer l points along sum_p (B_l eps_L^p) (v_{l-1}^p)^T. Three
reference directions at the same state:

- first order (GD): -sum_p (B_l e^p) (h_{l-1}^p)^T, BP's gradient step;
- Gauss-Newton targets (GNT, Meulemans et al. 2020) with damping lambda -> 0: the
  hidden target h_l - J_l^T (J_l J_l^T)^{-1} e with J_l = W_{L:l+1}, whose limit
  in these units is h_l - B_l K_l^{-1} e with K_l = B_l^T B_l = lim M J_l J_l^T, and
  the output target f - e. Each layer steps along
  -sum_p (B_l K_l^{-1} e^p) (h_{l-1}^p)^T (l < L) and -sum_p e^p (h_{L-1}^p)^T;
- PC's own Gauss-Newton end (GN): its gamma0 -> infinity limit at delta = -1, where
  gamma0 eps_L -> -S^{-1} e with S = sum_{l<L} K_l (the Gauss-Newton matrix
  of the output with respect to all hidden activities), i.e.
  sum_p (B_l eps_GN^p) (h_{l-1}^p + T_{l-1} eps_GN^p)^T, eps_GN = -S^{-1} e.

GNT preconditions layer l by its own K_l, the GN end by the sum S of all of them.
With one hidden layer S = K_1, so the first layers' GNT and GN-end directions
coincide; in deeper networks they differ once the K_l stop being proportional
(at initialization under muP every K_l is a multiple of I_C and all three
directions of the first layer coincide).

Cosines are Frobenius cosines per layer, computed from limiting inner products:
<sum a_p b_p^T, sum c_q d_q^T> = sum_pq <a_p, c_q> <b_p, d_q>.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from muptheory.errors import InvalidInputError, UnsupportedError
from muptheory.limits.program import add
from muptheory.limits.state import LimitState
from muptheory.methods import MethodConfig


@dataclass
class PCGeometry:
    """Everything about a state that does not depend on gamma0.

    Attributes:
        forward: A_l (n_l x r), l = 0..L-1 (A_0 = I_r).
        output: F (C x r).
        back: B_l (n_l x C), l = 1..L-1; back[L] = I_C.
        kernels: B_l^T B_l, the backward kernels M W_{L:l+1} W_{L:l+1}^T (C x C).
        transfer: T_l (n_l x C), l = 1..L-1 (T_0 = 0), the activity-shift maps.
    """

    forward: list[np.ndarray]
    output: np.ndarray
    back: list[np.ndarray | None]
    kernels: list[np.ndarray]
    transfer: list[np.ndarray | None]


@dataclass
class PCEquilibrium:
    """PC's equilibrium in the limit at one state and one gamma0.

    Attributes:
        c_gamma_scaled: lim M^{1+delta} C_gamma = gamma0 sum_l B_l^T B_l (C x C).
        c_gamma: lim C_gamma (zero unless delta = -1).
        eps_out: eps_L per training point, (C, P).
        back: B_l per layer (see ``PCGeometry``).
        activities: v_l (n_l x P) for l = 0..L-1 (v_0 = z, inputs in the basis).
        output_error: (I + C_gamma)^{-1} e per training point, (C, P) (= -eps_out).
        cos_gd, cos_gn: per-layer cosines (L,) of PC's update with the GD direction
            and with PC's own Gauss-Newton end; cos_gn is None unless asked for.
        cos_gnt: per-layer cosines (L,) with the Gauss-Newton-target update
            (lambda -> 0); None unless asked for.
        grad_norms: per-layer Frobenius norms of sum_p (B_l eps^p) (v^p)^T in limit
            units (hidden layers: per M; last: per sqrt(M); first: per sqrt(M)).
    """

    c_gamma_scaled: np.ndarray
    c_gamma: np.ndarray
    eps_out: np.ndarray
    back: list
    activities: list
    cos_gd: np.ndarray
    cos_gn: np.ndarray | None
    grad_norms: np.ndarray
    cos_gnt: np.ndarray | None = None

    @property
    def output_error(self) -> np.ndarray:
        return -self.eps_out


def pc_geometry(state: LimitState) -> PCGeometry:
    """Forward, backward and transfer maps of a state (gamma0-independent)."""
    forward, output = state.forward_maps()
    back = state.backward_maps()
    L = state.depth
    kernels = [state.inner(k, back[k], back[k]) for k in range(1, L)]
    transfer: list[np.ndarray | None] = [None] * L
    transfer[1] = back[1]
    for layer in range(2, L):
        transfer[layer] = add(state.apply(layer, transfer[layer - 1]), back[layer])
    return PCGeometry(forward, output, back, kernels, transfer)


def pc_equilibrium(
    state: LimitState,
    config: MethodConfig,
    z_train: np.ndarray,
    y_train: np.ndarray,
    *,
    gamma0: float | None = None,
    geometry: PCGeometry | None = None,
    with_gn: bool = False,
    with_gnt: bool = False,
) -> PCEquilibrium:
    """PC's limiting equilibrium quantities at ``state`` (see module docstring).

    Args:
        state: a limit state whose output layer has b_L = 1.
        config: a PC config (gamma0, gamma_bar_hidden, gamma_bar_last).
        z_train: training inputs in the state's input basis, (P, r).
        y_train: targets, (P, C).
        gamma0: overrides ``config.gamma0``.
        geometry: a precomputed ``pc_geometry(state)``.
        with_gn: also compute the cosine with PC's Gauss-Newton end.
        with_gnt: also compute the cosine with the Gauss-Newton-target update.
    """
    if config.method != "pc":
        raise InvalidInputError(
            f"pc_equilibrium needs a PC config, got {config.method!r}"
        )
    delta = config.gamma_bar_last - config.gamma_bar_hidden
    if delta < -1:
        raise UnsupportedError(
            f"gamma_bar_last - gamma_bar_hidden = {delta} < -1 is outside the engine"
        )
    gamma0 = float(config.gamma0 if gamma0 is None else gamma0)
    if not (np.isfinite(gamma0) and gamma0 > 0):
        raise InvalidInputError(f"gamma0 must be a positive number, got {gamma0!r}")
    geo = pc_geometry(state) if geometry is None else geometry
    L = state.depth
    z = z_train.T
    e = geo.output @ z - y_train.T  # (C, P)
    summed = sum(geo.kernels)
    c_scaled = gamma0 * summed
    shifts = delta == -1
    c_gamma = c_scaled if shifts else np.zeros_like(c_scaled)
    eps = -np.linalg.solve(np.eye(e.shape[0]) + c_gamma, e)

    hidden = [geo.forward[k] @ z for k in range(L)]
    activities = [hidden[0]] + [
        _shifted(hidden[k], geo.transfer[k], gamma0 * eps) if shifts else hidden[k]
        for k in range(1, L)
    ]
    pc_dir = _directions(geo, eps, activities)
    gd_dir = _directions(geo, -e, hidden)
    cos_gd = _cosines(state, pc_dir, gd_dir)
    cos_gn = None
    if with_gn:
        eps_gn = -_solve_gn(summed, e)
        gn_acts = [hidden[0]] + [
            _shifted(hidden[k], geo.transfer[k], eps_gn) for k in range(1, L)
        ]
        cos_gn = _cosines(state, pc_dir, _directions(geo, eps_gn, gn_acts))
    cos_gnt = None
    if with_gnt:
        cos_gnt = _cosines(state, pc_dir, gnt_directions(geo, e, hidden))
    norms = np.sqrt([_frobenius(state, k, d, d) for k, d in enumerate(pc_dir, 1)])
    return PCEquilibrium(
        c_scaled, c_gamma, eps, geo.back, activities, cos_gd, cos_gn, norms, cos_gnt
    )


def gnt_directions(geo: PCGeometry, e: np.ndarray, hidden: list) -> list[tuple]:
    """Per layer the factor pair of the Gauss-Newton-target update with lambda -> 0.

    Layer l < L moves along -sum_p (B_l K_l^{-1} e^p) (h_{l-1}^p)^T, the limit of
    -J_l^T (J_l J_l^T)^{-1} e h_{l-1}^T with J_l = W_{L:l+1} (B_l = M J_l^T,
    K_l = lim M J_l J_l^T); the last layer along -sum_p e^p (h_{L-1}^p)^T.
    """
    L = len(geo.back) - 1
    out = []
    for k in range(1, L):
        signal = geo.back[k] @ _solve_kernel(geo.kernels[k - 1], e, what=f"K_{k}")
        out.append((-signal, hidden[k - 1]))
    out.append((-e, hidden[L - 1]))
    return out


def _shifted(h: np.ndarray, transfer: np.ndarray, eps: np.ndarray) -> np.ndarray:
    return add(h, transfer @ eps)


def _solve_gn(summed: np.ndarray, e: np.ndarray) -> np.ndarray:
    return _solve_kernel(summed, e, what="S = sum_l K_l")


def _solve_kernel(kernel: np.ndarray, e: np.ndarray, *, what: str) -> np.ndarray:
    """kernel^{-1} e for a backward kernel (C x C), refusing a singular one."""
    values = np.linalg.eigvalsh(kernel)
    if values[0] <= 1e-12 * max(values[-1], 1e-300):
        raise InvalidInputError(
            f"the Gauss-Newton matrix {what} (from M W_{{L:l+1}} W_{{L:l+1}}^T) is "
            "singular at this state; the Gauss-Newton direction is undefined"
        )
    return np.linalg.solve(kernel, e)


def _directions(geo: PCGeometry, eps: np.ndarray, acts: list) -> list[tuple]:
    """Per layer l = 1..L the factor pair (left, right) of sum_p left_p right_p^T."""
    L = len(geo.back) - 1
    return [(geo.back[k] @ eps, acts[k - 1]) for k in range(1, L + 1)]


def _frobenius(state: LimitState, layer: int, a: tuple, b: tuple) -> float:
    left = state.inner(layer, a[0], b[0])
    right = state.inner(layer - 1, a[1], b[1])
    return float(np.sum(left * right))


def _cosines(state: LimitState, first: list, second: list) -> np.ndarray:
    out = []
    for layer, (a, b) in enumerate(zip(first, second, strict=True), 1):
        norm = np.sqrt(_frobenius(state, layer, a, a) * _frobenius(state, layer, b, b))
        if norm == 0.0:
            raise InvalidInputError(
                f"the layer-{layer} update is zero at this state (a zero output "
                "error, or gamma0 so large that (I + C_gamma)^{-1} e underflows); "
                "the cosine is undefined"
            )
        out.append(min(1.0, max(-1.0, _frobenius(state, layer, a, b) / norm)))
    return np.array(out)


@dataclass
class Interpolation:
    """PC's cosines with GD, GNT and its GN end as gamma0 varies, at one trained
    limit state.

    Attributes:
        gamma0: the gamma0 values.
        cos_gd: per-layer cosines with BP's gradient, shape (len(gamma0), L).
        cos_gn: per-layer cosines with PC's own Gauss-Newton end (gamma0 -> inf).
        cos_gnt: per-layer cosines with the Gauss-Newton-target update, lambda -> 0.
        gn_matrix_eigs: eigenvalues of S = sum_l M W_{L:l+1} W_{L:l+1}^T at the
            state; a spread (anisotropy) is what lets the two ends differ.
        train_steps: BP steps (in the limit, under muP) that made the state.
        state: that trained limit state (for further equilibria at the same point).
    """

    gamma0: np.ndarray
    cos_gd: np.ndarray
    cos_gn: np.ndarray
    gn_matrix_eigs: np.ndarray
    train_steps: int
    state: LimitState | None = None
    cos_gnt: np.ndarray | None = None

    def to_json(self) -> dict:
        """Headline values are the first layer's (its input x is the same for PC,
        GD, GNT and GN, so the cosine compares the error signals alone)."""
        out = {
            "gamma0": [float(g) for g in self.gamma0],
            "cos_pc_gd": [float(c) for c in self.cos_gd[:, 0]],
            "cos_pc_gn": [float(c) for c in self.cos_gn[:, 0]],
            "cos_pc_gd_by_layer": self.cos_gd.tolist(),
            "cos_pc_gn_by_layer": self.cos_gn.tolist(),
            "gn_matrix_eigs": self.gn_matrix_eigs.tolist(),
            # the curves are PC's at gamma_L = gamma0 M, gamma_l = gamma0 (hidden)
            "gamma_bar_last": -1,
            "gamma_bar_hidden": 0,
            # BP steps (in the limit, under muP) that made the anisotropic state
            "train_steps": self.train_steps,
        }
        if self.cos_gnt is not None:
            out["cos_pc_gnt"] = [float(c) for c in self.cos_gnt[:, 0]]
            out["cos_pc_gnt_by_layer"] = self.cos_gnt.tolist()
        return out


def pc_interpolation(
    task,
    *,
    depth: int,
    gamma0: Sequence[float],
    train_steps: int = 20,
    lr: float = 0.05,
    sigma: float = 1.0,
) -> Interpolation:
    """Cosines of PC's update (gamma_bar_last = -1, gamma_bar_hidden = 0) with the GD
    direction, the Gauss-Newton-target update (lambda -> 0) and PC's own
    Gauss-Newton end, in the limit, at the state reached by ``train_steps`` BP
    steps under muP.

    At initialization S = sigma^2 sum_l sigma^{2(L-1-l)} I is a multiple of the
    identity, every eps_L is parallel to e and all cosines are 1; training makes S
    anisotropic and the gamma0 dependence appear.
    """
    from muptheory.limits.dynamics import input_basis, limit_dynamics, small_blas
    from muptheory.limits.scaling import maximal_update
    from muptheory.limits.tasks import Task

    task = Task.of(task)
    values = np.asarray(gamma0, dtype=float)
    if (
        values.ndim != 1
        or values.size == 0
        or not np.all(np.isfinite(values) & (values > 0))
    ):
        raise InvalidInputError("gamma0 must be a non-empty list of positive numbers")
    bp = MethodConfig.create("bp")
    run = limit_dynamics(
        bp, maximal_update(bp), task, depth=depth, steps=train_steps, lr=lr, sigma=sigma
    )
    state = run.state
    config = MethodConfig.create("pc", gamma_bar_last=-1)
    z = task.x_train @ input_basis(task)
    with small_blas():
        geo = pc_geometry(state)
        cos_gd, cos_gn, cos_gnt = [], [], []
        for g in values:
            eq = pc_equilibrium(
                state,
                config,
                z,
                task.y_train,
                gamma0=g,
                geometry=geo,
                with_gn=True,
                with_gnt=True,
            )
            cos_gd.append(eq.cos_gd)
            cos_gn.append(eq.cos_gn)
            cos_gnt.append(eq.cos_gnt)
    eigs = np.linalg.eigvalsh(sum(geo.kernels))
    return Interpolation(
        values,
        np.array(cos_gd),
        np.array(cos_gn),
        eigs,
        train_steps,
        state,
        np.array(cos_gnt),
    )
