"""The experiment on CAGrad's toy (001 Tables 1/A7): every start optimised with a method and an optimizer.

The problem itself (losses, analytic gradients, the global minimum) is :mod:`mtlbench.problems.toy`; this
module runs it with any registered gradient-combination method, plain gradient descent or Adam, and
plots the trajectories (``mtlbench toy``, and the ``001-toy`` study).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlbench.errors import UserInputError
from mtlbench.problems.toy import (
    GLOBAL_MINIMUM,
    MINIMUM_POINT,
    OPTIMIZERS,
    SCALES,
    STARTS,
    mean_loss,
    toy_gradients,
)


# --- optimizers (element-wise, so the starts advance independently) -------------------------------
class _Adam:
    """torch.optim.Adam's update (defaults, no weight decay) on a NumPy array, in the array's dtype."""

    def __init__(self, x: np.ndarray, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, betas[0], betas[1], eps
        self.m = np.zeros_like(x)
        self.v = np.zeros_like(x)
        self.t = 0

    def step(self, x: np.ndarray, g: np.ndarray) -> None:
        self.t += 1
        self.m += (1 - self.beta1) * (g - self.m)  # torch: exp_avg.lerp_(grad, 1 - beta1)
        self.v *= self.beta2
        self.v += (1 - self.beta2) * (g * g)
        step_size = self.lr / (1 - self.beta1**self.t)
        denom = np.sqrt(self.v) / math.sqrt(1 - self.beta2**self.t) + self.eps
        x -= step_size * (self.m / denom)


class _GradientDescent:
    def __init__(self, x: np.ndarray, lr: float) -> None:
        self.lr = lr

    def step(self, x: np.ndarray, g: np.ndarray) -> None:
        x -= self.lr * g


# --- combining the two gradients ------------------------------------------------------------------
def _combine_sum(grads: np.ndarray) -> np.ndarray:
    return grads.sum(axis=1)


def _make_cagrad(hparams: Mapping[str, Any]):
    from mtlbench.methods.solvers_qp import cagrad_weights

    c = float(hparams["c"])
    divisor = {0: 1.0, 1: 1.0 + c**2, 2: 1.0 + c}[int(hparams["rescale"])]

    def combine(grads: np.ndarray) -> np.ndarray:
        out = np.empty_like(grads[:, 0])
        for b in range(grads.shape[0]):
            g = grads[b].astype(np.float64)
            K = g @ g.T
            w = cagrad_weights(K, c)
            g0_norm = math.sqrt(max(float(K.sum()) / 4, 0.0))
            gw_norm = math.sqrt(max(float(w @ K @ w), 0.0))
            lam = c * g0_norm / gw_norm if gw_norm > 0 else 0.0
            out[b] = ((1.0 + 2 * lam * w) / divisor) @ g
        return out

    return combine


def _make_generic(name: str, hparams: Mapping[str, Any], n_starts: int, seed: int):
    from mtlbench.methods import create

    methods = [create(name, 2, generator=torch.Generator().manual_seed(seed + b), **hparams) for b in range(n_starts)]
    states = [m.initial_state() for m in methods]

    def combine(grads: np.ndarray, losses: np.ndarray) -> np.ndarray:
        out = np.empty_like(grads[:, 0])
        for b, method in enumerate(methods):
            result = method.combine(
                torch.from_numpy(grads[b]),
                losses=torch.from_numpy(losses[b]),
                state=states[b],
                generator=method.generator,
            )
            states[b] = result.state
            out[b] = result.direction.detach().cpu().numpy()
        return out

    return combine


def _check_method(name: str, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    from mtlbench.methods import GradientMethod, get

    cls = get(name)
    if not issubclass(cls, GradientMethod):
        from mtlbench.methods import METHODS

        names = [n for n, c in METHODS.items() if issubclass(c, GradientMethod)]
        raise UserInputError(
            f"method {name!r} does not combine gradients; the toy takes one of: {', '.join(sorted(names))}"
        )
    return cls.validate(dict(hyperparameters))


# --- the experiment -----------------------------------------------------------------------------
@dataclass
class ToyResult:
    """What :func:`run_toy` returns.

    ``iterations[k]``: the first iteration (number of optimizer steps taken) at which the mean loss
    of start ``k`` is within ``tolerance`` of :data:`GLOBAL_MINIMUM`, or None if never.
    ``trajectories``: (n_recorded, n_starts, 2) positions every ``record_every`` iterations (row 0 is
    the start), None when not recorded.
    """

    method: str
    optimizer: str
    lr: float
    steps: int
    tolerance: float
    starts: tuple[tuple[float, float], ...]
    iterations: list[int | None]
    final: np.ndarray
    final_mean_loss: np.ndarray
    steps_run: int
    trajectories: np.ndarray | None = None
    record_every: int = 1
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @property
    def all_converged_at(self) -> int | None:
        """001's table entry: the iteration by which every start has converged (None: not all do)."""
        if any(i is None for i in self.iterations):
            return None
        return max(i for i in self.iterations if i is not None)


def run_toy(
    method: str = "sum",
    optimizer: str = "adam",
    lr: float = 0.001,
    steps: int = 100_000,
    tolerance: float = 0.1,
    *,
    hyperparameters: Mapping[str, Any] | None = None,
    starts: Sequence[Sequence[float]] = STARTS,
    objective: str = "mean",
    record_every: int | None = 1,
    stop_when_converged: bool = False,
    dtype: str = "float32",
    seed: int = 0,
    scale: str | None = None,
) -> ToyResult:
    """Optimise the toy from each start with ``method`` and ``optimizer`` for ``steps`` iterations.

    ``record_every=None`` records no trajectory; ``stop_when_converged`` ends the run as soon as
    every start has converged (the iterations do not change, the trajectories are cut short).
    """
    optimizer = optimizer.lower()
    if optimizer not in OPTIMIZERS:
        raise UserInputError(f"optimizer {optimizer!r} is unknown; choose one of: adam, sgd (alias gd)")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise UserInputError(f"lr={lr!r} must be a positive number")
    if not isinstance(steps, int) or steps < 0:
        raise UserInputError(f"steps={steps!r} must be a non-negative integer")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise UserInputError(f"tolerance={tolerance!r} must be a positive number")
    if scale is not None:  # the old name of ``objective``
        objective = scale
    if objective not in SCALES:
        raise UserInputError(f"objective={objective!r} is unknown; choose one of: mean, sum")
    if dtype not in ("float32", "float64"):
        raise UserInputError(f"dtype={dtype!r} is unknown; choose one of: float32, float64")
    if record_every is not None and (not isinstance(record_every, int) or record_every < 1):
        raise UserInputError(f"record_every={record_every!r} must be a positive integer or None")
    hparams = _check_method(method, hyperparameters or {})

    x = np.array(starts, dtype=dtype).reshape(-1, 2)
    n_starts = x.shape[0]
    factor = 0.5 if objective == "mean" else 1.0
    if method == "sum":

        def direction(grads: np.ndarray, losses: np.ndarray) -> np.ndarray:
            return _combine_sum(grads)
    elif method == "cagrad":
        fast = _make_cagrad(hparams)

        def direction(grads: np.ndarray, losses: np.ndarray) -> np.ndarray:
            return fast(grads)
    else:
        direction = _make_generic(method, hparams, n_starts, seed)
    opt = _Adam(x, lr) if optimizer == "adam" else _GradientDescent(x, lr)

    iterations: list[int | None] = [None] * n_starts
    trajectory = None
    if record_every is not None:
        trajectory = np.empty((steps // record_every + 1, n_starts, 2), dtype=x.dtype)
    threshold = GLOBAL_MINIMUM + tolerance
    remaining = n_starts
    steps_run = 0
    losses = None
    for it in range(steps + 1):
        losses, grads = toy_gradients(x)
        if trajectory is not None and it % record_every == 0:
            trajectory[it // record_every] = x
        if remaining:
            means = losses.mean(axis=1)
            for b in range(n_starts):
                if iterations[b] is None and means[b] <= threshold:
                    iterations[b] = it
                    remaining -= 1
        if it == steps or (stop_when_converged and remaining == 0):
            break
        d = direction(grads, losses)
        if factor != 1.0:
            d = d * factor
        opt.step(x, d.astype(x.dtype, copy=False))
        steps_run += 1
    if trajectory is not None:
        trajectory = trajectory[: steps_run // record_every + 1]
    return ToyResult(
        method=method,
        optimizer="sgd" if optimizer == "gd" else optimizer,
        lr=float(lr),
        steps=steps,
        tolerance=tolerance,
        starts=tuple(tuple(float(v) for v in s) for s in np.asarray(starts, dtype=float).reshape(-1, 2)),
        iterations=iterations,
        final=x.copy(),
        final_mean_loss=losses.mean(axis=1).astype(np.float64),
        steps_run=steps_run,
        trajectories=trajectory,
        record_every=record_every or 0,
        hyperparameters=dict(hparams),
    )


# --- plotting -----------------------------------------------------------------------------------
def plot_toy(result: ToyResult, path: str | Path, *, extent: float = 11.0, grid: int = 300, points: int = 2000) -> Path:
    """Save the trajectories over the contours of the mean loss (001 Figure 1 / A5 style) to ``path``.

    Trajectories go from red (start) to yellow (end), at most ``points`` markers per start; black
    dots are the starts, the star the global minimum, the grey line the Pareto front (x2 = -8.3552).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise UserInputError("plotting needs matplotlib: pip install matplotlib") from None
    if result.trajectories is None:
        raise UserInputError("this toy run recorded no trajectory (record_every=None); run it again with one")
    path = Path(path)
    axis = np.linspace(-extent, extent, grid)
    X, Y = np.meshgrid(axis, axis)
    with torch.no_grad():
        Z = mean_loss(torch.from_numpy(np.stack([X, Y], axis=-1))).numpy()
    fig, ax = plt.subplots(figsize=(6, 6))
    contours = ax.contour(X, Y, Z, levels=20, cmap="viridis", linewidths=1.5)
    fig.colorbar(contours, ax=ax, shrink=0.8)
    ax.plot([-7, 7], [MINIMUM_POINT[1]] * 2, color="gray", linewidth=6, zorder=0, label="Pareto front")
    for k in range(result.trajectories.shape[1]):
        path_k = result.trajectories[:, k, :]
        index = np.unique(np.linspace(0, len(path_k) - 1, min(points, len(path_k))).astype(int))
        colors = np.zeros((len(index), 3))
        colors[:, 0] = 1.0
        colors[:, 1] = np.linspace(0, 1, len(index))
        ax.scatter(path_k[index, 0], path_k[index, 1], color=colors, s=4, zorder=3)
    starts = np.asarray(result.starts)
    ax.scatter(starts[:, 0], starts[:, 1], color="k", s=60, zorder=5, label="starts")
    ax.plot(*MINIMUM_POINT, marker="*", markersize=15, color="k", zorder=6, linestyle="none", label="global minimum")
    its = ", ".join("never" if i is None else str(i) for i in result.iterations)
    ax.set_title(f"{result.method} + {result.optimizer}, lr={result.lr:g}: {its}", fontsize=10)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
